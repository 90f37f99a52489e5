"""The Docker hosts the TUI can manage: where they come from, which one to start on, the ones the user added.

Sources, in the switcher's order: the local portside engine (a running `portside daemon`, else the embedded
engine), `$DOCKER_HOST`, every docker CLI context (`$DOCKER_CONFIG/contexts`, as `docker context create` writes
them; the current one from `$DOCKER_CONTEXT` or the config's `currentContext`), Podman's sockets when present,
and the hosts the user added (`[[hosts]]` in portside's config file). No Textual and no docker-py here: plain data,
so tests and the CLI use it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PODMAN_SOCKET = "/run/podman/podman.sock"
DOCKER_SOCKET = "/var/run/docker.sock"
# How long a connection attempt may take before the host counts as unreachable (the switcher must never hang).
CONNECT_TIMEOUT = 3.0

SOURCES = ("portside", "cli", "env", "context", "podman", "user")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # docker's context name rule


@dataclass(frozen=True)
class Tls:
    """TLS material of a tcp:// host: file paths (as docker's --tlscacert/--tlscert/--tlskey) and verification."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    verify: bool = True

    def config(self) -> Any:
        """docker-py's TLSConfig for these files."""
        from docker.tls import TLSConfig

        client = (self.cert, self.key) if self.cert and self.key else None
        return TLSConfig(client_cert=client, ca_cert=self.ca or None, verify=self.verify)


@dataclass(frozen=True)
class Host:
    """One Engine API the switcher lists. `url` is what docker-py takes; the local portside engine has none until
    it is resolved (daemon socket or embedded engine)."""

    name: str
    url: str
    source: str  # one of SOURCES
    label: str = ""  # what the header says; empty: "name (url)"
    tls: Tls | None = None
    current: bool = False  # the docker CLI's current context
    description: str = ""

    @property
    def title(self) -> str:
        return self.label or (f"{self.name} ({self.url})" if self.url else self.name)

    @property
    def removable(self) -> bool:
        return self.source == "user"


LOCAL = Host("portside", "", "portside", description="the local portside engine: its daemon, else in-process")


class ContextNotFound(Exception):
    """`docker --context NAME` for a context that does not exist; the text is Docker's."""


class HostError(ValueError):
    """A host the user typed is not usable; the text says why."""


# --- discovery ---


def docker_config_dir(env: dict[str, str]) -> Path:
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".docker"


def context_id(name: str) -> str:
    """The directory a context lives in: the sha256 of its name (docker/cli's store)."""
    return hashlib.sha256(name.encode()).hexdigest()


def current_context(env: dict[str, str]) -> str:
    """$DOCKER_CONTEXT, else the config's currentContext, else "default" (the docker CLI's order)."""
    if env.get("DOCKER_CONTEXT"):
        return env["DOCKER_CONTEXT"]
    try:
        data = json.loads((docker_config_dir(env) / "config.json").read_text())
    except (OSError, ValueError):
        return "default"
    name = data.get("currentContext") if isinstance(data, dict) else None
    return name if isinstance(name, str) and name else "default"


def load_context(name: str, env: dict[str, str]) -> Host | None:
    """A context by name, None when there is no meta.json for it (or it has no docker endpoint)."""
    base = docker_config_dir(env) / "contexts"
    meta_path = base / "meta" / context_id(name) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    return _context_host(meta, base, current_context(env))


def _context_host(meta: Any, base: Path, current: str) -> Host | None:
    if not isinstance(meta, dict) or not isinstance(meta.get("Name"), str):
        return None
    name = meta["Name"]
    endpoint = (meta.get("Endpoints") or {}).get("docker") or {}
    url = endpoint.get("Host") if isinstance(endpoint, dict) else None
    if not isinstance(url, str) or not url:
        return None
    tls_dir = base / "tls" / context_id(name) / "docker"
    files = {f: str(tls_dir / f"{f}.pem") for f in ("ca", "cert", "key") if (tls_dir / f"{f}.pem").is_file()}
    skip = bool(endpoint.get("SkipTLSVerify"))
    tls = None
    if files or skip:
        tls = Tls(files.get("ca", ""), files.get("cert", ""), files.get("key", ""), verify=not skip)
    desc = (meta.get("Metadata") or {}).get("Description", "") if isinstance(meta.get("Metadata"), dict) else ""
    return Host(name, normalise(url), "context", label=f"context {name} ({url})", tls=tls, current=name == current,
                description=str(desc or ""))


