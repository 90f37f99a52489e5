"""USER resolution: Docker's (runc's) rules, and no id that could leave a container's process as root.

The kernel reads uid 4294967295 ((uid_t)-1) as "leave unchanged", so a process told to become it stays root;
these tests walk the whole boundary, for ids typed by the user and ids read from hostile passwd/group files."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.exec import idrange
from engine.exec.users import go_atoi, resolve_user

RANGE = "uids and gids must be in range 0-2147483647"


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
        "user1:x:1001:1001::/home/user1:/bin/sh\n"
        "1234:x:4321:4321:a name made of digits:/home/digits:/bin/sh\n"
        "big:x:2147483647:2147483647::/:/bin/sh\n"
        "wrap:x:4294967295:100::/:/bin/sh\n"
        "wrapgid:x:1002:4294967296::/:/bin/sh\n"
        "junk:x:12abc:100::/:/bin/sh\n"
        "spaced:x: 7:100::/:/bin/sh\n"
        "sup:x:1003:1003::/:/bin/sh\n"
    )
    (etc / "group").write_text(
        "root:x:0:\n"
        "users:x:100:user1\n"
        "nogroup:x:65534:\n"
        "user1:x:1001:\n"
        "staff:x:50:user1,nobody\n"
        "hostile:x:4294967295:\n"
        "evil:x:-1:user1x\n"
        "member:x:4294967294:sup\n"
    )
    return tmp_path


@pytest.mark.parametrize("spec,uid,gid", [
    ("0", 0, 0),
    ("", 0, 0),
    ("65534", 65534, 65534),
    ("2147483647", 2147483647, 2147483647),  # the passwd line "big"
    ("2147483646", 2147483646, 0),  # numeric, no passwd line: gid 0, as on Docker
    ("1000:4294967294", None, None),
    ("user1", 1001, 1001),
    ("user1:users", 1001, 100),
    ("1234", 1234, 0),  # numeric: looked up as a uid, not as the user named "1234"
    ("+5", 5, 0),  # Go's Atoi takes a sign
    ("1000:2147483647", 1000, 2147483647),
])
def test_valid_users(rootfs: Path, spec: str, uid: int | None, gid: int | None) -> None:
    if uid is None:
        with pytest.raises(InvalidArgument, match=RANGE):
            resolve_user(rootfs, spec)
        return
    u = resolve_user(rootfs, spec)
    assert (u.uid, u.gid) == (uid, gid)


@pytest.mark.parametrize("spec", [
    "2147483648", "4294967295", "4294967296", "-1", "-0x1", "1000:4294967295", "1000:-1", "1000:2147483648",
    "1000:4294967296", "9223372036854775807", "0:4294967295",
])
def test_out_of_range_ids_are_refused(rootfs: Path, spec: str) -> None:
    name, _, group = spec.partition(":")
    if go_atoi(name) is None or (group and go_atoi(group) is None):
        # not a number in Go's sense: looked up as a name, and not found
        with pytest.raises(InvalidArgument, match=r"unable to find (user|group)"):
            resolve_user(rootfs, spec)
    else:
        with pytest.raises(InvalidArgument, match=RANGE):
            resolve_user(rootfs, spec)


@pytest.mark.parametrize("spec,message", [
    ("99999999999999999999", "unable to find user 99999999999999999999: no matching entries in passwd file"),
    ("1000:99999999999999999999", "unable to find group 99999999999999999999: no matching entries in group file"),
    ("nosuch", "unable to find user nosuch: no matching entries in passwd file"),
    ("user2", "unable to find user user2: no matching entries in passwd file"),
    ("user1:nosuch", "unable to find group nosuch: no matching entries in group file"),
    ("1 000", "unable to find user 1 000: no matching entries in passwd file"),
    ("1_000", "unable to find user 1_000: no matching entries in passwd file"),
    ("\u0661\u0662", "unable to find user \u0661\u0662: no matching entries in passwd file"),
])
def test_non_numbers_are_names(rootfs: Path, spec: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        resolve_user(rootfs, spec)


@pytest.mark.parametrize("spec", ["wrap", "wrapgid", "junk", "spaced:hostile", "1001:hostile", "sup"])
def test_hostile_passwd_and_group_lines_are_refused(rootfs: Path, spec: str) -> None:
    # "sup" is a member of "member", whose gid 4294967294 is out of range: the supplementary group is refused too
    with pytest.raises(InvalidArgument, match=RANGE):
        resolve_user(rootfs, spec)


def test_malformed_id_fields_never_match_a_number(rootfs: Path) -> None:
    # runc reads "12abc" as 0; a numeric lookup of 0 must find root's own line, not "junk"
    u = resolve_user(rootfs, "0")
    assert (u.uid, u.gid, u.home) == (0, 0, "/root")
    u = resolve_user(rootfs, "7")  # " 7" is not 7
    assert (u.uid, u.gid, u.home) == (7, 0, "/")


def test_supplementary_groups_and_group_add(rootfs: Path) -> None:
    u = resolve_user(rootfs, "user1")
    assert u.additional_gids == [100, 50]
    u = resolve_user(rootfs, "nobody", ["users", "77"])
    assert u.additional_gids == [50, 100, 77]
    with pytest.raises(InvalidArgument, match=RANGE):
        resolve_user(rootfs, "nobody", ["4294967295"])
    with pytest.raises(InvalidArgument, match=RANGE):
        resolve_user(rootfs, "nobody", ["hostile"])
    with pytest.raises(InvalidArgument, match="Unable to find group nosuch"):
        resolve_user(rootfs, "nobody", ["nosuch"])


@pytest.mark.parametrize("user", [
    {"uid": 4294967295}, {"uid": -1}, {"gid": 2**31}, {"uid": True}, {"uid": "0"}, {"additionalGids": [2**32 - 1]},
    {"additionalGids": "0"}, {"uid": 1.0},
])
def test_the_runtime_refuses_out_of_range_process_users(user: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=RANGE):
        idrange.process_ids(user)


def test_the_runtime_takes_the_boundary() -> None:
    assert idrange.process_ids({}) == (0, 0, [])
    assert idrange.process_ids({"uid": 2**31 - 1, "gid": 0, "additionalGids": [65534]}) == (2**31 - 1, 0, [65534])
