"""Checks of HostConfig.Binds (`-v`) modes and HostConfig.Mounts (`--mount`) bind options at create, with moby's
texts (volume/mounts/linux_parser.go), and the propagation a bind gets (Docker's default: rprivate)."""

from __future__ import annotations

from typing import Any

from engine.errors import InvalidArgument

PROPAGATIONS = ("private", "rprivate", "slave", "rslave", "shared", "rshared")
DEFAULT_PROPAGATION = "rprivate"
# the option kinds of a -v mode; each may appear once
_MODE_KINDS = {
    "rw": "rw", "ro": "rw", "z": "label", "Z": "label", "nocopy": "copy",
    "consistent": "consistency", "cached": "consistency", "delegated": "consistency",
    **{p: "propagation" for p in PROPAGATIONS},
}  # fmt: skip


def valid_mode(mode: str) -> bool:
    """moby's linuxValidMountMode."""
    if mode == "":
        return True
    seen: set[str] = set()
    for opt in mode.split(","):
        kind = _MODE_KINDS.get(opt)
        if kind is None or kind in seen:
            return False
        seen.add(kind)
    return True


def bind_propagation(mode: str) -> str:
    """The propagation a `-v` mode asks for, else the default."""
    return next((o for o in mode.split(",") if o in PROPAGATIONS), DEFAULT_PROPAGATION)


def is_local(path: str) -> bool:
    """Go's filepath.IsLocal: relative, not empty, and no `..` climbs out once cleaned."""
    if not path or path.startswith("/"):
        return False
    depth = 0
    for part in path.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return False
        elif part not in ("", "."):
            depth += 1
    return True


def check_mount_specs(hc: dict[str, Any]) -> None:
    """InvalidArgument (400) with dockerd's text for a malformed `-v` mode or --mount bind option."""
    for bind in hc.get("Binds") or []:
        parts = bind.split(":")
        if len(parts) < 2 or len(parts) > 3 or not parts[0] or not parts[1].startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{bind}'")
        mode = parts[2] if len(parts) == 3 else ""
        if not valid_mode(mode):
            raise InvalidArgument(f"invalid mode: {mode}")
        if not parts[0].startswith("/") and any(o in PROPAGATIONS for o in mode.split(",")):
            # a named volume takes no propagation: the parser's BindOptions on a volume mount
            raise InvalidArgument(f"invalid volume specification: '{bind}': invalid mount config for type "
                                  '"volume": field BindOptions must not be specified')
    for m in hc.get("Mounts") or []:
        kind = m.get("Type", "volume")
        subpath = (m.get("VolumeOptions") or {}).get("Subpath") or ""
        if kind == "volume" and subpath:
            if not m.get("Source"):
                raise InvalidArgument('invalid mount config for type "volume": must not set Subpath when using '
                                      "anonymous volumes")
            if not is_local(subpath):
                raise InvalidArgument('invalid mount config for type "volume": subpath must be a relative path '
                                      "within the volume")
        opts = m.get("BindOptions")
        if opts is None:
            continue
        if kind != "bind":
            raise InvalidArgument(f'invalid mount config for type "{kind}": field BindOptions must not be specified')
        prop = opts.get("Propagation") or ""
        if prop and prop not in PROPAGATIONS:
            raise InvalidArgument(f'invalid mount config for type "bind": invalid propagation mode: {prop}')
