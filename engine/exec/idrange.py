"""The range every uid and gid a container gets must lie in, checked where ids enter and again right before
setres[ug]id. Imports nothing, so the supervisor and the container's init stay small.

The kernel takes uid_t/gid_t as 32-bit unsigned values and reads (uid_t)-1 = 4294967295 as "leave unchanged": a
process told to become 4294967295 (or an id that wraps to it, or to 0) would stay root. runc's bound, 2^31-1, is
the one every kernel interface also takes as a positive int."""

from __future__ import annotations

MIN_ID = 0
MAX_ID = 2**31 - 1
RANGE_ERROR = f"uids and gids must be in range {MIN_ID}-{MAX_ID}"


def in_range(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and MIN_ID <= v <= MAX_ID


def process_ids(user: dict[str, object]) -> tuple[int, int, list[int]]:
    """(uid, gid, additional gids) of an OCI `process.user`; ValueError(RANGE_ERROR) for any id out of range or
    not an integer. The spec may come from anywhere (a bundle, an exec request)."""
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    extra = user.get("additionalGids") or []
    if not (in_range(uid) and in_range(gid) and isinstance(extra, list) and all(in_range(g) for g in extra)):
        raise ValueError(RANGE_ERROR)
    return uid, gid, list(extra)  # type: ignore[return-value]
