"""The engine must import, module by module, on a machine where textual is not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# A meta-path finder that refuses textual, as if it were not installed, then every engine module imported.
_PROBE = r"""
import importlib, pkgutil, sys

class NoTextual:
    def find_spec(self, name, path=None, target=None):
        if name == "textual" or name.startswith("textual."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoTextual())
import engine
count = 0
for mod in pkgutil.walk_packages(engine.__path__, "engine."):
    if mod.name.endswith("__main__"):
        continue
    importlib.import_module(mod.name)
    count += 1
assert "textual" not in sys.modules
print(count)
"""


def test_engine_imports_without_textual() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 4  # at least the four sub-packages


def test_the_probe_does_block_textual() -> None:
    # Guard against a probe that blocks nothing: importing textual under it must fail.
    code = _PROBE.split("import engine")[0] + "import textual\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "No module named 'textual'" in out.stderr


def _imports(path: Path) -> set[str]:
    import ast

    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def test_nothing_below_the_builder_imports_it() -> None:
    # engine/build stands on the image store and the container manager; only the API and the wiring (parts)
    # reach it, so the parts below can be built and tested without it
    allowed = {"engine/api", "engine/build", "engine/parts.py"}
    offenders = []
    for py in sorted((ROOT / "engine").rglob("*.py")):
        rel = py.relative_to(ROOT).as_posix()
        if any(rel == a or rel.startswith(a + "/") for a in allowed):
            continue
        if any(m == "engine.build" or m.startswith("engine.build.") for m in _imports(py)):
            offenders.append(rel)
    assert offenders == []
    for py in sorted((ROOT / "engine" / "build").rglob("*.py")):
        assert not any(m.startswith("engine.api") for m in _imports(py)), py
