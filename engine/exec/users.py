"""Docker's `User` (`name`, `uid`, `name:group`, `uid:gid`) resolved from the container's own /etc/passwd and
/etc/group, read without leaving the root filesystem; never the host's NSS."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidArgument


@dataclass
class User:
    uid: int
    gid: int
    home: str = "/"
    additional_gids: list[int] = field(default_factory=list)


def _read_in_root(rootfs: Path, path: str) -> list[list[str]]:
    from engine.exec.linux import open_in_root

    try:
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        fd = open_in_root(root_fd, path, os.O_RDONLY)
    except OSError:
        return []
    finally:
        os.close(root_fd)
    with os.fdopen(fd, "r", errors="replace") as f:
        lines = f.read().splitlines()
    return [line.split(":") for line in lines if line and not line.startswith("#")]


def resolve_user(rootfs: Path, spec: str, group_add: list[str] | None = None) -> User:
    name, _, group = spec.partition(":")
    passwd = _read_in_root(rootfs, "/etc/passwd")
    groups = _read_in_root(rootfs, "/etc/group")
    user = User(0, 0, "/root")
    user_name: str | None = None
    if name == "":
        name = "0"
    entry = next((p for p in passwd if len(p) >= 6 and (p[0] == name or (name.isdigit() and p[2] == name))), None)
    if entry is not None:
        user_name = entry[0]
        user = User(int(entry[2]), int(entry[3]), entry[5] or "/")
    elif name.isdigit():
        user = User(int(name), 0, "/")
    else:
        raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        gent = next((g for g in groups if len(g) >= 3 and (g[0] == group or (group.isdigit() and g[2] == group))), None)
        if gent is not None:
            user.gid = int(gent[2])
        elif group.isdigit():
            user.gid = int(group)
        else:
            raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
    elif user_name is not None:
        # supplementary groups: those that list the user as a member
        for g in groups:
            if len(g) >= 4 and user_name in g[3].split(",") and int(g[2]) != user.gid:
                user.additional_gids.append(int(g[2]))
    for extra in group_add or []:
        gent = next((g for g in groups if len(g) >= 3 and (g[0] == extra or g[2] == extra)), None)
        if gent is not None:
            user.additional_gids.append(int(gent[2]))
        elif extra.isdigit():
            user.additional_gids.append(int(extra))
        else:
            raise InvalidArgument(f"Unable to find group {extra}: no matching entries in group file")
    return user
