"""The image builder: Dockerfile parsing, the classic builder's steps and cache."""