def contexts(env: dict[str, str]) -> list[Host]:
    """Every context in the docker CLI's store, sorted by name, the current one marked; Docker's implicit
    "default" context (DOCKER_HOST or the standard socket) is not among them: $DOCKER_HOST and the socket are
    listed as hosts of their own."""
    base = docker_config_dir(env) / "contexts"
    current = current_context(env)
    found = []
    for meta_path in sorted((base / "meta").glob("*/meta.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            continue
        host = _context_host(meta, base, current)
        if host is not None:
            found.append(host)
    return sorted(found, key=lambda h: h.name)


def env_tls(env: dict[str, str]) -> Tls | None:
    """$DOCKER_TLS_VERIFY / $DOCKER_CERT_PATH as the docker CLI reads them (ca.pem, cert.pem, key.pem)."""
    verify = env.get("DOCKER_TLS_VERIFY", "") not in ("", "0", "false")
    cert_path = env.get("DOCKER_CERT_PATH")
    if not verify and not cert_path:
        return None
    d = Path(cert_path) if cert_path else docker_config_dir(env)
    return Tls(str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem"), verify=verify)


def podman_sockets(env: dict[str, str], system: str = PODMAN_SOCKET) -> list[str]:
    paths = [system]
    if env.get("XDG_RUNTIME_DIR"):
        paths.append(f"{env['XDG_RUNTIME_DIR']}/podman/podman.sock")
    return [p for p in paths if _is_socket(p)]


def _is_socket(path: str) -> bool:
    import stat

    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def discover(env: dict[str, str] | None = None, user: list[Host] | None = None, *,
             podman_socket: str = PODMAN_SOCKET, docker_socket: str = DOCKER_SOCKET) -> list[Host]:
    """Every host the switcher offers, names unique (a later duplicate gets a suffix)."""
    env = dict(os.environ) if env is None else env
    found: list[Host] = [LOCAL]
    if env.get("DOCKER_HOST"):
        url = env["DOCKER_HOST"]
        found.append(Host("DOCKER_HOST", normalise(url), "env", label=f"DOCKER_HOST {url}", tls=_tls_for(url, env)))
    found += contexts(env)
    if _is_socket(docker_socket):
        found.append(Host("docker", f"unix://{docker_socket}", "env", description="the standard Docker socket"))
    for path in podman_sockets(env, podman_socket):
        name = "podman" if path == podman_socket else "podman-user"
        found.append(Host(name, f"unix://{path}", "podman", description="Podman's Docker-compatible API"))
    found += user or []
    seen: set[str] = set()
    unique = []
    for h in found:
        name, n = h.name, 2
        while name in seen:
            name, n = f"{h.name}-{n}", n + 1
        seen.add(name)
        unique.append(h if name == h.name else _renamed(h, name))
    return unique


def _renamed(h: Host, name: str) -> Host:
    return Host(name, h.url, h.source, h.label, h.tls, h.current, h.description)


def _tls_for(url: str, env: dict[str, str]) -> Tls | None:
    return env_tls(env) if url.startswith(("tcp://", "https://")) else None


def initial(host: str | None = None, context: str | None = None, env: dict[str, str] | None = None) -> Host:
    """The host the TUI starts on, as before hosts were switchable: `-H`, `--context`, $DOCKER_HOST, the docker
    CLI's context when it is not "default", else the local portside engine. Raises ContextNotFound."""
    env = dict(os.environ) if env is None else env
    if host:
        return Host(host, normalise(host), "cli", label=f"-H {host}", tls=_tls_for(host, env))
    if context:
        return _named_context(context, env)
    if env.get("DOCKER_HOST"):
        url = env["DOCKER_HOST"]
        return Host("DOCKER_HOST", normalise(url), "env", label=f"DOCKER_HOST {url}", tls=_tls_for(url, env))
    name = current_context(env)
    if name != "default":
        return _named_context(name, env)
    return LOCAL


def _named_context(name: str, env: dict[str, str]) -> Host:
    if name == "default":  # docker's implicit context: $DOCKER_HOST, else the standard socket
        url = env.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"
        return Host("default", normalise(url), "context", label=f"context default ({url})", tls=_tls_for(url, env))
    found = load_context(name, env)
    if found is None:
        meta = docker_config_dir(env) / "contexts" / "meta" / context_id(name) / "meta.json"
        raise ContextNotFound(f'context "{name}": context not found: open {meta}: no such file or directory')
    return found


def normalise(url: str) -> str:
    if url.startswith("/"):
        return f"unix://{url}"
    return url


# --- hosts the user adds ---


def check_url(url: str) -> str:
    """A host URL in the forms the docker CLI takes (unix://, tcp://, ssh://); returns it normalised."""
    url = normalise(url.strip())
    if not url:
        raise HostError("a URL is needed: unix:///path, tcp://host:port or ssh://user@host")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("unix", "tcp", "ssh", "http", "https", "npipe"):
        raise HostError(f"{url!r}: use unix:///path/to.sock, tcp://host:port or ssh://user@host")
    if scheme == "npipe":
        raise HostError("npipe:// is for Windows")
    if scheme == "unix":
        if not rest.startswith("/"):
            raise HostError(f"{url!r}: a unix socket needs an absolute path (unix:///run/docker.sock)")
        return url
    hostport = rest.split("/", 1)[0]
    if scheme == "ssh":
        hostport = hostport.rpartition("@")[2]
    host, _, port = hostport.rpartition(":") if ":" in hostport.lstrip("[").split("]")[-1] else (hostport, "", "")
    if not host:
        raise HostError(f"{url!r}: no host name")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise HostError(f"{url!r}: {port!r} is not a port number")
    if scheme in ("tcp", "http", "https") and not port:
        raise HostError(f"{url!r}: a tcp:// host needs a port (2375 plain, 2376 with TLS)")
    return url


def make_user_host(name: str, url: str, ca: str = "", cert: str = "", key: str = "", *, verify: bool = True,
                   taken: set[str] | None = None) -> Host:
    """A host from the add-host form's fields; HostError names the first thing wrong."""
    name = name.strip()
    if not name:
        raise HostError("a name is needed")
    if not _NAME.match(name):
        raise HostError(f"{name!r}: names are letters, digits and _.+- (starting with a letter or digit)")
    if taken and name in taken:
        raise HostError(f"a host named {name!r} already exists")
    url = check_url(url)
    ca, cert, key = (p.strip() for p in (ca, cert, key))
    for what, path in (("CA", ca), ("certificate", cert), ("key", key)):
        if path and not Path(path).expanduser().is_file():
            raise HostError(f"TLS {what} {path!r}: no such file")
    if bool(cert) != bool(key):
        raise HostError("a TLS client certificate and its key go together: give both or neither")
    tls = None
    if ca or cert or key:
        if not url.startswith(("tcp://", "https://")):
            raise HostError("TLS files are for tcp:// hosts")
        ca, cert, key = (str(Path(p).expanduser()) if p else "" for p in (ca, cert, key))
        tls = Tls(ca, cert, key, verify=verify)
    return Host(name, url, "user", tls=tls)


def parse_user_hosts(raw: Any, where: str) -> tuple[list[Host], list[str]]:
    """`[[hosts]]` of the config file: name, url, and for TLS tls_ca, tls_cert, tls_key, tls_verify."""
    if not isinstance(raw, list):
        return [], [f"{where}: hosts must be [[hosts]] tables with a name and a url"]
    found: list[Host] = []
    errors: list[str] = []
    for entry in raw:
        if not isinstance(entry, dict):
            errors.append(f"{where}: each [[hosts]] entry is a table with a name and a url")
            continue
        try:
            verify = entry.get("tls_verify", True)
            if not isinstance(verify, bool):
                raise HostError("tls_verify must be true or false")
            host = _user_host_unchecked(entry, verify, {h.name for h in found})
        except HostError as exc:
            errors.append(f"{where}: [[hosts]] {entry.get('name', '?')}: {exc}")
            continue
        found.append(host)
    return found, errors


def _user_host_unchecked(entry: dict[str, Any], verify: bool, taken: set[str]) -> Host:
    """Like make_user_host, but TLS files that are missing now are kept (they may be mounted later): the
    connection attempt says so."""
    fields = {k: entry.get(k, "") for k in ("name", "url", "tls_ca", "tls_cert", "tls_key")}
    if not all(isinstance(v, str) for v in fields.values()):
        raise HostError("name, url and the tls_ paths are strings")
    name = fields["name"].strip()
    if not name or not _NAME.match(name) or name in taken:
        raise HostError("needs a unique name of letters, digits and _.+-")
    url = check_url(fields["url"])
    tls = None
    if fields["tls_ca"] or fields["tls_cert"] or fields["tls_key"]:
        tls = Tls(fields["tls_ca"], fields["tls_cert"], fields["tls_key"], verify=verify)
    return Host(name, url, "user", tls=tls)


def _toml_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # JSON's escapes are all valid in a TOML basic string


def hosts_toml(hosts: list[Host]) -> str:
    out = []
    for h in hosts:
        out.append("[[hosts]]")
        out.append(f"name = {_toml_string(h.name)}")
        out.append(f"url = {_toml_string(h.url)}")
        if h.tls is not None:
            for key, value in (("tls_ca", h.tls.ca), ("tls_cert", h.tls.cert), ("tls_key", h.tls.key)):
                if value:
                    out.append(f"{key} = {_toml_string(value)}")
            if not h.tls.verify:
                out.append("tls_verify = false")
        out.append("")
    return "\n".join(out)


_TABLE = re.compile(r"^\s*\[")
_HOSTS_TABLE = re.compile(r"^\s*\[\[\s*hosts\s*\]\]\s*(#.*)?$")


def save_user_hosts(path: Path, hosts: list[Host]) -> None:
    """Write the user's hosts as the file's `[[hosts]]` tables, keeping every other line of the file as it was
    (comments included). The new text is parsed before it replaces the old one, atomically."""
    try:
        old = path.read_text()
    except FileNotFoundError:
        old = ""
    kept: list[str] = []
    inside = False
    for line in old.splitlines():
        if _HOSTS_TABLE.match(line):
            inside = True
            continue
        if inside and _TABLE.match(line):
            inside = False
        if not inside:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    text = "\n".join(kept) + ("\n\n" if kept else "") + hosts_toml(hosts)
    data = tomllib.loads(text)  # raises before anything is written if the result would not load
    back, errors = parse_user_hosts(data.get("hosts", []), str(path))
    if errors or [h.name for h in back] != [h.name for h in hosts]:
        raise HostError(f"{path}: the hosts would not read back ({'; '.join(errors)})")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


# --- why a host does not answer ---


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, what caused it, and the exceptions requests/urllib3 wrap in their args."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e in seen or len(seen) > 20:
            continue
        seen.append(e)
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None)) if isinstance(x, BaseException)]
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        errors = getattr(e, "errors", None)  # paramiko's NoValidConnectionsError: one socket error per address
        if isinstance(errors, dict):
            todo += [x for x in errors.values() if isinstance(x, BaseException)]
    return seen


