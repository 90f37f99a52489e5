"""Kubernetes manifests to Engine API create bodies (`portside kube play`, Podman's `kube play`).

`plan()` checks every document before anything is made and returns what to make: volumes, then pods, each a list
of containers (`POST /containers/create` bodies plus the ConfigMap/Secret files to put into them before they
start). A Pod's containers share its first container's network namespace (NetworkMode container:<first>), and
are named `<pod>-<container>`, as Podman names them. Everything made carries the labels in engine/kube/names.py,
which is what `kube down` removes by.
"""

from __future__ import annotations

import base64
import binascii
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from engine.kube import balancer, names, quantity
from engine.kube.manifests import Manifest, ManifestError, where

SUPPORTED = {"Pod": "v1", "Deployment": "apps/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
             "PersistentVolumeClaim": "v1"}
DEFAULT_FILE_MODE = 0o644  # a configMap/secret volume's defaultMode when the manifest gives none

# Container fields play turns into Engine API fields; any other is named on stderr.
_CONTAINER_FIELDS = {"name", "image", "command", "args", "env", "envFrom", "workingDir", "ports", "resources",
                     "securityContext", "livenessProbe", "volumeMounts", "stdin", "tty", "imagePullPolicy",
                     "terminationMessagePath", "terminationMessagePolicy"}
_POD_FIELDS = {"containers", "restartPolicy", "volumes", "hostname", "securityContext",
               "terminationGracePeriodSeconds", "dnsPolicy", "enableServiceLinks", "schedulerName"}


@dataclass
class File:
    path: str  # absolute, in the container
    data: bytes
    mode: int


@dataclass
class Container:
    name: str  # the engine's container name, <pod>-<container>
    body: dict[str, Any]  # POST /containers/create
    files: list[File] = field(default_factory=list)


@dataclass
class Pod:
    name: str
    owner: str  # "Pod/x" or "Deployment/x"
    containers: list[Container]
    port_names: dict[str, int] = field(default_factory=dict)  # a Service's named targetPort resolves here


@dataclass
class Volume:
    name: str
    labels: dict[str, str]
    driver: str = "local"


@dataclass
class Balanced:
    """A Service port published on the host and balanced across several pods (engine/kube/balancer.py)."""

    service: str
    host_ip: str  # "" for every address
    host_port: int
    target_port: int


@dataclass
class Plan:
    balanced: list[Balanced] = field(default_factory=list)
    volumes: list[Volume] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    owners: set[str] = field(default_factory=set)  # what `kube down` of the same file removes

    @property
    def images(self) -> list[str]:
        return list(dict.fromkeys(c.body["Image"] for p in self.pods for c in p.containers))


def owners(docs: list[Manifest]) -> set[str]:
    """The owner labels of everything a play of these documents makes (all `kube down` needs)."""
    return {f"{d['kind']}/{d['metadata']['name']}" for d in docs
            if d.get("kind") in ("Pod", "Deployment", "PersistentVolumeClaim")}


