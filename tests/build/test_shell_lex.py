"""engine.build.shell_lex against buildkit's own lexer tests (frontend/dockerfile/shell: envVarTest, wordsTest,
lex_test.go), turned into tables, plus the escape-token variant and the error texts."""

from __future__ import annotations

import pytest

from engine.build.shell_lex import ShellLex, env_map, go_quote
from engine.errors import InvalidArgument

ERR = object()

# envVarTest's environment
ENV = {"PWD": "/home", "SHELL": "bash", "KOREAN": "한국어", "NULL": ""}

# envVarTest, Unix and all-platform lines (the Korean duplicates of Latin lines left out): (word, result, error)
ENV_VAR_CASES = [
    ('hello', 'hello', None),
    ("he'll'o", 'hello', None),
    ("he'llo", ERR, 'unexpected end of statement while looking for matching single-quote'),
    ("he\\'llo", "he'llo", None),
    ("he\\\\'llo", ERR, 'unexpected end of statement while looking for matching single-quote'),
    ('abc\\tdef', 'abctdef', None),
    ('"abc\\tdef"', 'abc\\tdef', None),
    ('"abc\\\\tdef"', 'abc\\tdef', None),
    ("'abc\\tdef'", 'abc\\tdef', None),
    ('hello\\', 'hello', None),
    ('hello\\\\', 'hello\\', None),
    ('"hello', ERR, 'unexpected end of statement while looking for matching double-quote'),
    ('"hello\\"', ERR, 'unexpected end of statement while looking for matching double-quote'),
    ('"hel\'lo"', "hel'lo", None),
    ("'hello", ERR, 'unexpected end of statement while looking for matching single-quote'),
    ("'hello\\'", 'hello\\', None),
    ("'hello\\there'", 'hello\\there', None),
    ("'hello\\\\there'", 'hello\\\\there', None),
    ('"\'\'"', "''", None),
    ('$.', '$.', None),
    ('he$1x', 'hex', None),
    ('he$.x', 'he$.x', None),
    ('he$pwd.', 'he.', None),
    ('he$PWD', 'he/home', None),
    ('he\\$PWD', 'he$PWD', None),
    ('he\\\\$PWD', 'he\\/home', None),
    ('"he\\$PWD"', 'he$PWD', None),
    ('"he\\\\$PWD"', 'he\\/home', None),
    ('\\${}', '${}', None),
    ('\\${}aaa', '${}aaa', None),
    ('he\\${}', 'he${}', None),
    ('he\\${}xx', 'he${}xx', None),
    ('${}', ERR, 'syntax error: bad substitution'),
    ('${}aaa', ERR, 'syntax error: bad substitution'),
    ('he${}', ERR, 'syntax error: bad substitution'),
    ('he${}xx', ERR, 'syntax error: bad substitution'),
    ('he${hi}', 'he', None),
    ('he${hi}xx', 'hexx', None),
    ('he${PWD}', 'he/home', None),
    ('he${.}', ERR, 'unsupported modifier (.) in substitution'),
    ('he${XXX:-000}xx', 'he000xx', None),
    ('he${PWD:-000}xx', 'he/homexx', None),
    ('he${XXX:-$PWD}xx', 'he/homexx', None),
    ('he${XXX:-${PWD:-yyy}}xx', 'he/homexx', None),
    ('he${XXX:-${YYY:-yyy}}xx', 'heyyyxx', None),
    ('he${XXX:YYY}', ERR, 'unsupported modifier (:Y) in substitution'),
    ('he${XXX?}', ERR, 'XXX: is not allowed to be unset'),
    ('he${XXX:?}', ERR, 'XXX: is not allowed to be unset'),
    ('he${PWD?}', 'he/home', None),
    ('he${PWD:?}', 'he/home', None),
    ('he${NULL?}', 'he', None),
    ('he${NULL:?}', ERR, 'NULL: is not allowed to be empty'),
    ('he${XXX:+${PWD}}xx', 'hexx', None),
    ('he${PWD:+${XXX}}xx', 'hexx', None),
    ('he${PWD:+${SHELL}}xx', 'hebashxx', None),
    ('he${XXX:+000}xx', 'hexx', None),
    ('he${PWD:+000}xx', 'he000xx', None),
    ("'he${XX}'", 'he${XX}', None),
    ('"he${PWD}"', 'he/home', None),
    ('"he\'$PWD\'"', "he'/home'", None),
    ('"$PWD"', '/home', None),
    ("'$PWD'", '$PWD', None),
    ("'\\$PWD'", '\\$PWD', None),
    ('\'"hello"\'', '"hello"', None),
    ('he\\$PWD', 'he$PWD', None),
    ('"he\\$PWD"', 'he$PWD', None),
    ("'he\\$PWD'", 'he\\$PWD', None),
    ('he${PWD', ERR, 'unsupported modifier (�) in substitution'),
    ('he${PWD:=000}xx', ERR, 'unsupported modifier (:=) in substitution'),
    ('he${PWD:+${PWD}:}xx', 'he/home:xx', None),
    ('he${XXX:-\\$PWD:}xx', 'he$PWD:xx', None),
    ('he${XXX:-\\${PWD}z}xx', 'he${PWDz}xx', None),
    ('안녕하세요', '안녕하세요', None),
    ("안'녕'하세요", '안녕하세요', None),
    ("안'녕하세요", ERR, 'unexpected end of statement while looking for matching single-quote'),
    ("안녕\\'하세요", "안녕'하세요", None),
    ("안\\\\'녕하세요", ERR, 'unexpected end of statement while looking for matching single-quote'),
    ('안녕\\t하세요', '안녕t하세요', None),
    ('"안녕\\t하세요"', '안녕\\t하세요', None),
    ("'안녕\\t하세요", ERR, 'unexpected end of statement while looking for matching single-quote'),
    ('안녕하세요\\', '안녕하세요', None),
    ('안녕하세요\\\\', '안녕하세요\\', None),
    ('"안녕하세요', ERR, 'unexpected end of statement while looking for matching double-quote'),
    ('"안녕하세요\\"', ERR, 'unexpected end of statement while looking for matching double-quote'),
    ('"안녕\'하세요"', "안녕'하세요", None),
    ("'안녕하세요", ERR, 'unexpected end of statement while looking for matching single-quote'),
    ("'안녕하세요\\'", '안녕하세요\\', None),
    ("'안녕${XX}'", '안녕${XX}', None),
    ('"안녕${PWD}"', '안녕/home', None),
    ('"안녕\'$PWD\'"', "안녕'/home'", None),
    ('\'"안녕"\'', '"안녕"', None),
    ('"안녕\\$PWD"', '안녕$PWD', None),
    ("'안녕\\$PWD'", '안녕\\$PWD', None),
    ('$KOREAN', '한국어', None),
    ('안녕$KOREAN', '안녕한국어', None),
    ('${{aaa}', ERR, 'syntax error: bad substitution'),
    ('${aaa}}', '}', None),
    ('${aaa', ERR, 'unsupported modifier (�) in substitution'),
    ('${{aaa:-bbb}', ERR, 'syntax error: bad substitution'),
    ('${aaa:-bbb}}', 'bbb}', None),
    ('${aaa:-bbb', ERR, "syntax error: missing '}'"),
    ('${aaa:-bbb}', 'bbb', None),
    ('${aaa:-${bbb:-ccc}}', 'ccc', None),
    ('${aaa:-bbb ${foo}', ERR, "syntax error: missing '}'"),
    ('${aaa:-bbb {foo}', 'bbb {foo', None),
    ('${:}', ERR, 'syntax error: bad substitution'),
    ('${:-bbb}', ERR, 'syntax error: bad substitution'),
    ('${:+bbb}', ERR, 'syntax error: bad substitution'),
    ('$1', '', None),
    ('${1}', '', None),
    ('${1:+bbb}', '', None),
    ('${1:-bbb}', 'bbb', None),
    ('$2', '', None),
    ('${2}', '', None),
    ('${2:+bbb}', '', None),
    ('${2:-bbb}', 'bbb', None),
    ('$3', '', None),
    ('${3}', '', None),
    ('${3:+bbb}', '', None),
    ('${3:-bbb}', 'bbb', None),
    ('$4', '', None),
    ('${4}', '', None),
    ('${4:+bbb}', '', None),
    ('${4:-bbb}', 'bbb', None),
    ('$5', '', None),
    ('${5}', '', None),
    ('${5:+bbb}', '', None),
    ('${5:-bbb}', 'bbb', None),
    ('$6', '', None),
    ('${6}', '', None),
    ('${6:+bbb}', '', None),
    ('${6:-bbb}', 'bbb', None),
    ('$7', '', None),
    ('${7}', '', None),
    ('${7:+bbb}', '', None),
    ('${7:-bbb}', 'bbb', None),
    ('$8', '', None),
    ('${8}', '', None),
    ('${8:+bbb}', '', None),
    ('${8:-bbb}', 'bbb', None),
    ('$9', '', None),
    ('${9}', '', None),
    ('${9:+bbb}', '', None),
    ('${9:-bbb}', 'bbb', None),
    ('$999', '', None),
    ('${999}', '', None),
    ('${999:+bbb}', '', None),
    ('${999:-bbb}', 'bbb', None),
    ('$999aaa', 'aaa', None),
    ('${999}aaa', 'aaa', None),
    ('${999:+bbb}aaa', 'aaa', None),
    ('${999:-bbb}aaa', 'bbbaaa', None),
    ('$001', '', None),
    ('${001}', '', None),
    ('${001:+bbb}', '', None),
    ('${001:-bbb}', 'bbb', None),
    ('$001aaa', 'aaa', None),
    ('${001}aaa', 'aaa', None),
    ('${001:+bbb}aaa', 'aaa', None),
    ('${001:-bbb}aaa', 'bbbaaa', None),
    ('$@', '', None),
    ('${@}', '', None),
    ('${@:+bbb}', '', None),
    ('${@:-bbb}', 'bbb', None),
    ('$@@@', '@@', None),
    ('$@aaa', 'aaa', None),
    ('${@}aaa', 'aaa', None),
    ('${@:+bbb}aaa', 'aaa', None),
    ('${@:-bbb}aaa', 'bbbaaa', None),
    ('$*', '', None),
    ('${*}', '', None),
    ('${*:+bbb}', '', None),
    ('${*:-bbb}', 'bbb', None),
    ('$#', '', None),
    ('${#}', '', None),
    ('${#:+bbb}', '', None),
    ('${#:-bbb}', 'bbb', None),
    ('$?', '', None),
    ('${?}', '', None),
    ('${?:+bbb}', '', None),
    ('${?:-bbb}', 'bbb', None),
    ('$-', '', None),
    ('${-}', '', None),
    ('${-:+bbb}', '', None),
    ('${-:-bbb}', 'bbb', None),
    ('$$', '', None),
    ('${$}', '', None),
    ('${$:+bbb}', '', None),
    ('${$:-bbb}', 'bbb', None),
    ('$!', '', None),
    ('${!}', '', None),
    ('${!:+bbb}', '', None),
    ('${!:-bbb}', 'bbb', None),
    ('$0', '', None),
    ('${0}', '', None),
    ('${0:+bbb}', '', None),
    ('${0:-bbb}', 'bbb', None),
]


