"""The in-place context index agrees with an unpacked context: the same paths survive .dockerignore, symlinks
resolve inside the context, and cache keys change with contents and modes but not with mtimes."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from engine.build import ignore
from engine.build.tarindex import TarIndex, is_plain_tar

TREE = {
    "Dockerfile": "FROM x\n", ".dockerignore": "", "README.md": "r", "CHANGES.md": "c", "docs/a.md": "a",
    "docs/README.md": "d", "docs/deep/x.txt": "x", "src/main.go": "m", "src/vendor/lib.go": "l",
    "src/tmp/t.tmp": "t", "build/out.bin": "o", "keep/.hidden": "h",
}
PATTERNS = [
    [], ["*.md"], ["*.md", "!README.md"], ["docs", "!docs/README.md"], ["**/*.go", "!src/main.go"],
    ["src/*", "!src/vendor"], ["build/", "Dockerfile", ".dockerignore"], ["docs", "!**/README.md"],
    ["**", "!src/**"], ["keep/.*"],
]


def _tree(root: Path) -> None:
    for name, data in TREE.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(data)
    os.symlink("../src/main.go", root / "docs" / "link.go")


def _tar(root: Path) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for p in sorted(root.rglob("*")):
            t.add(p, arcname=str(p.relative_to(root)), recursive=False)
    buf.seek(0)
    return buf


def _paths(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("patterns", PATTERNS, ids=[" ".join(p) or "none" for p in PATTERNS])
def test_ignore_on_the_index_matches_the_unpacked_tree(tmp_path: Path, patterns: list[str]) -> None:
    src = tmp_path / "src"
    _tree(src)
    buf = _tar(src)
    assert is_plain_tar(buf)
    idx = TarIndex(buf)
    idx.apply_ignore(patterns)
    if patterns:
        ignore.apply(src, patterns)
    assert set(idx.entries) == _paths(src)


def test_symlinks_resolve_inside_the_context(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    os.symlink("/../../../etc/passwd", src / "escape")
    idx = TarIndex(_tar(src))
    assert idx.resolve("docs/link.go") == "src/main.go"
    assert idx.read("docs/link.go") == b"m"
    assert idx.resolve("escape") is None  # /etc/passwd inside the context: not there
    assert idx.read("escape") is None


def test_cache_keys_follow_contents_and_modes_not_mtimes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _tree(src)
    first = TarIndex(_tar(src)).source_hash("src")
    os.utime(src / "src" / "main.go", (1, 1))
    assert TarIndex(_tar(src)).source_hash("src") == first
    (src / "src" / "main.go").write_text("M")
    changed = TarIndex(_tar(src)).source_hash("src")
    assert changed != first and changed is not None and changed[1] is True
    os.chmod(src / "src" / "main.go", 0o755)
    assert TarIndex(_tar(src)).source_hash("src") != changed
    f = TarIndex(_tar(src)).source_hash("README.md")
    assert f is not None and f[0].startswith("file:") and f[1] is False
    assert TarIndex(_tar(src)).source_hash("nope") is None
