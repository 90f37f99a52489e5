"""The Dockerfile's instruction layer: stages, meta ARGs, flags, directives and Docker's parse errors."""

from __future__ import annotations

import pytest

from engine.build.dockerfile import _lines, directives, parse, parse_trigger
from engine.errors import InvalidArgument


def test_stages_meta_args_and_the_escape_directive() -> None:
    df = parse("# escape=`\nARG BASE=busybox\nFROM ${BASE} AS Build\nRUN echo a `\n  b\n"
               "FROM --platform=linux/amd64 scratch\nCOPY --from=build --chown=1:2 /a /b\n")
    assert df.escape == "`"
    assert [a.original for a in df.meta_args] == ["ARG BASE=busybox"]
    assert [(s.base, s.name, s.index) for s in df.stages] == [("${BASE}", "build", 0), ("scratch", "", 1)]
    assert df.stages[1].platform == "linux/amd64"
    run = df.stages[0].commands[0]
    assert (run.name, run.args, run.line) == ("RUN", ["echo a   b"], 4)
    copy = df.stages[1].commands[0]
    assert copy.flags == {"from": "build", "chown": "1:2"} and copy.args == ["/a", "/b"]
    assert df.stage_index("BUILD") == 0 and df.stage_index("nope") is None


def test_json_and_shell_forms() -> None:
    df = parse('FROM busybox\nCMD ["a", "b c"]\nENTRYPOINT echo  x\nRUN ["bad json"\n')
    cmd, ep, run = df.stages[0].commands
    assert (cmd.json, cmd.args) == (True, ["a", "b c"])
    assert (ep.json, ep.args) == (False, ["echo  x"])
    assert (run.json, run.args) == (False, ['["bad json"'])  # not JSON: the shell form, as Docker reads it


@pytest.mark.parametrize("text,message", [
    ("FROM busybox\nFROB x\n", "dockerfile parse error on line 2: unknown instruction: FROB"),
    ("RUN true\n", "no build stage in current context"),
    ("FROM a b\n", "FROM requires either one or three arguments"),
    ("FROM a AS 9x\n", 'invalid name for build stage: "9x", name can\'t start with a number or contain symbols'),
    ("FROM a\nCOPY x\n", "COPY requires at least two arguments, but only one was provided"),
    ("FROM a\nCOPY --frob=1 x y\n", "unknown flag: frob"),
    ("FROM a\nCOPY --from x y\n", "missing a value on flag: from"),
    ("FROM a\nCOPY --chown=1 --chown=2 x y\n", "duplicate flag specified: chown"),
    ("FROM a\nSHELL /bin/bash -c\n", "SHELL requires the arguments to be in JSON form"),
    ("FROM a\nUSER\n", "USER requires exactly one argument"),
    ("FROM a\nONBUILD ONBUILD RUN x\n", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
    ("FROM a\nONBUILD FROM b\n", "FROM isn't allowed as an ONBUILD trigger"),
    ("FROM a\nENV =x\n", "ENV names can not be blank"),
    ("# escape=x\nFROM a\n", "invalid escape token 'x' does not match ` or \\"),
    ("\n# just a comment\n", "cannot be empty"),
])
def test_errors_in_dockers_words(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse(text)
    assert message in e.value.message


def test_directives_only_at_the_top() -> None:
    assert directives("# escape=`\n# syntax=x/y\nFROM a\n") == {"escape": "`", "syntax": "x/y"}
    assert directives("FROM a\n# escape=`\n") == {}
    assert directives("# comment\n# escape=`\n") == {}
    with pytest.raises(InvalidArgument, match="only one escape parser directive"):
        directives("# escape=`\n# escape=\\\n")


def test_heredocs_are_parsed_for_the_builder_to_refuse() -> None:
    df = parse("FROM a\nRUN <<EOF\necho hi\nEOF\n")
    assert df.stages[0].commands[0].heredocs == ["EOF"]


def test_onbuild_triggers() -> None:
    df = parse("FROM a\nONBUILD ADD . /app\n")
    ob = df.stages[0].commands[0]
    assert (ob.name, ob.args, ob.sub) == ("ONBUILD", ["ADD . /app"], "ADD")
    t = parse_trigger("ADD . /app")
    assert (t.name, t.args) == ("ADD", [".", "/app"])
    with pytest.raises(InvalidArgument, match="unknown instruction"):
        parse_trigger("FROB x")


def test_a_text_parsed_again_reuses_the_first_parse() -> None:
    # the dockerfile package keeps every field of what it returns alive for good (engine/build/dockerfile._lines):
    # a rebuild of the same Dockerfile must not go through it again
    text = "FROM busybox\nRUN echo pst-lines-cache\n"
    first = _lines(text)
    assert parse(text).stages[0].commands[0].args == ["echo pst-lines-cache"]
    assert _lines(text) is first
    assert parse_trigger("RUN echo pst-trigger").args == ["echo pst-trigger"]
    assert _lines("RUN echo pst-trigger\n") is _lines("RUN echo pst-trigger\n")