_CLIENT_CERT_REFUSED = ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA")


def describe_error(exc: BaseException, timeout: float = CONNECT_TIMEOUT, tls: Any = None) -> str:
    """A short reason a host is unreachable: connection refused, no such socket, permission denied, TLS error,
    auth, timed out; else the error's own first line. `tls`: the docker-py TLSConfig the attempt used, if any."""
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    if tls is not None and any(type(e).__name__ == "RemoteDisconnected" for e in chain):
        # a TLS 1.3 server that wants a client certificate closes the connection after the handshake, before
        # the client reads its alert
        if not getattr(tls, "cert", None):
            return "TLS error: the host closed the connection: it wants a client certificate (none given)"
        return "TLS error: the host closed the connection: it refused the client certificate"
    status = next((getattr(getattr(e, "response", None), "status_code", None) for e in chain
                   if getattr(getattr(e, "response", None), "status_code", None)), None)
    if status in (401, 403) or "unauthorized" in text.lower():
        return f"auth: the host refused access (HTTP {status or 401})"
    for e in chain:
        if type(e).__name__ in ("AuthenticationException", "BadAuthenticationType", "PasswordRequiredException"):
            return f"auth: ssh refused the login ({_first_line(e)})"
    if "not found in known_hosts" in text:  # paramiko's RejectPolicy, as ssh's StrictHostKeyChecking
        return "ssh: the host key is not in ~/.ssh/known_hosts"
    for e in chain:
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS error: certificate not trusted ({e.verify_message or e.reason})"
    for e in chain:
        if isinstance(e, ssl.SSLError) or type(e).__name__ == "SSLError":
            reason = getattr(e, "reason", None) or _ssl_reason(str(e))
            if isinstance(reason, str) and reason in _CLIENT_CERT_REFUSED:
                return f"TLS error: the host refused the client certificate ({reason.lower()})"
            return f"TLS error: {str(reason).lower() if isinstance(reason, str) else _first_line(e)}"
    for e in chain:
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, FileNotFoundError):
            return "no such socket" + (f" ({e.filename})" if e.filename else "")
        if isinstance(e, PermissionError):
            return "permission denied" + (f" ({e.filename})" if e.filename else "")
        if isinstance(e, (socket.timeout, TimeoutError)) or "Timeout" in type(e).__name__:
            return f"timed out after {timeout:g} s"
        if isinstance(e, socket.gaierror):
            return f"unknown host name ({e.strerror})"
    low = text.lower()
    if "connection refused" in low:
        return "connection refused"
    if "timed out" in low:
        return f"timed out after {timeout:g} s"
    if "no such file" in low:
        return "no such socket"
    if "permission denied" in low:
        if "publickey" in low or "ssh" in low:
            return "auth: ssh refused the key (permission denied)"
        return "permission denied"
    if "ssl" in low or "tls" in low:
        return f"TLS error: {_first_line(exc)}"
    return _first_line(exc)


def _ssl_reason(text: str) -> str | None:
    m = re.search(r"\[SSL: ([A-Z0-9_]+)\]", text)
    return m.group(1) if m else None


def _first_line(exc: BaseException) -> str:
    from app.lifecycle import error_text

    line = (error_text(exc).strip().splitlines() or [type(exc).__name__])[0]
    return line if len(line) <= 160 else line[:157] + "…"


@dataclass
class HostState:
    """What the switcher shows for a host: connecting, connected (with the server's version) or unreachable."""

    state: str = "not connected"
    reason: str = ""
    version: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        if self.state in ("connected", "reachable"):  # reachable: probed, not open in the pool
            v = self.version
            name = "Podman" if any("podman" in str(c.get("Name", "")).lower() for c in v.get("Components") or []) \
                else "portside" if "portside" in str(v.get("Platform", {}).get("Name", "")).lower() else "Docker"
            return f"{self.state}: {name} {v.get('Version', '')} (API {v.get('ApiVersion', '?')})"
        if self.state == "unreachable":
            return f"unreachable: {self.reason}"
        return self.state