def plan(docs: list[Manifest], publish_address: str = "") -> Plan:
    out = Plan()
    for d in docs:
        kind = d.get("kind")
        if kind not in SUPPORTED:
            raise ManifestError(where(d), f"field kind: {kind!r} is not supported (kube play takes "
                                f"{', '.join(SUPPORTED)})")
        if d.get("apiVersion") != SUPPORTED[kind]:
            raise ManifestError(where(d), f"field apiVersion: {kind} is {SUPPORTED[kind]}, not {d.get('apiVersion')!r}")
        if not names.is_dns_name(d["metadata"]["name"], 253):
            raise ManifestError(where(d), f"field metadata.name: {d['metadata']['name']!r} is not a DNS-1123 name")
    configmaps = {d["metadata"]["name"]: _config_data(d) for d in docs if d["kind"] == "ConfigMap"}
    secrets = {d["metadata"]["name"]: _secret_data(d) for d in docs if d["kind"] == "Secret"}
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for d in docs:
        if d["kind"] == "PersistentVolumeClaim":
            ann = d["metadata"].get("annotations") or {}
            claim = d["metadata"]["name"]
            out.volumes.append(Volume(claim, {names.MANAGED: "true", names.OWNER: f"PersistentVolumeClaim/{claim}"},
                                      ann.get("volume.portside.io/driver", "local")))
    ctx = _Sources(configmaps, secrets, claims, out)
    for d in docs:
        name = d["metadata"]["name"]
        if d["kind"] == "Pod":
            out.pods.append(_pod(d, name, f"Pod/{name}", d.get("metadata") or {}, _spec(d, "spec"), "spec", ctx))
        elif d["kind"] == "Deployment":
            spec = _spec(d, "spec")
            replicas = spec.get("replicas", 1)
            if not isinstance(replicas, int) or replicas < 0:
                raise ManifestError(where(d), "field spec.replicas: must be a whole number, 0 or more")
            template = spec.get("template")
            if not isinstance(template, dict):
                raise ManifestError(where(d), "field spec.template is missing")
            tmeta = template.get("metadata") or {}
            selector = ((spec.get("selector") or {}).get("matchLabels") or {})
            labels = tmeta.get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                raise ManifestError(where(d), "field spec.selector: does not match spec.template.metadata.labels")
            pspec = _spec(template, "spec", d, "spec.template.spec")
            for i in range(replicas):
                pod = f"{name}-pod" if replicas == 1 else f"{name}-pod-{i}"
                out.pods.append(_pod(d, pod, f"Deployment/{name}", tmeta, pspec, "spec.template.spec", ctx))
    for d in docs:
        if d["kind"] == "Service":
            _service(d, out, publish_address)
    out.owners = owners(docs)
    return out


@dataclass
class _Sources:
    configmaps: dict[str, dict[str, bytes]]
    secrets: dict[str, dict[str, bytes]]
    claims: set[str]
    plan: Plan


def _spec(d: Manifest, key: str, doc: Manifest | None = None, path: str | None = None) -> dict[str, Any]:
    spec = d.get(key)
    if not isinstance(spec, dict):
        raise ManifestError(where(doc or d), f"field {path or key} is missing")
    return spec


def _config_data(d: Manifest) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for k, v in (d.get("data") or {}).items():
        if not isinstance(v, str):
            raise ManifestError(where(d), f"field data.{k}: must be a string")
        out[k] = v.encode()
    for k, v in (d.get("binaryData") or {}).items():
        out[k] = _b64(d, f"binaryData.{k}", v)
    return out


def _secret_data(d: Manifest) -> dict[str, bytes]:
    out = {k: _b64(d, f"data.{k}", v) for k, v in (d.get("data") or {}).items()}
    for k, v in (d.get("stringData") or {}).items():
        out[k] = str(v).encode()
    return out


def _b64(d: Manifest, path: str, v: object) -> bytes:
    try:
        return base64.b64decode(str(v), validate=True)
    except (binascii.Error, ValueError) as e:
        raise ManifestError(where(d), f"field {path}: not base64") from e


