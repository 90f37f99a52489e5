"""Images made one build step at a time, as Docker's classic builder makes them.

Each step of a build is an image of its own whose parent is the step before (Docker's `Parent`), with the step's
run config under `config` and the config it was probed with under `container_config` (its `Cmd` says what the
step did: `/bin/sh -c #(nop) ENV A=1`, `/bin/sh -c make`). That pair is the classic builder's cache key: a later
build finds a cached step among the children of the current image whose `container_config` equals its probe.

A step either adds a layer (RUN, COPY, ADD, WORKDIR: the upper directory of a container layer, tarred) or only
changes the config (ENV, LABEL, CMD...: `empty_layer` in its history entry, no new diff id). The builder in
engine/build/ calls these through `ImageService`; nothing here knows about Dockerfiles.
"""

from __future__ import annotations

import builtins
import json
from typing import TYPE_CHECKING, Any

from engine.crashpoints import crashpoint
from engine.errors import NotFound
from engine.images import platform as platforms
from engine.images.archive import _record_new_image, now_rfc3339, write_upper_layer
from engine.images.registry import MEDIA_DOCKER_CONFIG, MEDIA_DOCKER_MANIFEST
from engine.images.snapshots import adopt, chain_ids

if TYPE_CHECKING:
    from engine.images.records import ImageRecord
    from engine.images.service import ContainerLayer, ImageService


def _base_config(svc: ImageService, parent_id: str, platform: str | None) -> dict[str, Any]:
    if parent_id:
        cfg = dict(svc.get(parent_id).config)
    else:
        p = platforms.parse(platform) if platform else platforms.host()
        cfg = {"architecture": p.architecture, "os": p.os}
        if p.variant:
            cfg["variant"] = p.variant
        cfg["rootfs"] = {"type": "layers", "diff_ids": []}
    for key in ("container", "container_config", "comment"):
        cfg.pop(key, None)
    return cfg


def _step_config(base: dict[str, Any], run_config: dict[str, Any], container_config: dict[str, Any],
                 created_by: str, author: str, empty: bool, container_id: str) -> dict[str, Any]:
    created = now_rfc3339()
    cfg = dict(base)
    cfg["created"] = created
    cfg["config"] = run_config
    cfg["container_config"] = container_config
    if container_id:
        cfg["container"] = container_id
    if author:
        cfg["author"] = author
    hist: dict[str, Any] = {"created": created, "created_by": created_by}
    if author:
        hist["author"] = author
    if empty:
        hist["empty_layer"] = True
    cfg["history"] = [*(base.get("history") or []), hist]
    return cfg


def commit_step(
    svc: ImageService,
    *,
    parent_id: str,
    run_config: dict[str, Any],
    container_config: dict[str, Any],
    created_by: str,
    layer: ContainerLayer | None = None,
    author: str = "",
    platform: str | None = None,
    container_id: str = "",
    adopt_upper: bool = False,
) -> ImageRecord:
    """A new image on top of `parent_id` ("" for scratch): with `layer`, its upper directory becomes a new layer;
    without, the step only changes the config. Blobs are written before the record, so a crash leaves at most
    unreferenced blobs (collected by the next gc), never a record without its content. `adopt_upper`: the
    layer is thrown away after this, so its upper directory becomes the new snapshot as it is (renamed) instead
    of being unpacked again from the blob just written."""
    base = _base_config(svc, parent_id, platform)
    parent = svc.get(parent_id) if parent_id else None
    if layer is None:
        cfg = _step_config(base, run_config, container_config, created_by, author, True, container_id)
        return _record_config_only(svc, parent, cfg)
    digest, diff_id = write_upper_layer(svc, layer)
    crashpoint("build.commit")
    rootfs = dict(base.get("rootfs") or {"type": "layers", "diff_ids": []})
    rootfs["diff_ids"] = [*rootfs.get("diff_ids", []), diff_id]
    base["rootfs"] = rootfs
    cfg = _step_config(base, run_config, container_config, created_by, author, False, container_id)
    if adopt_upper:
        chain = chain_ids(rootfs["diff_ids"])
        adopt(svc.snapshots, chain[-1], chain[-2] if len(chain) > 1 else None, layer.upper_dir, diff_id)
    return _record_new_image(svc, parent, cfg, digest, diff_id, [])


