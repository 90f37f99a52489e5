"""A Dockerfile as the classic builder sees it: stages of typed instructions, meta ARGs before the first FROM.

The line level - parser directives (`# escape=`, `# syntax=`), continuations, comments, JSON versus shell
form, heredocs - is done by the `dockerfile` package, which wraps BuildKit's own Go parser (the one dockerd's
classic builder uses), so it splits lines exactly as Docker does; writing that again would only add
differences. This module is BuildKit's `instructions` layer on top: flags, argument counts and Docker's
messages for them (`dockerfile parse error on line 3: unknown instruction: FROB`).
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import dockerfile as _df

from engine.errors import InvalidArgument

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_STAGE_NAME = re.compile(r"^[a-z][a-z0-9-_.]*$")

# flags each instruction takes (BuildKit's); those only BuildKit can honour are refused at dispatch
FLAGS: dict[str, dict[str, str]] = {
    "FROM": {"platform": "string"},
    "COPY": {"chown": "string", "from": "string", "chmod": "string", "link": "bool", "exclude": "strings",
             "parents": "bool"},
    "ADD": {"chown": "string", "chmod": "string", "link": "bool", "keep-git-dir": "bool", "checksum": "string",
            "unpack": "bool", "exclude": "strings"},
    "RUN": {"mount": "strings", "network": "string", "security": "string", "device": "strings"},
    "HEALTHCHECK": {"interval": "string", "timeout": "string", "start-period": "string", "start-interval": "string",
                    "retries": "string"},
}
KNOWN = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
         "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
BUILDKIT_ONLY = "requires BuildKit. Refer to https://docs.docker.com/go/buildkit/ to learn how to build images " \
                "with BuildKit enabled"


@dataclass
class Instruction:
    name: str  # upper case: RUN
    args: list[str]
    original: str  # the source line(s), continuations joined: what "Step 2/5 : ..." prints
    line: int
    json: bool = False
    flags: dict[str, Any] = field(default_factory=dict)
    heredocs: list[str] = field(default_factory=list)
    sub: str = ""  # ONBUILD's trigger instruction

    def __str__(self) -> str:
        return self.original


@dataclass
class Stage:
    base: str  # FROM's image, stage name or "scratch" (before ARG expansion)
    name: str  # "" or the lower-cased AS name
    index: int
    original: str
    line: int
    platform: str = ""
    commands: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    stages: list[Stage]
    meta_args: list[Instruction]
    escape: str = "\\"
    warnings: list[str] = field(default_factory=list)

    def stage_index(self, name_or_index: str) -> int | None:
        key = name_or_index.lower()
        for s in self.stages:
            if s.name and s.name == key:
                return s.index
        return None


def directives(text: str) -> dict[str, str]:
    """The parser directives at the top of the file (before any blank line, other comment or instruction)."""
    out: dict[str, str] = {}
    for raw in text.splitlines():
        m = _DIRECTIVE.match(raw.strip())
        if not m:
            break
        key = m.group(1).lower()
        if key in out:
            raise InvalidArgument(f"only one {key} parser directive can be used")
        out[key] = m.group(2)
    return out


def _parse_flags(cmd: str, raw: tuple[str, ...]) -> dict[str, Any]:
    allowed = FLAGS.get(cmd, {})
    out: dict[str, Any] = {}
    for a in raw:
        if not a.startswith("--"):
            raise InvalidArgument(f"arg should start with -- : {a}")
        name, eq, value = a[2:].partition("=")
        kind = allowed.get(name)
        if kind is None:
            raise InvalidArgument(f"unknown flag: {name}")
        if name in out and kind != "strings":
            raise InvalidArgument(f"duplicate flag specified: {name}")
        if kind == "bool":
            if eq and value.lower() not in ("true", "false"):
                raise InvalidArgument(f"expecting boolean value for flag {name}, not: {value}")
            out[name] = (value.lower() if eq else "true") == "true"
        elif not eq:
            raise InvalidArgument(f"missing a value on flag: {name}")
        elif kind == "strings":
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def _check_args(cmd: str, args: list[str], is_json: bool, original: str) -> None:
    n = len(args)
    if cmd in ("ENV", "LABEL", "ARG", "EXPOSE", "VOLUME", "ONBUILD", "HEALTHCHECK") and n == 0:
        raise InvalidArgument(f"{cmd} requires at least one argument")
    if cmd in ("USER", "STOPSIGNAL", "WORKDIR", "MAINTAINER") and n != 1:
        raise InvalidArgument(f"{cmd} requires exactly one argument")
    if cmd in ("COPY", "ADD") and n < 2:
        raise InvalidArgument(f"{cmd} requires at least two arguments, but only one was provided. Destination "
                              "could not be determined")
    if cmd == "SHELL":
        if n == 0:
            raise InvalidArgument("SHELL requires at least one argument")
        if not is_json:
            raise InvalidArgument(f"{cmd} requires the arguments to be in JSON form")
    if cmd in ("ENV", "LABEL"):
        for k in args[0::2]:
            if not k:
                raise InvalidArgument(f"{cmd} names can not be blank")
    if cmd == "ARG":
        for a in args:
            if a.startswith("="):
                raise InvalidArgument("ARG names can not be blank")
    if cmd == "VOLUME" and any(not v.strip() for v in args):
        raise InvalidArgument("VOLUME specified can not be an empty string")


def _instruction(c: Any, *, inner: bool = False) -> Instruction:
    cmd = c.cmd.upper()
    if cmd not in KNOWN:
        raise InvalidArgument(f"unknown instruction: {c.cmd}")
    args = list(c.value)
    if cmd == "ONBUILD":
        sub = (c.sub_cmd or "").upper()
        if not sub:
            raise InvalidArgument("ONBUILD requires at least one argument")
        if sub == "ONBUILD":
            raise InvalidArgument("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if sub in ("MAINTAINER", "FROM"):
            raise InvalidArgument(f"{sub} isn't allowed as an ONBUILD trigger")
        expr = re.sub(r"(?i)^\s*ONBUILD\s*", "", c.original)
        return Instruction("ONBUILD", [expr], c.original, c.start_line, sub=sub)
    flags = _parse_flags(cmd, tuple(c.flags))
    _check_args(cmd, args, bool(c.json), c.original)
    return Instruction(cmd, args, c.original, c.start_line, bool(c.json), flags,
                       [h.name for h in getattr(c, "heredocs", ()) or ()])


@functools.lru_cache(maxsize=16)
def _lines(text: str) -> tuple[Any, ...]:
    """The package's parse of `text`, kept for the last 16 texts. Its 3.4.0 extension keeps a reference to every
    field of every Command it returns (cmdsToPy never releases what it hands the Command constructor), so each
    parse leaked its strings and tuples for good (~460 B for a two-line Dockerfile); a rebuild of the same text
    no longer parses it again. The Commands are immutable namedtuples, safe to share. A GoParseError is not kept."""
    return tuple(_df.parse_string(text))


def _located(line: int, e: InvalidArgument) -> InvalidArgument:
    return InvalidArgument(f"dockerfile parse error on line {line}: {e.message}")


def parse(text: str, name: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile; InvalidArgument with Docker's message on any error."""
    if text.startswith("\ufeff"):
        text = text[1:]
    found = directives(text)
    escape = found.get("escape", "\\")
    if escape not in ("\\", "`"):
        raise InvalidArgument(f"invalid escape token '{escape}' does not match ` or \\")
    warnings = []
    if "syntax" in found:
        warnings.append(f"the '# syntax={found['syntax']}' directive is ignored: the classic builder uses its own "
                        "Dockerfile frontend")
    try:
        commands = _lines(text)
    except _df.GoParseError as e:
        msg = str(e)
        if "file with no instructions" in msg:
            raise InvalidArgument(f"the Dockerfile ({name}) cannot be empty") from None
        raise InvalidArgument(f"dockerfile parse error: {msg}") from None
    stages: list[Stage] = []
    meta: list[Instruction] = []
    for c in commands:
        cmd = c.cmd.upper()
        if cmd == "FROM":
            try:
                st = _stage(c, len(stages))
            except InvalidArgument as e:
                raise _located(c.start_line, e) from None
            stages.append(st)
            continue
        try:
            ins = _instruction(c)
        except InvalidArgument as e:
            raise _located(c.start_line, e) from None
        if not stages:
            if ins.name != "ARG":
                raise InvalidArgument(f"dockerfile parse error on line {c.start_line}: no build stage in current "
                                      "context")
            meta.append(ins)
            continue
        stages[-1].commands.append(ins)
    if not stages:
        raise InvalidArgument("No image was generated. Is your Dockerfile empty?")
    return Dockerfile(stages, meta, escape, warnings)


def _stage(c: Any, index: int) -> Stage:
    args = list(c.value)
    flags = _parse_flags("FROM", tuple(c.flags))
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise InvalidArgument(f"invalid name for build stage: {json.dumps(args[2])}, name can't start with a "
                                  "number or contain symbols")
    elif len(args) != 1:
        raise InvalidArgument("FROM requires either one or three arguments")
    return Stage(args[0], name, index, c.original.strip(), c.start_line, flags.get("platform", ""))


def parse_trigger(expr: str) -> Instruction:
    """An ONBUILD trigger, parsed when a stage starts from an image that carries it."""
    try:
        commands = _lines(expr + "\n")
    except _df.GoParseError as e:
        raise InvalidArgument(str(e)) from None
    if len(commands) != 1:
        raise InvalidArgument("onbuild trigger should be a single expression")
    return _instruction(commands[0])