def _pod(d: Manifest, pod: str, owner: str, meta: dict[str, Any], spec: dict[str, Any], path: str,
         src: _Sources) -> Pod:
    w = where(d)
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise ManifestError(w, f"field {path}.containers: a pod needs at least one container")
    if spec.get("initContainers"):
        raise ManifestError(w, f"field {path}.initContainers: init containers are not supported by kube play")
    for key in spec:
        if key not in _POD_FIELDS:
            src.plan.warnings.append(f"{w}: field {path}.{key} is not used by kube play")
    labels: dict[str, str] = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    annotations: dict[str, str] = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    volumes = {v.get("name"): v for v in spec.get("volumes") or [] if isinstance(v, dict)}
    restart = {"Always": "always", "OnFailure": "on-failure", "Never": "no"}.get(spec.get("restartPolicy", "Always"))
    if restart is None:
        raise ManifestError(w, f"field {path}.restartPolicy: {spec['restartPolicy']!r} is not Always, OnFailure "
                            "or Never")
    pod_sec = spec.get("securityContext") or {}
    out: list[Container] = []
    seen: set[str] = set()
    first = ""
    pod_ports: dict[str, list[dict[str, str]]] = {}
    for i, c in enumerate(containers):
        cpath = f"{path}.containers[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not names.is_dns_name(c["name"]):
            raise ManifestError(w, f"field {cpath}.name: missing or not a DNS-1123 label")
        if c["name"] in seen:
            raise ManifestError(w, f"field {cpath}.name: {c['name']!r} appears twice")
        seen.add(c["name"])
        if not isinstance(c.get("image"), str) or not c["image"]:
            raise ManifestError(w, f"field {cpath}.image is missing")
        for key in c:
            if key not in _CONTAINER_FIELDS:
                src.plan.warnings.append(f"{w}: field {cpath}.{key} is not used by kube play")
        cname = f"{pod}-{c['name']}"
        ours = {names.MANAGED: "true", names.OWNER: owner, names.POD: pod, names.CONTAINER: c["name"]}
        if annotations:
            ours[names.ANNOTATIONS] = json.dumps(annotations, sort_keys=True)
        body: dict[str, Any] = {"Image": c["image"], "Labels": {**labels, **ours}}
        host: dict[str, Any] = {"RestartPolicy": {"Name": restart}}
        body["HostConfig"] = host
        if "command" in c:
            body["Entrypoint"] = _strings(w, f"{cpath}.command", c["command"])
            body["Cmd"] = _strings(w, f"{cpath}.args", c.get("args") or [])
        elif "args" in c:
            body["Cmd"] = _strings(w, f"{cpath}.args", c["args"])
        env = _env(w, cpath, pod, c, src)
        if env:
            body["Env"] = env
        if c.get("workingDir"):
            body["WorkingDir"] = str(c["workingDir"])
        if c.get("stdin"):
            body["OpenStdin"] = True
        if c.get("tty"):
            body["Tty"] = True
        _security(w, cpath, {**pod_sec, **(c.get("securityContext") or {})}, body, host, src.plan.warnings)
        _resources(w, cpath, c.get("resources") or {}, host, src.plan.warnings)
        pids = annotations.get(f"{names.PIDS_ANNOTATION}.{c['name']}")
        if pids and pids.isdigit():
            host["PidsLimit"] = int(pids)
        if c.get("livenessProbe"):
            hc = _probe(w, f"{cpath}.livenessProbe", c["livenessProbe"], src.plan.warnings)
            if hc:
                body["Healthcheck"] = hc
        for p_i, p in enumerate(c.get("ports") or []):
            _port(w, f"{cpath}.ports[{p_i}]", p, pod_ports)
        files = _mounts(w, cpath, pod, owner, c, volumes, host, src)
        if i == 0:
            first = cname
            body["Hostname"] = str(spec.get("hostname") or pod)[:63]
        else:
            host["NetworkMode"] = f"container:{first}"
        out.append(Container(cname, body, files))
    if pod_ports:
        _publish(out[0], pod_ports)
    port_names = {str(p["name"]): int(p["containerPort"]) for c in containers for p in c.get("ports") or []
                  if isinstance(p, dict) and p.get("name")}
    return Pod(pod, owner, out, port_names)


def _strings(w: str, path: str, v: object) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str | int | float) for x in v):
        raise ManifestError(w, f"field {path}: must be a list of strings")
    return [str(x) for x in v]


