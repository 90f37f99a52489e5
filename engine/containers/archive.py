"""`docker cp` and `docker export`: tar streams in and out of a container's filesystem.

The tar work runs in a short-lived Python child that chroots into the container's root first (the running
container's `/proc/<pid>/root`, which also shows its volumes, or the mounted layer of a stopped one), so no
symlink inside the container can lead a path out of it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

from engine.errors import EngineError, InvalidArgument, NotFound

# Every module the child needs is imported before the chroot: nothing can be imported after it.
_STAT = r"""
import datetime, json, os, stat, sys
root, path = sys.argv[1], sys.argv[2]
os.chroot(root); os.chdir("/")
try:
    st = os.lstat(path)
except FileNotFoundError:
    print(json.dumps({"missing": True})); sys.exit(0)
m = st.st_mode
mode = stat.S_IMODE(m) & 0o777
if stat.S_ISDIR(m): mode |= 1 << 31
if stat.S_ISLNK(m): mode |= 1 << 27
if stat.S_ISFIFO(m): mode |= 1 << 25
if stat.S_ISSOCK(m): mode |= 1 << 24
if m & stat.S_ISUID: mode |= 1 << 23
if m & stat.S_ISGID: mode |= 1 << 22
if stat.S_ISCHR(m): mode |= (1 << 26) | (1 << 21)
if stat.S_ISBLK(m): mode |= 1 << 26
if m & stat.S_ISVTX: mode |= 1 << 20
mt = datetime.datetime.fromtimestamp(st.st_mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
name = os.path.basename(path.rstrip("/")) or "/"
link = os.readlink(path) if stat.S_ISLNK(m) else ""
print(json.dumps({"name": name, "size": st.st_size, "mode": mode, "mtime": mt, "linkTarget": link}))
"""

_GET = r"""
import os, sys, tarfile
root, path = sys.argv[1], sys.argv[2]
os.chroot(root); os.chdir("/")
contents = path.endswith("/.")
path = os.path.normpath(path)
arc = "." if contents else (os.path.basename(path) or ".")
with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
    if contents:
        for entry in sorted(os.listdir(path)):
            tar.add(os.path.join(path, entry), arcname=entry)
    else:
        tar.add(path, arcname=arc)
"""

_PUT = r"""
import os, stat, sys, tarfile
root, path, no_overwrite = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
os.chroot(root); os.chdir("/")
try:
    st = os.stat(path)
except FileNotFoundError:
    sys.stderr.write("missing"); sys.exit(3)
if not stat.S_ISDIR(st.st_mode):
    sys.stderr.write("notdir"); sys.exit(4)
with tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") as tar:
    for member in tar:
        dest = os.path.join(path, member.name)
        if no_overwrite and os.path.lexists(dest):
            is_dir = os.path.isdir(dest) and not os.path.islink(dest)
            if is_dir != member.isdir():
                sys.stderr.write("overwrite:" + member.name); sys.exit(5)
        # Inside the chroot nothing can lead out: extract as the archive says, owners included.
        tar.extract(member, path, numeric_owner=True, filter="fully_trusted")
"""


async def _run(script: str, *args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", script, *args, stdin=asyncio.subprocess.PIPE if stdin is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin)
    return proc.returncode or 0, out, err


async def stat_path(root: str, path: str, cname: str) -> dict[str, Any]:
    if not path.startswith("/"):
        path = "/" + path
    code, out, err = await _run(_STAT, root, path)
    if code != 0:
        raise EngineError(f"stat {path}: {err.decode(errors='replace').strip()}")
    st = json.loads(out)
    if st.get("missing"):
        raise NotFound(f"Could not find the file {path} in container {cname}")
    return st


def stat_header(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


async def get_tar(root: str, path: str) -> AsyncIterator[bytes]:
    if not path.startswith("/"):
        path = "/" + path
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-I", "-c", _GET, root, path, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    try:
        while chunk := await proc.stdout.read(65536):
            yield chunk
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def put_tar(root: str, path: str, data: bytes, no_overwrite: bool, cname: str) -> None:
    if not path.startswith("/"):
        path = "/" + path
    code, _, err = await _run(_PUT, root, path, "1" if no_overwrite else "0", stdin=data)
    msg = err.decode(errors="replace").strip()
    if code == 3:
        raise NotFound(f"Could not find the file {path} in container {cname}")
    if code == 4:
        raise InvalidArgument(f"extraction point is not a directory: {path}")
    if code == 5:
        raise InvalidArgument(f"cannot overwrite non-directory with directory ({msg.split(':', 1)[-1]})")
    if code != 0:
        raise EngineError(f"extracting into {path}: {msg.splitlines()[-1] if msg else code}")
