"""Docker's `User` (`name`, `uid`, `name:group`, `uid:gid`) resolved from the container's own /etc/passwd and
/etc/group, read without leaving the root filesystem; never the host's NSS.

The rules are runc's (moby/sys/user `GetExecUser`), with one deliberate tightening: every id that comes out -
typed by the user, or read from the image's passwd/group files - must lie in 0..2^31-1 (see idrange.py: an
id of 4294967295 would leave the process as root). runc reads a malformed id field of those files as 0;
here such a line never matches a number and is refused when matched by name. An out-of-range value is
refused with runc's message before anything starts (engine/exec/idrange.py checks again before setresuid).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import InvalidArgument
from engine.exec.idrange import RANGE_ERROR, in_range

_INT64 = 2**63


@dataclass
class User:
    uid: int
    gid: int
    home: str = "/"
    additional_gids: list[int] = field(default_factory=list)


def go_atoi(s: str) -> int | None:
    """Go's strconv.Atoi: an optional sign and ASCII digits that fit an int64, else None ("not numeric").

    Python's int() also takes spaces, underscores and non-ASCII digits ('١٢'), which runc would treat as a name."""
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not body.isascii() or not body.isdigit():
        return None
    v = int(s)
    if not -_INT64 <= v < _INT64:
        return None
    return v


def check_id(v: int) -> int:
    if not in_range(v):
        raise InvalidArgument(RANGE_ERROR)
    return v


def _file_id(field_: str) -> int | None:
    """An id field of a passwd/group line. A malformed one makes the line unusable (runc would read it as 0:
    root), so it never matches a numeric lookup and is refused when matched by name."""
    return go_atoi(field_)


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


def _entry_id(value: str) -> int:
    v = _file_id(value)
    if v is None:
        raise InvalidArgument(RANGE_ERROR)
    return check_id(v)


def _find(entries: list[list[str]], key: str, key_id: int | None, width: int) -> list[str] | None:
    """The first line whose name is `key` (a non-numeric key) or whose id is `key_id`: runc's first match wins."""
    for e in entries:
        if len(e) >= width and (e[0] == key if key_id is None else _file_id(e[2]) == key_id):
            return e
    return None


def resolve_user(rootfs: Path, spec: str, group_add: list[str] | None = None) -> User:
    name, _, group = spec.partition(":")
    passwd = _read_in_root(rootfs, "/etc/passwd")
    groups = _read_in_root(rootfs, "/etc/group")
    if name == "":
        name = "0"  # root, with its home from passwd (HOME=/root)
    uid_arg, gid_arg = go_atoi(name), go_atoi(group)

    user = User(0, 0, "/")
    user_name = ""
    entry = _find(passwd, name, uid_arg, 6)
    if entry is not None:
        user_name = entry[0]
        user = User(_entry_id(entry[2]), _entry_id(entry[3]), entry[5] or "/")
    elif uid_arg is None:
        raise InvalidArgument(f"unable to find user {name}: no matching entries in passwd file")
    else:
        user.uid = check_id(uid_arg)  # a numeric user without a passwd line keeps gid 0, as on Docker

    if group:
        gent = _find(groups, group, gid_arg, 3)
        if gent is not None:
            user.gid = _entry_id(gent[2])
        elif gid_arg is None:
            raise InvalidArgument(f"unable to find group {group}: no matching entries in group file")
        else:
            user.gid = check_id(gid_arg)
    elif user_name:
        # supplementary groups: those that list the user as a member
        for g in groups:
            if len(g) >= 4 and user_name in g[3].split(","):
                gid = _entry_id(g[2])
                if gid != user.gid and gid not in user.additional_gids:
                    user.additional_gids.append(gid)
    for extra in group_add or []:
        extra_id = go_atoi(extra)
        gent = _find(groups, extra, None, 3) or (_find(groups, extra, extra_id, 3) if extra_id is not None else None)
        if gent is not None:
            user.additional_gids.append(_entry_id(gent[2]))
        elif extra_id is not None:
            user.additional_gids.append(check_id(extra_id))
        else:
            raise InvalidArgument(f"Unable to find group {extra}: no matching entries in group file")
    return user
