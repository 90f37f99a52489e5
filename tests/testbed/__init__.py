"""The offline image test bed: images built from Debian packages, served by real registries.

Nothing here reaches Docker Hub. Root filesystems come from Debian's busybox-static and nginx packages
(extracted from their .debs), are packed into OCI layouts by `oci.py`, cached on disk keyed by a hash of their
inputs, and pushed into Debian's docker-registry with skopeo by `registry.py`.
"""
