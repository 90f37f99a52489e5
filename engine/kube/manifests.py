"""Multi-document Kubernetes YAML in and out, with errors that name the document and the field."""

from __future__ import annotations

from typing import Any

import yaml

Manifest = dict[str, Any]


class ManifestError(Exception):
    """A manifest that cannot be used: `where` names the document (1-based, with its kind/name) and the field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.message = message


def describe(index: int, doc: object) -> str:
    """`document 2 (Service web)`: how errors and warnings name a document."""
    if isinstance(doc, dict) and doc.get("kind"):
        name = (doc.get("metadata") or {}).get("name") if isinstance(doc.get("metadata"), dict) else None
        return f"document {index} ({doc['kind']}{' ' + str(name) if name else ''})"
    return f"document {index}"


def load(text: str, source: str = "<stdin>") -> list[Manifest]:
    """Every non-empty document of a YAML stream; each must be a mapping with apiVersion, kind, metadata.name."""
    try:
        raw = list(yaml.safe_load_all(text))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        # which document: count the separators before the faulty line
        doc = _document_at(text, mark.line if mark is not None else 0)
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(f"{source}: document {doc}", f"not valid YAML{at}: {problem}") from e
    docs: list[Manifest] = []
    for i, doc in enumerate(raw, 1):
        if doc is None:
            continue
        where = f"{source}: {describe(i, doc)}"
        if not isinstance(doc, dict):
            raise ManifestError(where, f"a document must be a mapping, not {type(doc).__name__}")
        for key in ("apiVersion", "kind"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise ManifestError(where, f"field {key} is missing")
        if doc["kind"] == "List":
            items = doc.get("items")
            if not isinstance(items, list):
                raise ManifestError(where, "field items must be a list")
            docs.extend(items)
            continue
        meta = doc.get("metadata")
        if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
            raise ManifestError(where, "field metadata.name is missing")
        doc["_where"] = where  # dropped again by strip(): lets later checks name the document
        docs.append(doc)
    return docs


def _document_at(text: str, line: int) -> int:
    """Which document (1-based) holds `line`, counting `---` separators as yaml.safe_load_all does."""
    lines = text.splitlines()
    seps = sum(1 for x in lines[:line] if x.startswith("---"))
    first = next((x for x in lines if x.strip() and not x.lstrip().startswith("#")), "")
    return max(1, seps if first.startswith("---") else seps + 1)


def strip(doc: Manifest) -> Manifest:
    return {k: v for k, v in doc.items() if k != "_where"}


def where(doc: Manifest) -> str:
    return str(doc.get("_where", describe(0, doc)))


def dump(docs: list[Manifest]) -> str:
    """Documents as one YAML stream, keys in the order they were built (kubectl's order: apiVersion, kind, ...)."""
    return yaml.safe_dump_all([strip(d) for d in docs], sort_keys=False, default_flow_style=False,
                              explicit_start=True, width=120)
