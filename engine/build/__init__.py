"""The image builder: Dockerfile parsing, the classic builder's steps and cache (`POST /build`).

It sits above the image store and the container runtime and uses them only through their services
(`ImageService`, `ContainerManager`); nothing below it imports it."""
