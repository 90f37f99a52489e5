"""From an image reference to a root filesystem and back: references, registry, content, snapshots."""
