"""`portside kube generate|play|down|apply`: engine/kube's translations driven through docker-py (and the official
`kubernetes` client for apply).

The engine is picked as the TUI picks it (app/endpoint.py: -H, $DOCKER_HOST, the docker context, the portside
daemon's socket), but never an embedded one: what play makes must outlive this command.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

EXIT_USAGE = 125  # docker's exit code for an error of the command itself


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = sub.add_parser("kube", help="Kubernetes YAML from containers, and containers from Kubernetes YAML",
                       description="Hand containers to Kubernetes and back (Podman's `kube` verbs).")
    ks = k.add_subparsers(dest="kube_command", metavar="VERB", required=True)
    g = ks.add_parser("generate", help="print Kubernetes YAML for containers or a compose project")
    g.add_argument("names", nargs="*", metavar="NAME", help="containers (name or id)")
    g.add_argument("--project", help="every container of this compose project (label com.docker.compose.project)")
    g.add_argument("-s", "--service", action="store_true", help="add a Service for the published ports")
    g.add_argument("-t", "--type", dest="kind", choices=["pod", "deployment"], default="pod",
                   help="the workload kind (default pod)")
    g.add_argument("-f", "--filename", help="write the YAML here instead of stdout")
    p = ks.add_parser("play", help="run the Pods, Deployments and Services of a Kubernetes YAML file")
    p.add_argument("file", metavar="FILE", help="the YAML file ('-' for stdin)")
    p.add_argument("--replace", action="store_true", help="remove what an earlier play of the same objects made")
    p.add_argument("--publish-address", default="", metavar="IP",
                   help="host address ports are published on (default: every address, as a nodePort is)")
    d = ks.add_parser("down", help="remove what `kube play FILE` made")
    d.add_argument("file", metavar="FILE", help="the YAML file ('-' for stdin)")
    a = ks.add_parser("apply", help="send the YAML (of a file, or generated for containers) to a cluster")
    a.add_argument("targets", nargs="+", metavar="FILE|NAME", help="YAML files, or containers to generate for")
    a.add_argument("--kubeconfig", help="kubeconfig file (default $KUBECONFIG, else ~/.kube/config)")
    a.add_argument("--context", help="the kubeconfig context (default its current-context)")
    a.add_argument("-n", "--namespace", help="namespace (default the context's, else default)")
    a.add_argument("--dry-run", choices=["none", "server", "client"], default="none", nargs="?", const="client",
                   help="client: check and print without sending; server: the cluster checks and stores nothing")
    a.add_argument("-s", "--service", action="store_true", help="with NAMEs: add a Service for published ports")
    a.add_argument("-t", "--type", dest="kind", choices=["pod", "deployment"], default="pod")


def run(args: argparse.Namespace) -> int:
    from engine.kube.manifests import ManifestError

    try:
        if args.kube_command == "generate":
            return _generate(args)
        if args.kube_command == "play":
            return _play(args)
        if args.kube_command == "down":
            return _down(args)
        return _apply(args)
    except ManifestError as e:
        print(f"Error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as e:
        print(f"Error: {e}", file=sys.stderr)
        return e.code


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def client(host: str | None) -> Any:
    """A docker-py low-level client on the engine the TUI would pick (no embedded engine)."""
    import docker

    from app.endpoint import Endpoint, NoEngine, choose

    def none() -> Endpoint:
        raise NoEngine("no container engine is reachable: $DOCKER_HOST is not set and no portside daemon answers "
                       "on /run/portside.sock (start `portside daemon`, or use -H)")

    try:
        ep = choose(host, start_embedded=none)
    except NoEngine as e:
        raise CliError(str(e)) from e
    try:
        api = docker.APIClient(base_url=ep.url, version="auto", timeout=120, tls=ep.tls or False)
    except docker.errors.DockerException as e:
        raise CliError(f"cannot reach the engine at {ep.url}: {e}") from e
    api.portside_url = ep.url  # what a Service's balancer process reaches the engine by
    return api


def _warn(lines: list[str]) -> None:
    for line in lines:
        print(f"WARNING: {line}", file=sys.stderr)


def inspect_for_generate(api: Any, names: list[str], project: str | None) -> tuple[list[dict[str, Any]],
                                                                                  dict[str, Any]]:
    import docker

    from engine.kube.generate import COMPOSE_PROJECT

    ids: list[str] = []
    if project:
        found = api.containers(all=True, filters={"label": f"{COMPOSE_PROJECT}={project}"})
        if not found:
            raise CliError(f"no container belongs to compose project {project!r}")
        ids.extend(c["Id"] for c in sorted(found, key=lambda c: c.get("Created", 0)))
    ids.extend(names)
    if not ids:
        raise CliError("name at least one container, or a compose project with --project")
    containers = []
    for ref in dict.fromkeys(ids):
        try:
            containers.append(api.inspect_container(ref))
        except docker.errors.NotFound as e:
            raise CliError(f"no such container: {ref}", 1) from e
    images: dict[str, Any] = {}
    for c in containers:
        if c["Image"] not in images:
            try:
                images[c["Image"]] = api.inspect_image(c["Image"])
            except docker.errors.NotFound:
                images[c["Image"]] = {}
    return containers, images


def _generate(args: argparse.Namespace) -> int:
    from engine.kube.generate import generate
    from engine.kube.manifests import dump

    api = client(args.host)
    containers, images = inspect_for_generate(api, args.names, args.project)
    out = generate(containers, images, kind=args.kind, service=args.service)
    _warn(out.warnings)
    text = dump(out.docs)
    if args.filename:
        with open(args.filename, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e


def _load(path: str) -> list[dict[str, Any]]:
    from engine.kube.manifests import load

    return load(_read(path), "<stdin>" if path == "-" else path)


def _tar(files: list[Any]) -> bytes:
    """The files (absolute paths) as a tar to extract at /, with their parent directories."""
    import io
    import tarfile
    import time

    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()
        for f in files:
            parts = f.path.strip("/").split("/")
            for n in range(1, len(parts)):
                d = "/".join(parts[:n])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, now
                    tar.addfile(info)
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.mtime = len(f.data), f.mode, now
            tar.addfile(info, io.BytesIO(f.data))
    return buf.getvalue()


def _existing(api: Any, name: str) -> dict[str, Any] | None:
    import docker

    try:
        return dict(api.inspect_container(name))
    except docker.errors.NotFound:
        return None


def _play(args: argparse.Namespace) -> int:
    from engine.kube.play import plan

    docs = _load(args.file)
    p = plan(docs, args.publish_address)  # every document is checked before anything is made
    _warn(p.warnings)
    run_plan(client(args.host), p, args.replace)
    for pod in p.pods:
        print(f"Pod {pod.name}: {', '.join(c.name for c in pod.containers)}")
    for b in p.balanced:
        print(f"Service {b.service}: {b.host_ip or '0.0.0.0'}:{b.host_port} balanced across its pods")
    return 0


def run_plan(api: Any, p: Any, replace: bool = False, engine_url: str = "") -> None:
    """Make what a checked play plan (engine/kube/play.plan) says, through the Engine API client `api`; on an
    error nothing it made is left behind (CliError). The CLI's play and the TUI's both come here."""
    import docker

    from engine.kube import names

    # What is in the way: an earlier play's containers go with --replace; anything else stops the play.
    in_way: list[str] = []
    for pod in p.pods:
        for c in pod.containers:
            found = _existing(api, c.name)
            if found is None:
                continue
            if not replace:
                raise CliError(f"container {c.name} already exists (kube play --replace replaces what an earlier "
                               "play made)")
            if ((found.get("Config") or {}).get("Labels") or {}).get(names.MANAGED) != "true":
                raise CliError(f"container {c.name} exists and was not made by kube play: not replaced")
            in_way.append(found["Id"])
    for image in p.images:
        try:
            api.inspect_image(image)
        except docker.errors.NotFound:
            from docker.utils import parse_repository_tag

            repo, tag = parse_repository_tag(image)
            try:
                api.pull(repo, tag or "latest")
            except docker.errors.APIError as e:
                raise CliError(f"image {image}: {e.explanation or e}") from e
    # a Service balanced across pods gets a balancer process, which reaches the engine by its address
    url = engine_url or _engine_url(api)
    if p.balanced and not url:
        raise CliError("a Service selecting several pods needs the engine's address for its balancer")
    listeners = _bind_balanced(url, p.balanced, replace)
    for cid in in_way:
        api.remove_container(cid, force=True, v=False)
    made_containers: list[str] = []
    made_volumes: list[str] = []
    try:
        have = {v["Name"] for v in (api.volumes() or {}).get("Volumes") or []}
        for v in p.volumes:
            if v.name not in have:  # an existing claim's volume is reused (its data is the point of a claim)
                api.create_volume(v.name, driver=v.driver, labels=v.labels)
                made_volumes.append(v.name)
        for pod in p.pods:
            for c in pod.containers:
                res = api._post_json(api._url("/containers/create"), data=c.body, params={"name": c.name})
                made_containers.append(api._result(res, True)["Id"])
                if c.files:
                    api.put_archive(c.name, "/", _tar(c.files))
            for c in pod.containers:
                api.start(c.name)
    except docker.errors.APIError as e:
        for sock in listeners:
            sock.close()
        for cid in reversed(made_containers):
            with _quiet():
                api.remove_container(cid, force=True, v=False)
        for vname in made_volumes:
            with _quiet():
                api.remove_volume(vname, force=True)
        raise CliError(f"kube play: {e.explanation or e} (nothing was left behind)") from e
    from engine.kube import balancer

    for b, sock in zip(p.balanced, listeners, strict=True):
        balancer.start(url, b.service, sock, b.target_port)
        sock.close()  # the balancer holds its own copy


def _engine_url(api: Any) -> str:
    """The address a docker-py client reaches its engine by (the TUI's clients carry no portside_url)."""
    if getattr(api, "portside_url", ""):
        return str(api.portside_url)
    base = str(getattr(api, "base_url", ""))
    if base.startswith("http+docker://"):
        adapter = (getattr(api, "adapters", None) or {}).get("http+docker://")
        path = getattr(adapter, "socket_path", "")
        return f"unix://{path}" if path else ""
    return base.replace("http://", "tcp://", 1) if base.startswith("http://") else ""


def _bind_balanced(engine_url: str, balanced: list[Any], replace: bool) -> list[Any]:
    """The host sockets of the Services balanced across pods, bound before anything is made (a port in use stops
    the play with nothing made); an earlier play's balancer of the same Service port goes with --replace."""
    import socket

    from engine.kube import balancer

    out: list[socket.socket] = []
    try:
        for b in balanced:
            path = balancer.pidfile(engine_url, b.service, b.host_port)
            if balancer.running(path) is not None:
                if not replace:
                    raise CliError(f"Service {b.service} already publishes port {b.host_port} (kube play --replace "
                                   "replaces what an earlier play made)")
                balancer.stop(path)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((b.host_ip or "0.0.0.0", b.host_port))
            except OSError as e:
                raise CliError(f"Service {b.service}: Bind for {b.host_ip or '0.0.0.0'}:{b.host_port} failed: "
                               f"{e.strerror or e}") from e
            sock.listen(128)
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def _quiet() -> Any:
    import contextlib

    return contextlib.suppress(Exception)


def _down(args: argparse.Namespace) -> int:
    from engine.kube import balancer, names
    from engine.kube.play import owners

    docs = _load(args.file)
    mine = owners(docs)
    api = client(args.host)
    for d in docs:
        if d.get("kind") == "Service":
            for sp in (d.get("spec") or {}).get("ports") or []:
                port = sp.get("nodePort") or sp.get("port") if isinstance(sp, dict) else None
                if isinstance(port, int) and balancer.stop(balancer.pidfile(api.portside_url, d["metadata"]["name"],
                                                                            port)):
                    print(f"stopped the balancer of Service {d['metadata']['name']} on port {port}")
    for c in api.containers(all=True, filters={"label": f"{names.MANAGED}=true"}):
        if (c.get("Labels") or {}).get(names.OWNER) in mine:
            api.remove_container(c["Id"], force=True, v=False)
            print(f"removed container {c['Names'][0].lstrip('/')}")
    for v in (api.volumes(filters={"label": f"{names.MANAGED}=true"}) or {}).get("Volumes") or []:
        if (v.get("Labels") or {}).get(names.OWNER) in mine:
            api.remove_volume(v["Name"], force=True)
            print(f"removed volume {v['Name']}")
    return 0


def _apply(args: argparse.Namespace) -> int:
    import os

    from engine.kube.cluster import build
    from engine.kube.manifests import dump

    docs: list[dict[str, Any]] = []
    containers = [t for t in args.targets if not (os.path.exists(t) or t == "-")]
    for t in args.targets:
        if t not in containers:
            docs.extend(_load(t))
    if containers:  # NAMEs: what `kube generate` would print for them
        from engine.kube.generate import generate

        inspected, images = inspect_for_generate(client(args.host), containers, None)
        gen = generate(inspected, images, kind=args.kind, service=args.service)
        _warn(gen.warnings)
        docs.extend(gen.docs)
    config, namespace, server = _kubeconfig(args, required=args.dry_run != "client")
    requests = build(docs, args.namespace or namespace, namespace_given=bool(args.namespace))
    if args.dry_run == "client":  # checked against the client's models; nothing is sent
        sys.stdout.write(dump([r.body for r in requests]))
        return 0
    from kubernetes import client as k8s
    from urllib3.exceptions import HTTPError

    api_client = k8s.ApiClient(config)
    suffix = " (server dry run)" if args.dry_run == "server" else ""
    for r in requests:
        api = getattr(k8s, r.api)(api_client)
        try:
            getattr(api, r.method)(**r.kwargs(args.dry_run == "server"), _request_timeout=30)
        except k8s.ApiException as e:
            raise CliError(f"{r.kind} {r.namespace}/{r.name}: the cluster answered {e.status} "
                           f"{_api_message(e)}", 1) from e
        except HTTPError as e:
            raise CliError(f"no cluster is reachable at {server}: {e} (nothing more was sent)", 1) from e
        print(f"{r.kind.lower()}/{r.name} applied in {r.namespace}{suffix}")
    return 0


def _api_message(e: Any) -> str:
    import json

    try:
        return str(json.loads(e.body).get("message") or e.reason)
    except (TypeError, ValueError, AttributeError):
        return str(e.reason)


def _kubeconfig(args: argparse.Namespace, required: bool) -> tuple[Any, str, str]:
    """The client configuration, the context's namespace (else default) and the server, from the kubeconfig
    (--kubeconfig, else $KUBECONFIG, else ~/.kube/config), as kubectl finds it."""
    import os

    from kubernetes import config as k8s_config
    from kubernetes.client import Configuration

    path = args.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or \
        os.path.expanduser("~/.kube/config")
    if not os.path.exists(path):
        if not required:
            return None, "default", ""
        raise CliError(f"no cluster configured: there is no kubeconfig at {path} (use --kubeconfig or "
                       "$KUBECONFIG); nothing was sent", 1)
    cfg = Configuration()
    try:
        contexts, active = k8s_config.list_kube_config_contexts(config_file=path)
        chosen = next((c for c in contexts if c["name"] == args.context), None) if args.context else active
        if chosen is None:
            raise CliError(f"context {args.context!r} is not in {path} (it has "
                           f"{', '.join(c['name'] for c in contexts)})", 1)
        k8s_config.load_kube_config(config_file=path, context=chosen["name"], client_configuration=cfg)
    except k8s_config.ConfigException as e:
        raise CliError(f"kubeconfig {path}: {e}", 1) from e
    cfg.retries = 0  # an unreachable cluster is said at once, not after urllib3's retries
    namespace = (chosen.get("context") or {}).get("namespace") or "default"
    return cfg, namespace, cfg.host