def _lookup(w: str, path: str, src: _Sources, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
    table = src.configmaps if kind == "ConfigMap" else src.secrets
    if name not in table:
        if optional:
            return None
        raise ManifestError(w, f"field {path}: {kind} {name!r} is not in the file")
    return table[name]


def _env(w: str, cpath: str, pod: str, c: dict[str, Any], src: _Sources) -> list[str]:
    out: dict[str, str] = {}
    for i, ef in enumerate(c.get("envFrom") or []):
        path = f"{cpath}.envFrom[{i}]"
        for key, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
            if key in ef:
                ref = ef[key] or {}
                data = _lookup(w, f"{path}.{key}", src, kind, str(ref.get("name")), bool(ref.get("optional")))
                for k, v in (data or {}).items():
                    out[f"{ef.get('prefix', '')}{k}"] = v.decode(errors="replace")
    for i, e in enumerate(c.get("env") or []):
        path = f"{cpath}.env[{i}]"
        if not isinstance(e, dict) or not isinstance(e.get("name"), str):
            raise ManifestError(w, f"field {path}.name is missing")
        if "valueFrom" not in e:
            out[e["name"]] = str(e.get("value", ""))
            continue
        vf = e["valueFrom"] or {}
        for key, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
            if key in vf:
                ref = vf[key] or {}
                data = _lookup(w, f"{path}.valueFrom.{key}", src, kind, str(ref.get("name")),
                               bool(ref.get("optional")))
                if data is None:
                    break
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        break
                    raise ManifestError(w, f"field {path}.valueFrom.{key}.key: {kind} {ref.get('name')!r} has no "
                                        f"key {ref.get('key')!r}")
                out[e["name"]] = data[ref["key"]].decode(errors="replace")
                break
        else:
            field_ref = (vf.get("fieldRef") or {}).get("fieldPath")
            if field_ref == "metadata.name":
                out[e["name"]] = pod
            else:
                raise ManifestError(w, f"field {path}.valueFrom: only configMapKeyRef, secretKeyRef and fieldRef "
                                    "metadata.name are supported")
    return [f"{k}={v}" for k, v in out.items()]


def _security(w: str, cpath: str, sec: dict[str, Any], body: dict[str, Any], host: dict[str, Any],
              warnings: list[str]) -> None:
    uid, gid = sec.get("runAsUser"), sec.get("runAsGroup")
    if uid is not None:
        body["User"] = f"{uid}:{gid}" if gid is not None else str(uid)
    elif gid is not None:
        warnings.append(f"{w}: field {cpath}.securityContext.runAsGroup without runAsUser: the image's user and "
                        "group apply")
    caps = sec.get("capabilities") or {}
    if caps.get("add"):
        host["CapAdd"] = [str(x) for x in caps["add"]]
    if caps.get("drop"):
        host["CapDrop"] = [str(x) for x in caps["drop"]]
    if sec.get("privileged"):
        host["Privileged"] = True
    if sec.get("readOnlyRootFilesystem"):
        host["ReadonlyRootfs"] = True
    opts = []
    if sec.get("allowPrivilegeEscalation") is False:
        opts.append("no-new-privileges")
    if (sec.get("seccompProfile") or {}).get("type") == "Unconfined":
        opts.append("seccomp=unconfined")
    if opts:
        host["SecurityOpt"] = opts
    if sec.get("supplementalGroups"):
        host["GroupAdd"] = [str(g) for g in sec["supplementalGroups"]]
    for key in sec:
        if key not in ("runAsUser", "runAsGroup", "capabilities", "privileged", "readOnlyRootFilesystem",
                       "allowPrivilegeEscalation", "seccompProfile", "supplementalGroups"):
            warnings.append(f"{w}: field {cpath}.securityContext.{key} is not used by kube play")


def _resources(w: str, cpath: str, res: dict[str, Any], host: dict[str, Any], warnings: list[str]) -> None:
    try:
        for part in ("limits", "requests"):
            for key, value in (res.get(part) or {}).items():
                if (part, key) == ("limits", "memory"):
                    host["Memory"] = quantity.bytes_of(value)
                elif (part, key) == ("limits", "cpu"):
                    host["NanoCpus"] = quantity.nanocpus_of(value)
                elif (part, key) == ("requests", "memory"):
                    host["MemoryReservation"] = quantity.bytes_of(value)
                elif (part, key) == ("requests", "cpu"):
                    host["CpuShares"] = max(2, round(quantity.nanocpus_of(value) / 10**6 * 1024 / 1000))
                else:
                    warnings.append(f"{w}: field {cpath}.resources.{part}.{key} is not used by kube play")
    except quantity.QuantityError as e:
        raise ManifestError(w, f"field {cpath}.resources: {e}") from e
    if "MemoryReservation" in host and "Memory" in host and host["MemoryReservation"] > host["Memory"]:
        raise ManifestError(w, f"field {cpath}.resources.requests.memory: more than the limit")


def _probe(w: str, path: str, probe: dict[str, Any], warnings: list[str]) -> dict[str, Any] | None:
    command = (probe.get("exec") or {}).get("command")
    if not command:
        warnings.append(f"{w}: field {path}: only exec probes become a healthcheck; this one is not used")
        return None
    cmd = _strings(w, f"{path}.exec.command", command)
    test = ["CMD-SHELL", cmd[2]] if len(cmd) == 3 and cmd[:2] == ["/bin/sh", "-c"] else ["CMD", *cmd]
    s = 10**9
    hc: dict[str, Any] = {"Test": test, "Interval": int(probe.get("periodSeconds", 10)) * s,
                          "Timeout": int(probe.get("timeoutSeconds", 1)) * s,
                          "Retries": int(probe.get("failureThreshold", 3))}
    if probe.get("initialDelaySeconds"):
        hc["StartPeriod"] = int(probe["initialDelaySeconds"]) * s
    return hc


def _port(w: str, path: str, p: dict[str, Any], pod_ports: dict[str, list[dict[str, str]]]) -> None:
    if not isinstance(p, dict) or not isinstance(p.get("containerPort"), int):
        raise ManifestError(w, f"field {path}.containerPort: must be a number")
    proto = str(p.get("protocol", "TCP")).lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise ManifestError(w, f"field {path}.protocol: {p['protocol']!r} is not TCP, UDP or SCTP")
    key = f"{p['containerPort']}/{proto}"
    binds = pod_ports.setdefault(key, [])
    if p.get("hostPort"):
        binds.append({"HostIp": str(p.get("hostIP", "")), "HostPort": str(p["hostPort"])})


def _publish(c: Container, ports: dict[str, list[dict[str, str]]]) -> None:
    c.body.setdefault("ExposedPorts", {}).update({k: {} for k in ports})
    host = c.body["HostConfig"].setdefault("PortBindings", {})
    for key, binds in ports.items():
        if binds:
            host.setdefault(key, []).extend(binds)


def _mounts(w: str, cpath: str, pod: str, owner: str, c: dict[str, Any], volumes: dict[Any, dict[str, Any]],
            host: dict[str, Any], src: _Sources) -> list[File]:
    files: list[File] = []
    mounts: list[dict[str, Any]] = []
    for i, vm in enumerate(c.get("volumeMounts") or []):
        path = f"{cpath}.volumeMounts[{i}]"
        if not isinstance(vm, dict) or not str(vm.get("mountPath", "")).startswith("/"):
            raise ManifestError(w, f"field {path}.mountPath: must be an absolute path")
        vol = volumes.get(vm.get("name"))
        if vol is None:
            raise ManifestError(w, f"field {path}.name: no volume {vm.get('name')!r} in the pod's volumes")
        target, ro, sub = str(vm["mountPath"]), bool(vm.get("readOnly")), vm.get("subPath")
        if "persistentVolumeClaim" in vol:
            claim = str((vol["persistentVolumeClaim"] or {}).get("claimName", ""))
            if claim not in src.claims:
                src.plan.warnings.append(f"{w}: claim {claim!r} is not in the file: the engine's volume of that name "
                                         "is used (made if missing) and kube down leaves it")
            if sub:
                raise ManifestError(w, f"field {path}.subPath: not supported for a persistentVolumeClaim")
            mounts.append({"Type": "volume", "Source": claim, "Target": target, "ReadOnly": ro})
        elif "hostPath" in vol:
            hp = vol["hostPath"] or {}
            if hp.get("type") not in (None, "", "Directory", "File"):
                src.plan.warnings.append(f"{w}: hostPath type {hp['type']} of volume {vol['name']!r} is not checked: "
                                         "the path must exist")
            mounts.append({"Type": "bind", "Source": str(hp.get("path", "")), "Target": target, "ReadOnly": ro})
        elif "emptyDir" in vol:
            ed = vol["emptyDir"] or {}
            if ed.get("medium") == "Memory":
                m: dict[str, Any] = {"Type": "tmpfs", "Target": target}
                if ed.get("sizeLimit"):
                    m["TmpfsOptions"] = {"SizeBytes": quantity.bytes_of(ed["sizeLimit"])}
                mounts.append(m)
            else:
                vname = f"{pod}-{vol['name']}"
                if not any(v.name == vname for v in src.plan.volumes):
                    src.plan.volumes.append(Volume(vname, {names.MANAGED: "true", names.OWNER: owner,
                                                           names.POD: pod}))
                mounts.append({"Type": "volume", "Source": vname, "Target": target, "ReadOnly": ro})
        elif "configMap" in vol or "secret" in vol:
            kind, ref = ("ConfigMap", vol["configMap"]) if "configMap" in vol else ("Secret", vol["secret"])
            ref = ref or {}
            name = str(ref.get("name") if kind == "ConfigMap" else ref.get("secretName"))
            data = _lookup(w, f"{cpath}.volumeMounts[{i}] (volume {vol['name']})", src, kind, name,
                           bool(ref.get("optional")))
            mode = int(ref.get("defaultMode", DEFAULT_FILE_MODE))
            items = ref.get("items") or [{"key": k, "path": k} for k in sorted(data or {})]
            for item in items:
                key = item.get("key")
                if data is None or key not in data:
                    raise ManifestError(w, f"field volume {vol['name']}: {kind} {name!r} has no key {key!r}")
                rel = str(item.get("path") or key)
                if sub:
                    if rel != sub:
                        continue
                    dest = target
                else:
                    dest = posixpath.join(target, rel)
                files.append(File(posixpath.normpath(dest), data[key], int(item.get("mode", mode))))
        else:
            kinds = [k for k in vol if k != "name"]
            raise ManifestError(w, f"field volume {vol.get('name')}: {', '.join(kinds) or 'no'} source is not "
                                "supported (kube play takes persistentVolumeClaim, hostPath, emptyDir, configMap "
                                "and secret)")
    if mounts:
        host["Mounts"] = mounts
    return files


def _service(d: Manifest, out: Plan, publish_address: str) -> None:
    w = where(d)
    spec = d.get("spec") or {}
    selector = spec.get("selector") or {}
    if spec.get("type") in ("ExternalName",):
        raise ManifestError(w, "field spec.type: ExternalName services are not supported")
    if not selector:
        out.warnings.append(f"{w}: no selector: nothing to publish")
        return
    chosen = [p for p in out.pods if all(p.containers[0].body["Labels"].get(k) == v for k, v in selector.items())]
    if not chosen:
        out.warnings.append(f"{w}: its selector matches no pod in the file: nothing published")
        return
    target = chosen[0].containers[0]
    ports: dict[str, list[dict[str, str]]] = {}
    for i, p in enumerate(spec.get("ports") or []):
        path = f"spec.ports[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("port"), int):
            raise ManifestError(w, f"field {path}.port: must be a number")
        proto = str(p.get("protocol", "TCP")).lower()
        tp = p.get("targetPort", p["port"])
        if isinstance(tp, str) and not tp.isdigit():
            if tp not in chosen[0].port_names:
                raise ManifestError(w, f"field {path}.targetPort: no container port named {tp!r} in {chosen[0].name}")
            tp = chosen[0].port_names[tp]
        host_port = p.get("nodePort") or p["port"]
        if len(chosen) == 1:
            ports.setdefault(f"{int(str(tp))}/{proto}", []).append({"HostIp": publish_address,
                                                                   "HostPort": str(host_port)})
            continue
        if proto != "tcp":
            out.warnings.append(f"{w}: field {path}.protocol: only TCP is balanced across pods; {proto} port "
                                f"{host_port} is not published")
            continue
        out.balanced.append(Balanced(d["metadata"]["name"], publish_address, int(host_port), int(str(tp))))
        for pod in chosen:  # the balancer finds its backends by this label; generate gives the port back from it
            labels = pod.containers[0].body["Labels"]
            labels[balancer.label(d["metadata"]["name"])] = "true"
            published = json.loads(labels.get(names.BALANCED, "{}"))
            published.setdefault(f"{int(str(tp))}/tcp", []).append({"HostIp": publish_address,
                                                                   "HostPort": str(host_port)})
            labels[names.BALANCED] = json.dumps(published, sort_keys=True)
    if ports:
        _publish(target, ports)

