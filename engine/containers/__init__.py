"""Containers as the daemon sees them: records on disk, Docker's shapes, logs, and the lifecycle manager."""
