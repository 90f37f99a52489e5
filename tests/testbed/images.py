"""The test images, built once into a cache keyed by a hash of their inputs.

The key covers this package's source and the Debian versions of the packages used, so a change to either
rebuilds; otherwise every test session (and every clean clone on the same machine) reuses the cache.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.testbed import debs, rootfs
from tests.testbed.oci import Entry, Layout, tar_directory, tar_entries

HERE = Path(__file__).resolve().parent
IMAGES = ("busybox", "nginx", "layers", "multi", "zstd")


def cache_root() -> Path:
    env = os.environ.get("PORTSIDE_TESTBED_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "portside" / "testbed"


# The modules that decide what the images hold: a change elsewhere in the test bed (the registry, dockerd or CLI
# helpers) keeps the cache, so sessions of trees that differ only there do not rebuild it under each other.
_IMAGE_INPUTS = ("images.py", "rootfs.py", "debs.py", "oci.py")


def inputs_key() -> str:
    h = hashlib.sha256()
    for src in sorted(HERE / n for n in _IMAGE_INPUTS):
        h.update(src.name.encode())
        h.update(src.read_bytes())
    for pkg in sorted(set(rootfs.BUSYBOX_DEBS + rootfs.NGINX_DEBS)):
        h.update(f"{pkg}={debs.candidate_version(pkg)}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BuiltImages:
    root: Path

    @property
    def busybox_rootfs(self) -> Path:
        return self.root / "rootfs" / "busybox"

    @property
    def nginx_rootfs(self) -> Path:
        return self.root / "rootfs" / "nginx"

    @property
    def layouts(self) -> dict[str, Path]:
        return {name: self.root / "layouts" / name for name in IMAGES}


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Several test sessions may start at once on one machine; one builds, the others wait and reuse.
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_built() -> BuiltImages:
    cache = cache_root()
    final = cache / f"images-{inputs_key()}"
    with _locked(cache / ".lock"):
        if not (final / "complete").exists():
            work = cache / f".build-{os.getpid()}"
            shutil.rmtree(work, ignore_errors=True)
            try:
                _build(work, cache / "debs")
                (work / "complete").write_text("ok\n")
                shutil.rmtree(final, ignore_errors=True)
                work.rename(final)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for old in cache.glob("images-*"):
                if old != final:
                    shutil.rmtree(old, ignore_errors=True)
    return BuiltImages(final)


BUSYBOX_CONFIG = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Cmd": ["sh"],
}
NGINX_CONFIG = {
    "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
    "Cmd": ["nginx", "-g", "daemon off;"],
    "ExposedPorts": {"80/tcp": {}},
    "StopSignal": "SIGQUIT",
}


def layered_entries() -> tuple[list[Entry], list[Entry]]:
    """Two layers over busybox that delete, hide and replace: whiteouts, an opaque dir, type changes.

    After both: /data/keep stays; /data/gone is deleted (whiteout); /opaque holds only `new` (opaque dir);
    /filedir turns from a file into a directory; /dirlink turns from a directory into a symlink to /data.
    """
    first = [
        Entry("data", "dir"),
        Entry("data/keep", data=b"keep\n"),
        Entry("data/gone", data=b"gone\n"),
        Entry("data/gonedir", "dir"),
        Entry("data/gonedir/inner", data=b"inner\n"),
        Entry("opaque", "dir"),
        Entry("opaque/old1", data=b"old1\n"),
        Entry("opaque/old2", data=b"old2\n"),
        Entry("filedir", data=b"i am a file\n"),
        Entry("dirlink", "dir"),
        Entry("dirlink/child", data=b"child\n"),
        Entry("data/hard", "hardlink", target="data/keep"),
    ]
    second = [
        Entry("data", "dir"),
        Entry("data/.wh.gone"),
        Entry("data/.wh.gonedir"),
        Entry("opaque", "dir"),
        Entry("opaque/.wh..wh..opq"),
        Entry("opaque/new", data=b"new\n"),
        Entry("filedir", "dir"),
        Entry("filedir/now-a-dir", data=b"dir now\n"),
        Entry("dirlink", "symlink", target="data"),
        Entry("added", data=b"added in layer 3\n", mode=0o755),
    ]
    return first, second


def _build(work: Path, deb_cache: Path) -> None:
    busybox = work / "rootfs" / "busybox"
    nginx = work / "rootfs" / "nginx"
    rootfs.build_busybox(busybox, deb_cache)
    rootfs.build_nginx(nginx, busybox, deb_cache)
    busybox_tar = tar_directory(busybox)
    # nginx as two layers: busybox, then what nginx adds, as an image built FROM busybox would be.
    nginx_only = work / "nginx-diff"
    shutil.copytree(nginx, nginx_only, symlinks=True)
    for path in sorted(busybox.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        twin = nginx_only / path.relative_to(busybox)
        same = (twin.is_file() or twin.is_symlink()) and not path.is_dir()
        if same and (path.is_symlink() or twin.read_bytes() == path.read_bytes()):
            twin.unlink()
    # etc/passwd and etc/group differ (www-data) and stay in the nginx layer.
    for dirpath, _dirnames, _files in sorted(os.walk(nginx_only), key=lambda t: len(t[0]), reverse=True):
        d = Path(dirpath)
        if d != nginx_only and not any(d.iterdir()) and (busybox / d.relative_to(nginx_only)).is_dir():
            d.rmdir()
    nginx_tar = tar_directory(nginx_only)
    shutil.rmtree(nginx_only)

    layouts = work / "layouts"
    bb = Layout(layouts / "busybox")
    bb.tag(bb.image([busybox_tar], config=BUSYBOX_CONFIG, history=["busybox-static"]), "latest")

    ng = Layout(layouts / "nginx")
    ng.tag(ng.image([busybox_tar, nginx_tar], config=NGINX_CONFIG, history=["busybox-static", "nginx"]), "latest")

    first, second = layered_entries()
    ly = Layout(layouts / "layers")
    ly.tag(
        ly.image(
            [busybox_tar, tar_entries(first), tar_entries(second)],
            config=BUSYBOX_CONFIG,
            history=["busybox-static", "add data", "delete and replace"],
        ),
        "latest",
    )

    mu = Layout(layouts / "multi")
    amd = mu.image(
        [busybox_tar, tar_entries([Entry("etc/platform", data=b"linux/amd64\n")])],
        config=BUSYBOX_CONFIG,
        architecture="amd64",
    )
    arm = mu.image(
        [busybox_tar, tar_entries([Entry("etc/platform", data=b"linux/arm64\n")])],
        config=BUSYBOX_CONFIG,
        architecture="arm64",
    )
    arm["platform"]["variant"] = "v8"
    mu.tag(mu.index([amd, arm]), "latest")

    zs = Layout(layouts / "zstd")
    zs.tag(
        zs.image(
            [busybox_tar, tar_entries([Entry("etc/compression", data=b"zstd\n")])],
            config=BUSYBOX_CONFIG,
            compression=["zstd", "zstd"],
        ),
        "latest",
    )