@pytest.mark.parametrize(("word", "expected", "message"), ENV_VAR_CASES)
def test_env_var_table(word: str, expected: object, message: str | None) -> None:
    lex = ShellLex()
    if expected is ERR:
        with pytest.raises(InvalidArgument) as info:
            lex.process_word(word, ENV)
        assert info.value.message == f"failed to process {go_quote(word)}: {message}"
        assert info.value.status == 400
    else:
        assert lex.process_word(word, ENV) == expected


WORDS_ENV = env_map(["hi=hi", "space=abc  def", "leading=  ab c", "trailing=ab c   "])

# wordsTest: (word, env, words); wordsTest's "error" lines raise
WORDS_CASES = [
    ("hello", {}, ["hello"]),
    ("hello${hi}bye", {}, ["hellobye"]),
    ("hello${hi}bye", WORDS_ENV, ["hellohibye"]),
    ("hello${space}bye", WORDS_ENV, ["helloabc", "defbye"]),
    ('hello"${space}"bye', WORDS_ENV, ["helloabc  defbye"]),
    ('hello "${space}"bye', WORDS_ENV, ["hello", "abc  defbye"]),
    ("hello${leading}def", WORDS_ENV, ["hello", "ab", "cdef"]),
    ('hello"${leading}" def', WORDS_ENV, ["hello  ab c", "def"]),
    ('hello"${leading}"', WORDS_ENV, ["hello  ab c"]),
    ("hello${leading}", WORDS_ENV, ["hello", "ab", "c"]),
    ("hello${trailing}", WORDS_ENV, ["helloab", "c"]),
    ("hello${trailing}d", WORDS_ENV, ["helloab", "c", "d"]),
    ('hello"${trailing}"d', WORDS_ENV, ["helloab c   d"]),
    ('hel"lo${trailing}"', WORDS_ENV, ["helloab c   "]),
    ('hello" there  "', WORDS_ENV, ["hello there  "]),
    ("hello there     ", WORDS_ENV, ["hello", "there"]),
    ("hello\\ there", WORDS_ENV, ["hello there"]),
    ('hello\\" there', WORDS_ENV, ['hello"', "there"]),
    ('hello"\\\\there"', WORDS_ENV, ["hello\\there"]),
    ('hello"\\there"', WORDS_ENV, ["hello\\there"]),
    ("hello'\\\\there'", WORDS_ENV, ["hello\\\\there"]),
    ("hello'\\there'", WORDS_ENV, ["hello\\there"]),
    ("hello'$there'", WORDS_ENV, ["hello$there"]),
    # EXPOSE $PORTS is the classic builder's one word-to-words expansion
    ("$PORTS", {"PORTS": "80 443/udp"}, ["80", "443/udp"]),
    ('"$PORTS"', {"PORTS": "80 443/udp"}, ["80 443/udp"]),
    ("''", {}, []),
    ("a '' b", {}, ["a", "b"]),
    ("a<<  EOF", {}, ["a<<  EOF"]),
    # buildkit shares one word buffer with a ${..:-..} operand, so the word's text before it is lost
    ("80${P:-80}", {}, ["80"]),
    ("x ${P:-8 0}", {}, ["x", "8", "0"]),
]


