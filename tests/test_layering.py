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


# The engine's layers, top to bottom; a module may import its own area and any area in a lower layer.
# daemon.py (with parts.py, the start-up recovery and the login helper) is the composition root: it may import
# everything and is imported by nothing in the engine.
LAYERS: list[set[str]] = [
    {"daemon", "parts", "recovery", "registry_login", "__main__", "__init__"},
    {"api"},
    {"containers", "build", "kube"},
    {"images", "net", "volumes"},
    {"exec"},
    {"errors", "ids", "events", "store", "crashpoints", "gomatch", "bpf", "version", "timestamps", "data", "config",
     "mallopt", "memtrace"},
]
# Sideways imports that are part of the design: the builder runs its RUN steps through the container manager;
# the small shared modules stand on each other (errors under all of them), and so do the composition root's.
SIDEWAYS = {("build", "containers"), ("kube", "containers")} | {
    (a, b) for layer in (LAYERS[0], LAYERS[-1]) for a in layer for b in layer
}
# Upward imports that remain (each a TYPE_CHECKING or function-level import); the list may only shrink: a new
# entry fails the test, and so does an entry that no longer occurs.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _rank(area: str) -> int:
    for i, layer in enumerate(LAYERS):
        if area in layer:
            return i
    raise AssertionError(f"engine/{area} is in no layer of tests/test_layering.py: place it")


def _area(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "engine":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _engine_imports(py: Path) -> list[str]:
    """Every engine module `py` imports, wherever the import sits (top level, TYPE_CHECKING, inside a function),
    relative imports resolved and `from engine import x` read as engine.x."""
    import ast

    rel = py.relative_to(ROOT).with_suffix("").as_posix().split("/")
    package = rel[:-1]
    out: list[str] = []
    for node in ast.walk(ast.parse(py.read_text())):
        if isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(p for p in (base, node.module or "") if p)
            if module == "engine":
                out.extend(f"engine.{a.name}" for a in node.names)
            else:
                out.append(module)
    return [m for m in out if _area(m) is not None]


def _upward_imports() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for py in sorted((ROOT / "engine").rglob("*.py")):
        rel = py.relative_to(ROOT).as_posix()
        own = _area(".".join(py.relative_to(ROOT).with_suffix("").parts))
        assert own is not None
        for module in _engine_imports(py):
            other = _area(module)
            assert other is not None
            if other == own or (own, other) in SIDEWAYS:
                continue
            if _rank(other) <= _rank(own):
                found.add((rel, module))
    return found


def test_engine_imports_run_downward_only() -> None:
    found = _upward_imports()
    assert found - KNOWN_UPWARD == set(), "imports that run upward or sideways (see LAYERS)"
    assert KNOWN_UPWARD - found == set(), "gone: drop these from KNOWN_UPWARD"


def test_the_layer_check_sees_hidden_imports() -> None:
    # A TYPE_CHECKING import, a function-level one and a relative one must all be read.
    mod = ROOT / "engine" / "volumes.py"
    imports = _engine_imports(mod)
    assert "engine.crashpoints" in imports
    manager = _engine_imports(ROOT / "engine" / "containers" / "manager.py")
    assert "engine.containers.host" in manager  # under TYPE_CHECKING
    assert "engine.timestamps" in manager  # inside a function