def _record_config_only(svc: ImageService, parent: ImageRecord | None, cfg: dict[str, Any]) -> ImageRecord:
    raw = json.dumps(cfg, separators=(",", ":")).encode()
    image_id = svc.content.put(raw)
    layers: builtins.list[dict[str, Any]] = []
    if parent is not None:
        layers = list(json.loads(svc.content.read(parent.manifest_digest)).get("layers") or [])
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_DOCKER_MANIFEST,
        "config": {"mediaType": MEDIA_DOCKER_CONFIG, "size": len(raw), "digest": image_id},
        "layers": layers,
    }
    manifest_digest = svc.content.put(json.dumps(manifest, separators=(",", ":")).encode())
    svc.meta.add_image(image_id, manifest_digest, parent=parent.id if parent is not None else "")
    return svc.get(image_id)


# ---- the classic builder's cache ---------------------------------------------------------------------------------

_LISTS = ("Env", "Cmd", "Entrypoint", "Shell", "OnBuild")
_SETS = ("ExposedPorts", "Volumes")
_FLAGS = ("AttachStdin", "AttachStdout", "AttachStderr", "NetworkDisabled", "Tty", "OpenStdin", "StdinOnce",
          "ArgsEscaped")


def same_probe(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Docker's image cache compare(): the fields of two run configs that decide a cache hit."""
    if a is None or b is None:
        return False
    for k in _LISTS:
        if list(a.get(k) or []) != list(b.get(k) or []):
            return False
    for k in _SETS:
        if set(a.get(k) or {}) != set(b.get(k) or {}):
            return False
    if dict(a.get("Labels") or {}) != dict(b.get("Labels") or {}):
        return False
    return all(bool(a.get(k)) == bool(b.get(k)) for k in _FLAGS)


def cached_child(svc: ImageService, parent_id: str, probe: dict[str, Any], platform: str | None = None) -> str:
    """The most recent image built here from `parent_id` with this probe config, or ""."""
    want = platforms.parse(platform) if platform else platforms.host()
    best: tuple[str, str] = ("", "")
    for child in svc.meta.children_of(parent_id):
        try:
            cfg = json.loads(svc.content.read(child))
        except (NotFound, OSError, ValueError):
            continue
        if "container_config" not in cfg:  # not built locally (Docker's IsBuiltLocally)
            continue
        if cfg.get("os") != want.os or cfg.get("architecture") != want.architecture:
            continue
        if same_probe(cfg.get("container_config"), probe) and str(cfg.get("created", "")) > best[1]:
            best = (child, str(cfg.get("created", "")))
    return best[0]


def history_hit(svc: ImageService, parent_id: str, probe: dict[str, Any], sources: builtins.list[str]) -> str:
    """`--cache-from`: a step of one of the `sources` images (pulled or loaded, so without parent links) whose
    history matches the build so far and whose next entry was made by this probe's command. The step is
    recreated as an image of its own on top of `parent_id` (Docker's restoreCachedImage), so its id is the same
    whenever the same source and parent meet."""
    parent = svc.get(parent_id) if parent_id else None
    parent_hist = list((parent.config.get("history") or []) if parent else [])
    parent_diffs = list(parent.diff_ids if parent else [])
    created_by = " ".join(probe.get("Cmd") or [])
    for src in sources:
        try:
            target = svc.get(src)
        except NotFound:
            continue
        hist = list(target.config.get("history") or [])
        diffs = target.diff_ids
        n = len(parent_hist)
        if len(hist) <= n or hist[:n] != parent_hist or diffs[: len(parent_diffs)] != parent_diffs:
            continue
        step = hist[n]
        if step.get("created_by", "") != created_by:
            continue
        layer_index = sum(1 for h in hist[:n] if not h.get("empty_layer"))
        cfg = _base_config(svc, parent_id, None) if parent_id else {
            "architecture": target.config.get("architecture"), "os": target.config.get("os"),
            "rootfs": {"type": "layers", "diff_ids": []}}
        cfg["created"] = step.get("created")
        cfg["config"] = probe
        cfg["history"] = [*parent_hist, step]
        if len(hist) == n + 1:
            return target.id  # the source's own top: use it as it is
        if step.get("empty_layer"):
            return _record_config_only(svc, parent, cfg).id
        diff_id = diffs[layer_index]
        layers = json.loads(svc.content.read(target.manifest_digest)).get("layers") or []
        cfg["rootfs"] = {"type": "layers", "diff_ids": [*parent_diffs, diff_id]}
        return _record_new_image(svc, parent, cfg, layers[layer_index]["digest"], diff_id, []).id
    return ""
