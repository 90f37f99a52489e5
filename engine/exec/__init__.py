"""The runtime: namespaces, mounts, cgroups, capabilities, seccomp, and the per-container supervisor."""