@pytest.mark.parametrize(("word", "env", "expected"), WORDS_CASES)
def test_words_table(word: str, env: dict[str, str], expected: list[str]) -> None:
    assert ShellLex().process_words(word, env) == expected


def test_words_unterminated_quote() -> None:
    with pytest.raises(InvalidArgument, match="looking for matching double-quote"):
        ShellLex().process_words('hello" there', WORDS_ENV)


def test_process_word_keeps_whitespace_that_words_splits() -> None:
    lex = ShellLex()
    assert lex.process_word("hello${leading}def", WORDS_ENV) == "hello  ab cdef"
    assert lex.process_word("80${P:-80}", {}) == "8080"


def test_mandatory_variables() -> None:
    """lex_test.go TestShellParserMandatoryEnvVars."""
    lex = ShellLex()
    no_empty, no_unset = "${VAR:?message here$ARG}", "${VAR?message here$ARG}"
    assert lex.process_word(no_empty, {"VAR": "plain", "ARG": "x"}) == "plain"
    assert lex.process_word(no_unset, {"VAR": "plain", "ARG": "x"}) == "plain"
    assert lex.process_word(no_unset, {"VAR": "", "ARG": "x"}) == ""
    for word, env in ((no_empty, {"VAR": "", "ARG": "x"}), (no_empty, {"ARG": "x"}), (no_unset, {"ARG": "x"})):
        with pytest.raises(InvalidArgument) as info:
            lex.process_word(word, env)
        assert info.value.message == f"failed to process {go_quote(word)}: VAR: message herex"


