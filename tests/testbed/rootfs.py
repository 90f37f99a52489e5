"""Root filesystems of the test images, from Debian's .debs: busybox-static, and nginx with its libraries."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from tests.testbed import debs

BUSYBOX_DEBS = ["busybox-static"]
NGINX_DEBS = ["nginx", "nginx-common", "libc6", "libcrypt1", "libpcre2-8-0", "libssl3", "zlib1g"]

PASSWD = """root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = """root:x:0:
user:x:1000:
nogroup:x:65534:
"""
NGINX_CONF = """user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log /dev/stderr notice;
events { worker_connections 512; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    server {
        listen 80 default_server;
        root /usr/share/nginx/html;
        index index.html;
    }
}
"""


def build_busybox(dest: Path, deb_cache: Path) -> None:
    """busybox-static with every applet linked, a root and a non-root user, and the usual empty dirs."""
    staging = dest.parent / (dest.name + ".deb")
    debs.extract(debs.download(BUSYBOX_DEBS, deb_cache)["busybox-static"], staging)
    for d in ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "var/log", "home/user"]:
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(staging / "bin" / "busybox", dest / "bin" / "busybox")
    applets = subprocess.run(
        [str(dest / "bin" / "busybox"), "--list-full"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.split()
    for rel in applets:
        link = dest / rel
        if rel == "bin/busybox" or link.exists():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(dest / "bin" / "busybox", link.parent))
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    tmp = dest / "tmp"
    tmp.mkdir(exist_ok=True)
    tmp.chmod(0o1777)
    root_home = dest / "root"
    root_home.mkdir(exist_ok=True)
    root_home.chmod(0o700)
    os.chown(dest / "home" / "user", 1000, 1000)
    shutil.rmtree(staging)


def _needed_sonames(binary: Path) -> list[str]:
    """Shared objects the binary needs, by name, as ldd lists them (the host resolves the closure)."""
    out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=True, timeout=30).stdout
    names = []
    for line in out.splitlines():
        m = re.match(r"\s*(\S+)\s+=>", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if m and "linux-vdso" not in m.group(1):
            names.append(os.path.basename(m.group(1)))
    return names


def build_nginx(dest: Path, busybox: Path, deb_cache: Path) -> None:
    """busybox plus Debian's nginx binary, its config, welcome page and the libraries it loads, from .debs."""
    shutil.copytree(busybox, dest, symlinks=True)
    staging = dest.parent / (dest.name + ".debs")
    for pkg, deb in debs.download(NGINX_DEBS, deb_cache).items():
        debs.extract(deb, staging / pkg)
    shutil.copytree(staging / "nginx" / "usr", dest / "usr", symlinks=True, dirs_exist_ok=True)
    common = staging / "nginx-common"
    (dest / "etc" / "nginx").mkdir(parents=True)
    for name in ["mime.types"]:
        shutil.copy2(common / "etc" / "nginx" / name, dest / "etc" / "nginx" / name)
    html = dest / "usr" / "share" / "nginx" / "html"
    html.mkdir(parents=True, exist_ok=True)
    shutil.copy2(common / "usr" / "share" / "nginx" / "html" / "index.html", html / "index.html")
    (dest / "etc" / "nginx" / "nginx.conf").write_text(NGINX_CONF)
    with (dest / "etc" / "passwd").open("a") as f:
        f.write("www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin\n")
    with (dest / "etc" / "group").open("a") as f:
        f.write("www-data:x:33:\n")
    for d in ["var/lib/nginx", "var/log/nginx", "var/www", "run"]:
        (dest / d).mkdir(parents=True, exist_ok=True)

    # The libraries: every soname nginx needs, taken from the extracted .debs at each path the deb gives it
    # (the loader, for one, is a file in the multiarch dir and a symlink in /lib64).
    binary = dest / "usr" / "sbin" / "nginx"
    libs: dict[str, list[tuple[Path, Path]]] = {}
    for pkg in NGINX_DEBS[2:]:
        for path in sorted((staging / pkg).rglob("*.so*")):
            libs.setdefault(path.name, []).append((path, path.relative_to(staging / pkg)))
    for soname in _needed_sonames(binary):
        if soname not in libs:
            raise RuntimeError(f"nginx needs {soname}, which none of {NGINX_DEBS[2:]} provides")
        for src, rel in libs[soname]:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists() or target.is_symlink():
                continue
            if src.is_symlink():
                link = os.readlink(src)
                target.symlink_to(link)
                # Copy what the link names too: libz.so.1 -> libz.so.1.2.13 in the same package.
                real_rel = Path(link.lstrip("/")) if os.path.isabs(link) else rel.parent / link
                real_src = src.parents[len(rel.parts) - 1] / real_rel
                real_dest = dest / real_rel
                if not real_dest.exists() and real_src.is_file():
                    real_dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(real_src, real_dest)
            else:
                shutil.copy2(src, target)
    loader = dest / "lib64" / "ld-linux-x86-64.so.2"
    if os.uname().machine == "x86_64" and not loader.exists():
        raise RuntimeError("nginx rootfs lacks /lib64/ld-linux-x86-64.so.2")
    shutil.rmtree(staging)
