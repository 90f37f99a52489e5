"""Container inspect JSON to Kubernetes manifests (`portside kube generate`, Podman's `kube generate`).

Containers that share a network namespace (NetworkMode container:X) become one Pod; every other container is a Pod
of its own. What Kubernetes cannot express is said in `Generated.warnings`, never dropped silently.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from engine.kube import names, quantity
from engine.kube.manifests import Manifest

Inspect = dict[str, Any]
NODE_PORTS = range(30000, 32768)  # the default --service-node-port-range of a cluster
COMPOSE_PROJECT = "com.docker.compose.project"


@dataclass
class Generated:
    docs: list[Manifest] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Group:
    """The containers of one pod: the network namespace owner first."""

    pod: str
    members: list[Inspect]
    deployment: str | None = None
    replicas: list[list[Inspect]] = field(default_factory=list)


def generate(containers: list[Inspect], images: dict[str, Inspect] | None = None, *, kind: str = "pod",
             service: bool = False) -> Generated:
    """Manifests for `containers` (docker inspect dicts). `images` maps an image id to its inspect: what the
    image already sets (env, command, working dir) is left out, as Podman does, so the manifest says what the
    container changed."""
    if kind not in ("pod", "deployment"):
        raise ValueError(f"--type must be pod or deployment, not {kind!r}")
    out = Generated()
    images = images or {}
    volumes: dict[str, Inspect] = {}
    for group in _groups(containers):
        spec, meta = _pod(group.members, images, volumes, out.warnings)
        ports = [p for c in spec["containers"] for p in c.get("ports", [])]
        if service and ports:
            out_ports = _service_ports(group.pod, ports, out.warnings)
            for c in spec["containers"]:
                for p in c.get("ports", []):
                    p.pop("hostPort", None)
                    p.pop("hostIP", None)
        replicas = len(group.replicas) or 1
        if kind == "deployment" or group.deployment:
            name = group.deployment or group.pod
            if spec.get("restartPolicy", "Always") != "Always":
                out.warnings.append(f"{name}: a Deployment's pods always restart; restart policy "
                                    f"{spec['restartPolicy']} becomes Always")
            spec["restartPolicy"] = "Always"
            template_meta = dict(meta)
            template_meta.pop("name", None)
            out.docs.append({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "labels": {"app": name}},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": meta["labels"]["app"]}},
                         "template": {"metadata": template_meta, "spec": spec}},
            })
        else:
            out.docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        if service and ports:
            svc: dict[str, Any] = {"selector": {"app": meta["labels"]["app"]}, "ports": out_ports}
            if all("nodePort" in p for p in out_ports):
                svc = {"type": "NodePort", **svc}
            out.docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": group.pod}, "spec": svc})
    for name, vol in volumes.items():
        out.docs.insert(0, _claim(name, vol))
    return out


def _groups(containers: list[Inspect]) -> list[_Group]:
    """Pods from network namespaces, in the order given; containers `kube play` made go back to their pod."""
    by_id = {c["Id"]: c for c in containers}
    by_name = {c.get("Name", "").lstrip("/"): c for c in containers}

    def owner(c: Inspect, seen: int = 0) -> Inspect:
        mode = (c.get("HostConfig") or {}).get("NetworkMode") or ""
        if mode.startswith("container:") and seen < 16:
            ref = mode.removeprefix("container:")
            other = by_id.get(ref) or by_name.get(ref) or next(
                (x for i, x in by_id.items() if i.startswith(ref)), None)
            if other is not None:
                return owner(other, seen + 1)
        return c

    pods: dict[str, list[Inspect]] = {}
    for c in containers:
        pods.setdefault(owner(c)["Id"], []).append(c)
    groups: list[_Group] = []
    deployments: dict[str, _Group] = {}
    for members in pods.values():
        members.sort(key=lambda c: c is not owner(c))  # the namespace owner first
        labels = (members[0].get("Config") or {}).get("Labels") or {}
        kube_owner = labels.get(names.OWNER, "")
        if kube_owner.startswith("Deployment/"):
            dep = kube_owner.split("/", 1)[1]
            if dep in deployments:
                deployments[dep].replicas.append(members)
                continue
            g = _Group(dep, members, deployment=dep, replicas=[members])
            deployments[dep] = g
            groups.append(g)
            continue
        pod = labels.get(names.POD) or names.dns_name(_name(members[0])) + "-pod"
        groups.append(_Group(pod, members))
    return groups


def _name(c: Inspect) -> str:
    return str(c.get("Name", "")).lstrip("/") or c["Id"][:12]


def _pod(members: list[Inspect], images: dict[str, Inspect], volumes: dict[str, Inspect],
         warnings: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    first_labels = (members[0].get("Config") or {}).get("Labels") or {}
    pod_name = first_labels.get(names.POD) or names.dns_name(_name(members[0])) + "-pod"
    if first_labels.get(names.OWNER, "").startswith("Deployment/"):
        pod_name = first_labels[names.OWNER].split("/", 1)[1]
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    containers: list[dict[str, Any]] = []
    pod_volumes: list[dict[str, Any]] = []
    restart: set[str] = set()
    for c in members:
        cname = _container_name(c, pod_name)
        ctx = f"{_name(c)}"
        image = images.get(c.get("Image", "")) or {}
        cspec = _container(c, cname, image.get("Config") or {}, ctx, warnings)
        mounts = _mounts(c, cname, pod_volumes, volumes, ctx, warnings)
        if mounts:
            cspec["volumeMounts"] = mounts
        pids = (c.get("HostConfig") or {}).get("PidsLimit")
        if pids and pids > 0:
            annotations[f"{names.PIDS_ANNOTATION}.{cname}"] = str(pids)
            warnings.append(f"{ctx}: Kubernetes has no per-container pids limit (the kubelet sets one per node); "
                            f"--pids-limit {pids} is kept as annotation {names.PIDS_ANNOTATION}.{cname}, "
                            "which portside kube play reads back")
        containers.append(cspec)
        restart.add(_restart(c, ctx, warnings))
        _split_labels(c, labels, annotations, ctx, warnings)
        _unexpressed(c, ctx, warnings)
    labels.setdefault("app", pod_name)
    meta: dict[str, Any] = {"name": pod_name, "labels": labels}
    if annotations:
        meta["annotations"] = annotations
    spec: dict[str, Any] = {"containers": containers}
    if len(restart) > 1:
        warnings.append(f"{pod_name}: its containers restart differently ({', '.join(sorted(restart))}); a Pod has "
                        "one restart policy: Always is used")
        spec["restartPolicy"] = "Always"
    else:
        spec["restartPolicy"] = restart.pop()
    hostname = (members[0].get("Config") or {}).get("Hostname") or ""
    if hostname and not members[0]["Id"].startswith(hostname) and hostname != pod_name:
        spec["hostname"] = hostname
    if pod_volumes:
        spec["volumes"] = pod_volumes
    return spec, meta


def _container_name(c: Inspect, pod: str) -> str:
    labels = (c.get("Config") or {}).get("Labels") or {}
    if labels.get(names.CONTAINER):
        return str(labels[names.CONTAINER])
    name = _name(c)
    if name.startswith(pod + "-") and len(name) > len(pod) + 1:
        name = name[len(pod) + 1:]
    return names.dns_name(name)


def _container(c: Inspect, name: str, image: dict[str, Any], ctx: str, warnings: list[str]) -> dict[str, Any]:
    cfg = c.get("Config") or {}
    host = c.get("HostConfig") or {}
    spec: dict[str, Any] = {"name": name, "image": cfg.get("Image") or c.get("Image")}
    entrypoint, cmd = cfg.get("Entrypoint") or [], cfg.get("Cmd") or []
    # Kubernetes' command is Docker's Entrypoint, args its Cmd; a command given drops the image's Cmd, as
    # the Engine API does for an Entrypoint given at create.
    if entrypoint and entrypoint != (image.get("Entrypoint") or []):
        spec["command"] = list(entrypoint)
        if cmd:
            spec["args"] = list(cmd)
    elif cmd and cmd != (image.get("Cmd") or []):
        spec["args"] = list(cmd)
    image_env = set(image.get("Env") or [])
    env = []
    for item in cfg.get("Env") or []:
        if item in image_env:
            continue
        key, _, value = item.partition("=")
        env.append({"name": key, "value": value})
    if env:
        spec["env"] = env
    if cfg.get("WorkingDir") and cfg["WorkingDir"] != (image.get("WorkingDir") or ""):
        spec["workingDir"] = cfg["WorkingDir"]
    ports = _ports(c)
    if ports:
        spec["ports"] = ports
    sec = _security(c, ctx, warnings)
    if sec:
        spec["securityContext"] = sec
    res = _resources(host, ctx, warnings)
    if res:
        spec["resources"] = res
    probe = _probe(cfg.get("Healthcheck"), ctx, warnings)
    if probe:
        spec["livenessProbe"] = probe
    if cfg.get("OpenStdin"):
        spec["stdin"] = True
    if cfg.get("Tty"):
        spec["tty"] = True
    return spec


def _ports(c: Inspect) -> list[dict[str, Any]]:
    cfg, host = c.get("Config") or {}, c.get("HostConfig") or {}
    bindings = dict(host.get("PortBindings") or {})
    try:  # a Service port kube play balanced across pods is published by a balancer, not the engine
        for key, binds in json.loads((cfg.get("Labels") or {}).get(names.BALANCED, "{}")).items():
            bindings[key] = [*(bindings.get(key) or []), *binds]
    except (ValueError, AttributeError):
        pass
    keys = list(dict.fromkeys([*bindings, *(cfg.get("ExposedPorts") or {})]))
    out = []
    for key in keys:
        port, _, proto = key.partition("/")
        base = {"containerPort": int(port), "protocol": (proto or "tcp").upper()}
        binds = bindings.get(key) or []
        if not binds:
            out.append(base)
        for b in binds:
            entry = dict(base)
            if b.get("HostPort"):
                entry["hostPort"] = int(str(b["HostPort"]).split("-")[0])
            if b.get("HostIp") and b["HostIp"] not in ("0.0.0.0", "::"):
                entry["hostIP"] = b["HostIp"]
            out.append(entry)
    return out


def _security(c: Inspect, ctx: str, warnings: list[str]) -> dict[str, Any]:
    cfg, host = c.get("Config") or {}, c.get("HostConfig") or {}
    sec: dict[str, Any] = {}
    user = cfg.get("User") or ""
    if user:
        uid, _, gid = user.partition(":")
        if uid.isdigit():
            sec["runAsUser"] = int(uid)
        else:
            warnings.append(f"{ctx}: user {uid!r} is a name; Kubernetes' runAsUser takes a number: left out "
                            "(the image's user applies)")
        if gid.isdigit():
            sec["runAsGroup"] = int(gid)
        elif gid:
            warnings.append(f"{ctx}: group {gid!r} is a name; runAsGroup takes a number: left out")
    caps: dict[str, list[str]] = {}
    if host.get("CapAdd"):
        caps["add"] = [x.upper().removeprefix("CAP_") for x in host["CapAdd"]]
    if host.get("CapDrop"):
        caps["drop"] = [x.upper().removeprefix("CAP_") for x in host["CapDrop"]]
    if caps:
        sec["capabilities"] = caps
    if host.get("Privileged"):
        sec["privileged"] = True
    if host.get("ReadonlyRootfs"):
        sec["readOnlyRootFilesystem"] = True
    for opt in host.get("SecurityOpt") or []:
        if opt in ("no-new-privileges", "no-new-privileges:true", "no-new-privileges=true"):
            sec["allowPrivilegeEscalation"] = False
        elif opt.startswith(("seccomp=unconfined", "seccomp:unconfined")):
            sec["seccompProfile"] = {"type": "Unconfined"}
        else:
            warnings.append(f"{ctx}: security option {opt!r} has no Kubernetes field: left out")
    return sec


def _resources(host: dict[str, Any], ctx: str, warnings: list[str]) -> dict[str, Any]:
    limits: dict[str, str] = {}
    requests: dict[str, str] = {}
    if host.get("Memory"):
        limits["memory"] = quantity.memory(int(host["Memory"]))
    if host.get("MemoryReservation"):
        requests["memory"] = quantity.memory(int(host["MemoryReservation"]))
    if host.get("NanoCpus"):
        limits["cpu"] = quantity.cpu(int(host["NanoCpus"]))
    elif host.get("CpuQuota") and host["CpuQuota"] > 0:
        period = host.get("CpuPeriod") or 100000
        limits["cpu"] = quantity.cpu(math.ceil(host["CpuQuota"] * 10**9 / period))
    if host.get("CpuShares"):
        # the kubelet turns a CPU request into shares as millicores * 1024 / 1000
        requests["cpu"] = f"{max(1, round(int(host['CpuShares']) * 1000 / 1024))}m"
    swap = host.get("MemorySwap")
    if swap and swap not in (-1, 0) and swap != host.get("Memory", 0) * 2:
        warnings.append(f"{ctx}: --memory-swap has no Kubernetes field: left out")
    for key, flag in (("CpusetCpus", "--cpuset-cpus"), ("BlkioWeight", "--blkio-weight"),
                      ("OomKillDisable", "--oom-kill-disable"), ("Ulimits", "--ulimit"), ("Devices", "--device")):
        if host.get(key):
            warnings.append(f"{ctx}: {flag} has no Kubernetes field: left out")
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
    if requests:
        out["requests"] = requests
    return out


def _seconds(ns: int | None, what: str, ctx: str, warnings: list[str]) -> int | None:
    if not ns:
        return None
    s = ns / 10**9
    if s != int(s):
        warnings.append(f"{ctx}: healthcheck {what} {s}s is finer than Kubernetes' whole seconds: rounded up")
    return max(1, math.ceil(s))


def _probe(hc: dict[str, Any] | None, ctx: str, warnings: list[str]) -> dict[str, Any] | None:
    if not hc or not hc.get("Test"):
        return None
    test = list(hc["Test"])
    if test[0] == "NONE":
        return None
    if test[0] == "CMD":
        command = test[1:]
    elif test[0] == "CMD-SHELL":
        command = ["/bin/sh", "-c", " ".join(test[1:])]
    else:
        warnings.append(f"{ctx}: healthcheck {test!r} is not CMD or CMD-SHELL: left out")
        return None
    probe: dict[str, Any] = {"exec": {"command": command}}
    for key, what, ns in (("periodSeconds", "interval", hc.get("Interval")),
                          ("timeoutSeconds", "timeout", hc.get("Timeout")),
                          ("initialDelaySeconds", "start period", hc.get("StartPeriod"))):
        s = _seconds(ns, what, ctx, warnings)
        if s is not None:
            probe[key] = s
    if hc.get("Retries"):
        probe["failureThreshold"] = int(hc["Retries"])
    if hc.get("StartInterval"):
        warnings.append(f"{ctx}: healthcheck start interval has no livenessProbe field: left out")
    return probe


def _restart(c: Inspect, ctx: str, warnings: list[str]) -> str:
    policy = ((c.get("HostConfig") or {}).get("RestartPolicy") or {})
    name = policy.get("Name") or "no"
    if name == "unless-stopped":
        warnings.append(f"{ctx}: restart policy unless-stopped becomes Always (Kubernetes has no stopped state)")
    if name == "on-failure" and policy.get("MaximumRetryCount"):
        warnings.append(f"{ctx}: on-failure:{policy['MaximumRetryCount']}: Kubernetes has no retry count: "
                        "OnFailure retries without limit")
    return {"always": "Always", "unless-stopped": "Always", "on-failure": "OnFailure"}.get(name, "Never")


def _split_labels(c: Inspect, labels: dict[str, str], annotations: dict[str, str], ctx: str,
                  warnings: list[str]) -> None:
    cfg_labels: dict[str, str] = dict((c.get("Config") or {}).get("Labels") or {})
    if cfg_labels.get(names.ANNOTATIONS):
        try:
            annotations.update(json.loads(cfg_labels[names.ANNOTATIONS]))
        except ValueError:
            warnings.append(f"{ctx}: label {names.ANNOTATIONS} is not JSON: ignored")
    for key, value in cfg_labels.items():
        if names.ours(key):
            continue
        target = labels if names.is_label(key, value) else annotations
        if key in target and target[key] != value:
            warnings.append(f"{ctx}: label {key}={value!r} differs from another container's in the pod: "
                            f"{target[key]!r} is kept")
            continue
        target[key] = value


def _unexpressed(c: Inspect, ctx: str, warnings: list[str]) -> None:
    host = c.get("HostConfig") or {}
    mode = host.get("NetworkMode") or "default"
    if mode == "host":
        warnings.append(f"{ctx}: --network host: set hostNetwork: true by hand if that is meant (left out)")
    elif mode not in ("default", "bridge") and not mode.startswith("container:"):
        warnings.append(f"{ctx}: network {mode!r}: a Pod is on the cluster network; left out")
    for key, flag in (("Dns", "--dns"), ("ExtraHosts", "--add-host"), ("Links", "--link"),
                      ("VolumesFrom", "--volumes-from"), ("GroupAdd", "--group-add"), ("Sysctls", "--sysctl")):
        if host.get(key):
            warnings.append(f"{ctx}: {flag} has no per-container Kubernetes field: left out")
    if host.get("PidMode") == "host" or host.get("IpcMode") == "host":
        warnings.append(f"{ctx}: host PID/IPC namespace: set hostPID/hostIPC by hand if meant (left out)")
    log = (host.get("LogConfig") or {}).get("Type")
    if log and log not in ("json-file", "local", "k8s-file"):
        warnings.append(f"{ctx}: log driver {log!r}: the cluster decides logging; left out")


_ANON = re.compile(r"^[0-9a-f]{64}$")


def _mounts(c: Inspect, cname: str, pod_volumes: list[dict[str, Any]], claims: dict[str, Inspect], ctx: str,
            warnings: list[str]) -> list[dict[str, Any]]:
    host = c.get("HostConfig") or {}
    out: list[dict[str, Any]] = []
    taken = {v["name"] for v in pod_volumes}

    def add_volume(base: str, source: dict[str, Any]) -> str:
        for v in pod_volumes:
            if {k: x for k, x in v.items() if k != "name"} == source:
                return str(v["name"])
        vname, n = names.dns_name(base), 1
        while vname in taken:
            n += 1
            vname = f"{names.dns_name(base)[:58]}-{n}"
        taken.add(vname)
        pod_volumes.append({"name": vname, **source})
        return vname

    tmpfs: dict[str, str] = dict(host.get("Tmpfs") or {})
    for m in c.get("Mounts") or []:
        kind, dest = m.get("Type"), m.get("Destination", "")
        ro = not m.get("RW", True)
        if kind == "volume":
            name = m.get("Name", "")
            if _ANON.match(name):
                vname = add_volume(f"{cname}-{dest.strip('/').replace('/', '-') or 'root'}", {"emptyDir": {}})
                warnings.append(f"{ctx}: anonymous volume at {dest} becomes an emptyDir (it lives with the pod)")
            else:
                claim = names.dns_name(name, 253)
                if claim != name:
                    warnings.append(f"{ctx}: volume {name!r} is not a valid claim name: claim {claim!r} is used")
                claims.setdefault(claim, {"Name": name, "Driver": m.get("Driver", "local")})
                vname = add_volume(claim, {"persistentVolumeClaim": {"claimName": claim}})
        elif kind == "bind":
            vname = add_volume(f"{cname}-host-{dest.strip('/').replace('/', '-') or 'root'}",
                               {"hostPath": {"path": m.get("Source", "")}})
            warnings.append(f"{ctx}: bind mount {m.get('Source')} -> {dest} becomes a hostPath volume: it reads "
                            "the node's filesystem, which on a cluster is not this machine")
        elif kind == "tmpfs":
            tmpfs.setdefault(dest, "")
            continue
        else:
            warnings.append(f"{ctx}: {kind} mount at {dest} has no Kubernetes form: left out")
            continue
        entry: dict[str, Any] = {"name": vname, "mountPath": dest}
        if ro:
            entry["readOnly"] = True
        out.append(entry)
    for mount in host.get("Mounts") or []:
        if mount.get("Type") == "tmpfs":
            size = (mount.get("TmpfsOptions") or {}).get("SizeBytes")
            tmpfs[mount["Target"]] = f"size={size}" if size else tmpfs.get(mount["Target"], "")
    for dest, opts in tmpfs.items():
        empty: dict[str, Any] = {"medium": "Memory"}
        for opt in filter(None, opts.split(",")):
            key, _, value = opt.partition("=")
            if key == "size":
                empty["sizeLimit"] = _tmpfs_size(value)
            elif key not in ("rw", "noexec", "nosuid", "nodev"):
                warnings.append(f"{ctx}: tmpfs option {opt!r} at {dest} has no emptyDir field: left out")
        vname = add_volume(f"{cname}-tmpfs-{dest.strip('/').replace('/', '-') or 'root'}", {"emptyDir": empty})
        out.append({"name": vname, "mountPath": dest})
    return out


def _tmpfs_size(value: str) -> str:
    v = value.strip()
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    n = int(v[:-1]) * units[v[-1].lower()] if v and v[-1].lower() in units else int(v)
    return quantity.memory(n)


def _service_ports(pod: str, ports: list[dict[str, Any]], warnings: list[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for p in ports:
        if "hostPort" not in p:
            continue
        entry: dict[str, Any] = {"name": f"{p['containerPort']}-{p['protocol'].lower()}", "port": p["hostPort"],
                                 "targetPort": p["containerPort"], "protocol": p["protocol"]}
        if p["hostPort"] in NODE_PORTS:
            entry["nodePort"] = p["hostPort"]
        out.append(entry)
    if out and not all("nodePort" in p for p in out):
        warnings.append(f"{pod}: host ports outside {NODE_PORTS.start}-{NODE_PORTS.stop - 1} cannot be a "
                        "cluster's nodePort: the Service is a ClusterIP one on those ports (portside kube play "
                        "publishes them on the host all the same)")
    return out


def _claim(name: str, vol: Inspect) -> Manifest:
    meta: dict[str, Any] = {"name": name}
    if vol.get("Driver") and vol["Driver"] != "local":
        meta["annotations"] = {"volume.portside.io/driver": vol["Driver"]}
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": meta,
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


def project_containers(containers: list[Inspect], project: str) -> list[Inspect]:
    return [c for c in containers if ((c.get("Config") or {}).get("Labels") or {}).get(COMPOSE_PROJECT) == project]