XY = {"FOO": "xxx", "BAR": ""}

# lex_test.go TestProcessWithMatches: (word, env, result or ERR, matched names)
MATCH_CASES = [
    ("x", {"DUMMY": "dummy"}, "x", set()),
    ("x ${UNUSED}", {"DUMMY": "dummy"}, "x ", set()),
    ("x ${FOO}", {"FOO": "y"}, "x y", {"FOO"}),
    ("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", XY, "xxx  ccc", {"FOO", "BAR"}),
    ("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", XY, "xxx bbb ccc", {"FOO", "BAR"}),
    ("${FOO:-}", XY, "xxx", {"FOO"}),
    ("${FOO:-}", {}, "", set()),
    ("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", XY, "aaa bbb ", {"FOO", "BAR"}),
    ("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", XY, "aaa  ", {"FOO", "BAR"}),
    ("${FOO?aaa}", XY, "xxx", {"FOO"}),
    ("${BAR?bbb}", XY, "", {"BAR"}),
    ("${BAZ?ccc}", XY, ERR, None),
    ("${FOO:?aaa}", XY, "xxx", {"FOO"}),
    ("${BAR:?bbb}", XY, ERR, None),
    ("${BAZ:?ccc}", XY, ERR, None),
    ("${BAZ:?}", XY, ERR, None),
    ("${FOO=aaa}", XY, ERR, None),
    ("${FOO=:aaa}", XY, ERR, None),
    ("${FOO=}", {}, ERR, None),
    ("${FOO#()[]{\\}^$.\\*\\?|\\\\}", {"FOO": "()[]{}^$.*?|\\x"}, "x", {"FOO"}),
    ("${FOO%%\\**}", {"FOO": "xx**"}, "xx", {"FOO"}),
    ("${FOO#*x*y}", {"FOO": "xxyy"}, "y", {"FOO"}),
    ("${FOO#*}", {"FOO": "xxyy"}, "xxyy", {"FOO"}),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": "x"}, "xyy", {"FOO", "BAR"}),
    ("${FOO#$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}),
    ("${FOO#}", {"FOO": "xxyy"}, "xxyy", {"FOO"}),
    ("${FOO##*x}", {"FOO": "xxyy"}, "yy", {"FOO"}),
    ("${FOO##}", {"FOO": "xxyy"}, "xxyy", {"FOO"}),
    ("${FOO#?\\?}", {"FOO": "???y"}, "?y", {"FOO"}),
    ("${ABC:-.}${FOO%x}${ABC:-.}", {"FOO": "xxyy"}, ".xxyy.", {"FOO"}),
    ("${FOO%%\\**\\*}", {"FOO": "a***yy*"}, "a", {"FOO"}),
    ("${FOO%}", {"FOO": "xxyy"}, "xxyy", {"FOO"}),
    ("${FOO%%$BAR}", {"FOO": "xxyy", "BAR": ""}, "xxyy", {"FOO", "BAR"}),
    ("${FOO:#}", {}, ERR, None),
    ("${FOO:##}", {}, ERR, None),
    ("${FOO:%}", {}, ERR, None),
    ("${FOO:%%}", {}, ERR, None),
    ("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", {"FOO": "/foo*/*/*.txt", "NEEDLE": "\\*/"},
     "/foo.*/*.txt - /foo..*.txt", {"FOO", "NEEDLE"}),
    ("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", {"FOO": "/tmp/tmp/bar.txt", "NEEDLE": "/tmp"},
     "/tmp/bar.txt - /bar.txt", {"FOO", "NEEDLE"}),
    ("${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
     {"FOO": "/a/foo/b/c.txt", "NEEDLE": "/?/", "REPLACEMENT": "/"}, "/foo/b/c.txt - /foo/c.txt",
     {"FOO", "NEEDLE", "REPLACEMENT"}),
    ("${FOO/$NEEDLE/$REPLACEMENT}", {"FOO": "http://google.de", "NEEDLE": "http://", "REPLACEMENT": "https://"},
     "https://google.de", {"FOO", "NEEDLE", "REPLACEMENT"}),
    ("${FOO//\\//\\/}", {"FOO": "/tmp/foo.txt"}, "\\/tmp\\/foo.txt", {"FOO"}),
    ("${FOO/$BAR/ww}", {"FOO": "xxyy", "BAR": ""}, "wwxxyy", {"FOO", "BAR"}),
    ("${FOO//ww}", {"FOO": "xxyy"}, ERR, None),
    ("${FOO//}", {"FOO": "xxyy"}, ERR, None),
    ("${FOO///}", {"FOO": "xxyy"}, "xxyy", {"FOO"}),
    ("${FOO///}", {}, "", set()),
    # lex_test.go TestProcessWithMatchesPlatform
    ("x-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tgz", {"TARGETARCH": "arm", "TARGETVARIANT": "v7"},
     "x-arm-v7.tgz", {"TARGETARCH", "TARGETVARIANT"}),
    ("x-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tgz", {"TARGETARCH": "arm64", "TARGETVARIANT": ""},
     "x-arm64.tgz", {"TARGETARCH", "TARGETVARIANT"}),
    ("x-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tgz", {"TARGETARCH": "arm64"}, "x-arm64.tgz",
     {"TARGETARCH"}),
    # Go's ReplaceAllString skips an empty match right after a match; re.sub would not
    ("${FOO//*/x}", {"FOO": "abc"}, "x", {"FOO"}),
    ("${FOO//$BAR/-}", {"FOO": "ab", "BAR": ""}, "-a-b-", {"FOO", "BAR"}),
    # ReplaceAllString's template: a `$name` that survives the lexer (\$ in an operand) names no group
    ("${FOO//b/\\$x\\$0}", {"FOO": "abc"}, "a\\\\bc", {"FOO"}),
]


@pytest.mark.parametrize(("word", "env", "expected", "matched"), MATCH_CASES)
def test_process_with_matches(word: str, env: dict[str, str], expected: object, matched: set[str] | None) -> None:
    lex = ShellLex()
    if expected is ERR:
        with pytest.raises(InvalidArgument):
            lex.process_word_with_matches(word, env)
        return
    assert lex.process_word_with_matches(word, env) == (expected, matched)


def test_unmatched_names_are_reported_too() -> None:
    res = ShellLex().process("${FOO:-a}$BAR${BAZ}", {"BAR": "b"})
    assert (res.result, res.matched, res.unmatched) == ("ab", {"BAR"}, {"FOO", "BAZ"})


# the other buildkit error texts (word, message after `failed to process "<word>": `)
ERROR_TEXTS = [
    ("${", "syntax error: missing '}'"),
    ("${a:-b", "syntax error: missing '}'"),
    ("${a/b", "syntax error: missing '/' in ${}"),
    ("${a/b/c", "syntax error: missing '}'"),
    ("${a:x}", "unsupported modifier (:x) in substitution"),
    ("${a:#x}", "unsupported modifier (:#) in substitution"),
    ("${a=x}", "unsupported modifier (=) in substitution"),
    ("${ a}", "unsupported modifier ( ) in substitution"),
    ("${a#\\x}", "invalid pattern (\\x) in substitution: invalid escape '\\x'"),
    ("${a/\\x/y}", "invalid pattern (\\x) in substitution: invalid escape '\\x'"),
    ('"${a:-x}', "unexpected end of statement while looking for matching double-quote"),
    ("${a:-'x}", "syntax error: missing '}'"),
    ("'\n", "unexpected end of statement while looking for matching single-quote"),
]


@pytest.mark.parametrize(("word", "message"), ERROR_TEXTS)
def test_error_texts(word: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        ShellLex().process_word(word, {"a": "abc"})
    assert info.value.message == f"failed to process {go_quote(word)}: {message}"


# `# escape=`` (Windows-style Dockerfiles): the backtick escapes, a backslash is an ordinary character
BACKTICK_CASES = [
    ("he`$PWD", "he$PWD"),
    ("he\\$PWD", "he\\/home"),
    ("C:\\dir\\$SHELL", "C:\\dir\\bash"),
    ('"a`"b"', 'a"b'),
    ('"a`$PWD"', "a$PWD"),
    ('"a``b"', "a`b"),
    ('"a`tb"', "a`tb"),
    ('"a\\"', "a\\"),
    ("a`'b", "a'b"),
    ("hello`", "hello"),
    ("${XXX:-`}}", "}"),
]


@pytest.mark.parametrize(("word", "expected"), BACKTICK_CASES)
def test_backtick_escape(word: str, expected: str) -> None:
    assert ShellLex("`").process_word(word, ENV) == expected


def test_backtick_escape_words() -> None:
    assert ShellLex("`").process_words("hello` there C:\\x", {}) == ["hello there", "C:\\x"]


def test_escape_must_be_one_character() -> None:
    with pytest.raises(ValueError):
        ShellLex("")


def test_env_map() -> None:
    assert env_map(["A=1", "B=2=3", "A=4", "C", "D="]) == {"A": "4", "B": "2=3", "C": "", "D": ""}
    assert ShellLex().process_word("[$C]", env_map(["C"])) == "[]"


def test_leading_byte_order_mark_is_skipped_like_text_scanner() -> None:
    assert ShellLex().process_word("\ufeff$SHELL", ENV) == "bash"
    assert ShellLex().process_word("a\ufeff", ENV) == "a\ufeff"


def test_go_quote() -> None:
    assert go_quote('a"b\\c') == '"a\\"b\\\\c"'
    assert go_quote("\t\n\x01é€") == '"\\t\\n\\x01é€"'
