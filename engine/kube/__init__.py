"""Kubernetes hand-off: container inspect JSON in, Kubernetes manifests out (generate), and manifests in, Engine API
create bodies out (play). Pure translation on Engine-API-shaped dicts: no HTTP, no docker-py, no Textual, so the
CLI (app/kube_cli.py), tests and any other front end drive it the same way."""
