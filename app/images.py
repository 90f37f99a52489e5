"""Finding images to run: local images, the recommended list, configured registries (v2 catalog) and Docker Hub
(through the engine's /images/search); pull progress per layer; running an image Kitematic's way.
No Textual here."""

from __future__ import annotations

import ipaddress
import json
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker.utils import parse_repository_tag

from app.containers import unique_name

ASSETS = Path(__file__).resolve().parent.parent / "assets"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True)
class Candidate:
    """One search result: `reference` is what to pull or run (without a tag when `tags` must be asked)."""

    reference: str
    source: str  # "local", "recommended", "registry <host>", "hub"
    description: str = ""
    tag: str = "latest"


def recommended() -> list[dict[str, Any]]:
    try:
        data: list[dict[str, Any]] = json.loads((ASSETS / "recommended.json").read_text())
    except (OSError, ValueError):
        return []
    return data


def local_candidates(api: Any, query: str) -> list[Candidate]:
    out: list[Candidate] = []
    q = query.lower()
    for img in api.images():
        for tag in img.get("RepoTags") or []:
            if tag == "<none>:<none>" or (q and q not in tag.lower()):
                continue
            repo, _, t = tag.rpartition(":")
            out.append(Candidate(repo, "local", f"{img.get('Size', 0) / 1e6:.1f} MB", t or "latest"))
    return sorted(out, key=lambda c: (not c.reference.endswith(q), c.reference))


def recommended_candidates(query: str) -> list[Candidate]:
    q = query.lower()
    return [
        Candidate(r["name"], "recommended", r.get("description", ""))
        for r in recommended()
        if not q or q in r["name"] or q in r.get("description", "").lower()
    ]


def is_loopback_registry(host: str) -> bool:
    """Docker treats registries on loopback addresses (127.0.0.0/8, ::1, localhost) as insecure by default:
    they are spoken to over plain HTTP."""
    name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] if host.count(":") == 1 \
        else host
    name = name or host
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _registry_url(host: str, path: str) -> str:
    return f"{'http' if is_loopback_registry(host) else 'https'}://{host}{path}"


# distribution/reference's grammar, in short: [domain[:port]/]path[:tag][@digest], lower-case path components
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:localhost|\[[0-9a-fA-F:]+\]|{_LABEL}(?:\.{_LABEL})*)(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


def registry_of(text: str) -> str | None:
    """The registry a search names (`127.0.0.1:5000/team` -> `127.0.0.1:5000`), None for a Docker Hub search."""
    first, slash, _ = text.strip().partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first
    return None


def typed_reference(text: str) -> str | None:
    """The reference to run when what was typed is a full image reference rather than a search word: it names a
    registry (`registry:5000/team/app:1.2`, `127.0.0.1:5000/x`), a tag (`nginx:1.27`) or a digest
    (`nginx@sha256:...`). A plain word (`nginx`) is a search."""
    text = text.strip()
    m = _REFERENCE.match(text)
    if m is None:
        return None
    domain = m.group("domain")
    names_registry = domain is not None and ("." in domain or ":" in domain or domain == "localhost"
                                             or domain.startswith("["))
    if not (names_registry or m.group("tag") or m.group("digest")):
        return None
    if domain is not None and not names_registry and domain != domain.lower():
        return None  # an upper-case first component that is no registry is no valid repository either
    return text


def _get_json(url: str, timeout: float = 3.0) -> Any:
    ctx = ssl.create_default_context()
    handler = urllib.request.HTTPSHandler(context=ctx)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), handler)
    with opener.open(url, timeout=timeout) as resp:
        return json.loads(resp.read())


def registry_candidates(host: str, query: str) -> list[Candidate]:
    """Repositories of a registry whose name contains the query (registry API v2 `_catalog`)."""
    data = _get_json(_registry_url(host, "/v2/_catalog?n=1000"))
    q = query.lower()
    return [Candidate(f"{host}/{repo}", f"registry {host}") for repo in data.get("repositories") or [] if q in repo]


def hub_candidates(api: Any, query: str) -> list[Candidate]:
    """Docker Hub through the engine; raises when the engine cannot reach it (the caller stays quiet)."""
    if not query:
        return []
    return [
        Candidate(r["name"], "hub", (r.get("description") or "")[:80] + (" [official]" if r.get("is_official") else ""))
        for r in api.search(query, limit=25)
    ]


def tags_for(api: Any, reference: str) -> list[str]:
    """Tags of a repository: local ones, then the registry's `tags/list` for a registry host reference."""
    tags = []
    for img in api.images(name=reference):
        for tag in img.get("RepoTags") or []:
            if tag.rpartition(":")[0] == reference:
                tags.append(tag.rpartition(":")[2])
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        try:
            data = _get_json(_registry_url(first, f"/v2/{rest}/tags/list"))
            tags.extend(data.get("tags") or [])
        except (OSError, ValueError, urllib.error.URLError):
            pass
    if not tags:
        tags = ["latest"]
    return sorted(set(tags), key=lambda t: (t != "latest", t))


@dataclass
class PullProgress:
    """Per-layer bytes from a pull's JSON lines, as `docker pull` shows them."""

    layers: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # id -> (status, current, total)
    status: str = ""
    error: str = ""

    def feed(self, line: dict[str, Any]) -> None:
        if line.get("error"):
            self.error = str(line.get("error"))
            return
        lid = line.get("id")
        status = str(line.get("status", ""))
        detail = line.get("progressDetail") or {}
        if lid and status not in ("Pulling from " + str(lid),) and not status.startswith("Pulling from"):
            old = self.layers.get(lid, ("", 0, 0))
            current, total = int(detail.get("current") or old[1]), int(detail.get("total") or old[2])
            if status in ("Download complete", "Pull complete", "Already exists", "Verifying Checksum"):
                current = total or current
            self.layers[lid] = (status, current, total)
        else:
            self.status = status

    @property
    def fraction(self) -> float:
        layers = list(self.layers.values())  # a copy: the pull's thread may be adding layers
        total = sum(t for _, _, t in layers)
        if not total:
            return 0.0
        return sum(min(c, t) for _, c, t in layers) / total


def split_reference(reference: str) -> tuple[str, str]:
    repo, tag = parse_repository_tag(reference)
    if tag and tag.startswith("sha256:"):
        return repo, tag
    return repo, tag or "latest"


def run_image(
    api: Any,
    reference: str,
    pull: Callable[[str, str], Any],
    on_progress: Callable[[PullProgress], None],
    on_step: Callable[[str], None],
) -> str:
    """Kitematic's CREATE: pull when missing, name it `<repo>` or `<repo>-N`, publish every exposed port on a
    free host port, start. Returns the container id. `pull(repo, tag)` yields the pull's JSON lines."""
    repo, tag = split_reference(reference)
    ref = f"{repo}@{tag}" if tag.startswith("sha256:") else f"{repo}:{tag}"
    try:
        image = api.inspect_image(ref)
    except Exception:
        image = None
    if image is None:
        on_step(f"Pulling {ref}")
        progress = PullProgress()
        stream = pull(repo, tag)
        try:
            for line in stream:
                progress.feed(line)
                on_progress(progress)
                if progress.error:
                    raise RuntimeError(progress.error)
        finally:
            stream.close()
        image = api.inspect_image(ref)
    on_step("Creating container")
    taken = {n.lstrip("/") for c in api.containers(all=True) for n in c.get("Names") or []}
    name = unique_name(repo.rsplit("/", 1)[-1], taken)
    host_config = api.create_host_config(publish_all_ports=True)
    cid: str = api.create_container(ref, name=name, host_config=host_config)["Id"]
    on_step(f"Starting {name}")
    try:
        api.start(cid)
    except Exception:
        api.remove_container(cid, force=True)
        raise
    return cid
