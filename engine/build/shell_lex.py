"""Dockerfile word expansion, as buildkit's lexer (frontend/dockerfile/shell, lex.go) does it.

dockerd's classic builder (builder/dockerfile) runs every expandable instruction argument through this lexer: Docker
28.5 vendors buildkit v0.25.2, whose lexer this follows rule by rule, quirks included, so a Dockerfile expands here as
it does under `docker build` with DOCKER_BUILDKIT=0:

- `$NAME`, `${NAME}`, `${NAME:-w}` `${NAME-w}` `${NAME:+w}` `${NAME+w}` `${NAME:?w}` `${NAME?w}`, and buildkit's
  `${NAME#p}` `${NAME##p}` `${NAME%p}` `${NAME%%p}` `${NAME/p/r}` `${NAME//p/r}` (`*` and `?` wildcards, no
  bracket expressions); `${NAME:#p}`-style colon forms and `${NAME=w}` are refused as unsupported modifiers.
- A name is letters, digits and `_`; one starting with a digit is all its digits (`$10x` looks up "10"), and the
  shell's special parameters `@ * # ? - $ ! 0` are one-character names. Neither is ever set by Docker, so they expand
  to "" unless the environment happens to hold that key. `$` before anything else stays a literal `$`.
- Single quotes are literal; double quotes expand `$` and let the escape token escape only `"`, `$` and itself
  (any other escape stays as written); outside quotes the escape token escapes any character and a trailing one is
  dropped.
- `<<` followed by blanks is kept whole (heredoc markers), which only matters to word splitting.
- Word splitting (ProcessWords, used by EXPOSE) splits on unquoted whitespace, including whitespace an unquoted
  `$NAME`/`${NAME}` expansion brings in. A quirk kept on purpose: the lexer shares one word buffer between a word and
  the `${NAME:-...}`-style operand inside it, so ProcessWords drops the part of a word before such an expansion
  (`80${P:-80}` splits to ["80"], not ["8080"]); ProcessWord is unaffected.

Errors are `InvalidArgument` with buildkit's text, wrapped as buildkit wraps it: `failed to process "<word>": <why>`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.errors import InvalidArgument

# Go's unicode.IsSpace (White_Space); Python's str.isspace also counts U+001C..U+001F, which Go does not.
_GO_SPACE = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
                      "\u2028\u2029\u202f\u205f\u3000")
# processPossibleHeredoc's isWhitespace
_HEREDOC_BLANK = frozenset("\t\r ")
_SPECIAL_PARAMS = frozenset("@*#?-$!0")
# Go regexp metacharacters convertShellPatternToRegex escapes (the same set is special to Python's re)
_REGEX_META = frozenset("[]{}.+()|^$")
# text/scanner prints U+FFFD for EOF (-1) when it is formatted with %c or string(rune)
_EOF_TEXT = "\ufffd"


class _LexError(Exception):
    """An error inside one word; process() wraps it with the word, as buildkit's errors.Wrapf does."""


def _is_digit(ch: str) -> bool:
    return ch.isdecimal()  # Go's unicode.IsDigit: category Nd


def _is_letter(ch: str) -> bool:
    return ch.isalpha()  # Go's unicode.IsLetter: categories L*


def go_quote(s: str) -> str:
    """Go's strconv.Quote (fmt's %q), for the words quoted in error messages."""
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == " " or (ch.isprintable() and unicodedata.category(ch) not in ("Zs", "Cf")):
            out.append(ch)
        elif ch in "\a\b\f\n\r\t\v":
            out.append("\\" + "abfnrtv"["\a\b\f\n\r\t\v".index(ch)])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def env_map(env: list[str]) -> dict[str, str]:
    """["A=1", "B=2"] -> {"A": "1", "B": "2"}: later entries win, "A" (no '=') is A="" (buildkit's EnvsFromSlice)."""
    out: dict[str, str] = {}
    for entry in env:
        key, _, value = entry.partition("=")
        out[key] = value
    return out


@dataclass
class ProcessResult:
    """One run of the lexer: the word, its split words, and the variable names looked up (found or not)."""

    result: str
    words: list[str]
    matched: set[str] = field(default_factory=set)
    unmatched: set[str] = field(default_factory=set)


class _Scanner:
    """The two calls of Go's text/scanner the lexer uses: Peek and Next, one character at a time (None is EOF)."""

    def __init__(self, text: str) -> None:
        # text/scanner skips a byte order mark at the very start of its input
        self.text = text[1:] if text.startswith("\ufeff") else text
        self.pos = 0

    def peek(self) -> str | None:
        return self.text[self.pos] if self.pos < len(self.text) else None

    def next(self) -> str | None:
        if self.pos >= len(self.text):
            return None
        ch = self.text[self.pos]
        self.pos += 1
        return ch


class _Words:
    """buildkit's wordsStruct. `buf` is the lexer's one shared buffer (see the module docstring's quirk)."""

    def __init__(self, buf: list[str]) -> None:
        self.buf = buf
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in _GO_SPACE:
            if self.in_word and self.buf:
                self.words.append("".join(self.buf))
                self.buf.clear()
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        if text:  # only non-empty pieces, so `if self.buf` is Go's buf.Len() != 0
            self.buf.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def get_words(self) -> list[str]:
        if self.buf:
            self.words.append("".join(self.buf))
            self.buf.clear()
            self.in_word = False
        return self.words


class _ShellWord:
    """One word being processed (buildkit's shellWord)."""

    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.scanner = _Scanner(text)
        self.env = env
        self.escape = escape
        self.raw_escapes = False
        self.words_buf: list[str] = []
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    def get_env(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    def process_stop_on(self, stop: str | None, raw_escapes: bool) -> tuple[str, list[str]]:
        sc = self.scanner
        result: list[str] = []
        self.words_buf.clear()
        words = _Words(self.words_buf)
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            while (ch := sc.peek()) is not None:
                if stop is not None and ch == stop:
                    sc.next()
                    return "".join(result), words.get_words()
                if ch in "$<'\"":
                    if ch == "$":
                        tmp = self.process_dollar()
                        words.add_string(tmp)
                    else:
                        if ch == "<":
                            tmp = self.process_possible_heredoc()
                        elif ch == "'":
                            tmp = self.process_single_quote()
                        else:
                            tmp = self.process_double_quote()
                        words.add_raw(tmp)
                    result.append(tmp)
                    continue
                sc.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    nxt = sc.next()
                    if nxt is None:
                        break
                    words.add_raw(nxt)
                    result.append(nxt)
                else:
                    words.add_char(ch)
                    result.append(ch)
        finally:
            self.raw_escapes = saved
        if stop is not None:
            raise _LexError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get_words()

    def process_single_quote(self) -> str:
        sc = self.scanner
        sc.next()
        result: list[str] = []
        while True:
            ch = sc.next()
            if ch is None:
                raise _LexError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                return "".join(result)
            result.append(ch)

    def process_double_quote(self) -> str:
        sc = self.scanner
        sc.next()
        result: list[str] = []
        while True:
            peek = sc.peek()
            if peek is None:
                raise _LexError("unexpected end of statement while looking for matching double-quote")
            if peek == '"':
                sc.next()
                return "".join(result)
            if peek == "$":
                result.append(self.process_dollar())
                continue
            ch = sc.next()
            assert ch is not None
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                after = sc.peek()
                if after is None:
                    continue  # the unterminated quote is reported on the next turn
                if after in ('"', "$", self.escape):
                    ch = sc.next()
                    assert ch is not None
            result.append(ch)

    def process_name(self) -> str:
        sc = self.scanner
        name: list[str] = []
        while (ch := sc.peek()) is not None:
            if not name and _is_digit(ch):
                while (d := sc.peek()) is not None and _is_digit(d):
                    name.append(d)
                    sc.next()
                return "".join(name)
            if not name and ch in _SPECIAL_PARAMS:
                sc.next()
                return ch
            if not (_is_letter(ch) or _is_digit(ch) or ch == "_"):
                break
            name.append(ch)
            sc.next()
        return "".join(name)

    def process_dollar(self) -> str:
        sc = self.scanner
        sc.next()
        if sc.peek() != "{":
            name = self.process_name()
            if not name:
                return "$"
            return self.get_env(name)[0]
        sc.next()
        peek = sc.peek()
        if peek is None:
            raise _LexError("syntax error: missing '}'")
        if peek in "{}:":
            raise _LexError("syntax error: bad substitution")
        name = self.process_name()
        ch = sc.next()
        chs = _EOF_TEXT if ch is None else ch
        if ch == "}":
            return self.get_env(name)[0]
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = sc.next()
            chs += _EOF_TEXT if ch is None else ch
        if (ch is not None and ch in "+-?#%") or null_is_unset:
            trims = ch in ("#", "%")
            if null_is_unset and trims:
                raise _LexError(f"unsupported modifier ({chs}) in substitution")
            word = self._operand("}", trims, "syntax error: missing '}'")
            value, is_set = self.get_env(name)
            empty = not is_set or (null_is_unset and value == "")
            if ch == "-":
                return word if empty else value
            if ch == "+":
                return "" if empty else word
            if ch == "?":
                if not is_set:
                    raise _LexError(f"{name}: {word or 'is not allowed to be unset'}")
                if null_is_unset and value == "":
                    raise _LexError(f"{name}: {word or 'is not allowed to be empty'}")
                return value
            if ch in ("#", "%"):
                greedy = word.startswith(ch)
                if greedy:
                    word = word[1:]
                if ch == "%":
                    return _trim_suffix(word, value, greedy)
                return _trim_prefix(word, value, greedy)
            raise _LexError(f"unsupported modifier ({chs}) in substitution")
        if ch == "/":
            replace_all = sc.peek() == "/"
            if replace_all:
                sc.next()
            pattern = self._operand("/", True, "syntax error: missing '/' in ${}")
            replacement = self._operand("}", True, "syntax error: missing '}'")
            value, _ = self.get_env(name)
            regex = _compile_pattern(pattern, greedy=True, anchored=False)
            if replace_all:
                return _go_replace_all(regex, value, replacement)
            m = regex.search(value)
            if m is None:
                return value
            return value[: m.start()] + replacement + value[m.end() :]
        raise _LexError(f"unsupported modifier ({chs}) in substitution")

    def _operand(self, stop: str, raw_escapes: bool, at_eof: str) -> str:
        """The text of a ${...} operand up to `stop`; an unterminated one at the end of the word is `at_eof`."""
        try:
            return self.process_stop_on(stop, raw_escapes)[0]
        except _LexError:
            if self.scanner.peek() is None:
                raise _LexError(at_eof) from None
            raise

    def process_possible_heredoc(self) -> str:
        sc = self.scanner
        sc.next()
        if sc.peek() != "<":
            return "<"
        sc.next()
        blanks: list[str] = []
        while (ch := sc.peek()) is not None and ch in _HEREDOC_BLANK:
            blanks.append(ch)
            sc.next()
        return "<<" + "".join(blanks)


def _compile_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """convertShellPatternToRegex: `*` any string (shortest unless greedy), `?` one character, `\\` escapes."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    while i < len(pattern):
        tok = pattern[i]
        i += 1
        if tok == "*":
            out.append(star)
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            nxt = pattern[i] if i < len(pattern) else None
            if nxt in ("}", "/"):
                continue  # the escape of a ${} delimiter is not part of the pattern
            i += 1
            if nxt not in ("*", "?", "\\"):
                bad = _EOF_TEXT if nxt is None else nxt
                raise _LexError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{bad}'")
            out.append("\\" + nxt)
            continue
        out.append("\\" + tok if tok in _REGEX_META else tok)
    return re.compile("".join(out))


def _go_replace_all(regex: re.Pattern[str], src: str, template: str) -> str:
    """Go's Regexp.ReplaceAllString. Not re.sub: Go skips an empty match right after a match (`.*` on "abc" is
    one replacement in Go, two in Python 3.7+), and its template syntax is `$name`, not `\\1`."""
    out: list[str] = []
    last_end = 0
    pos = 0
    while pos <= len(src):
        m = regex.search(src, pos)
        if m is None:
            break
        out.append(src[last_end : m.start()])
        if m.end() > last_end or m.start() == 0:
            out.append(_go_expand(template, m))
        last_end = m.end()
        pos = pos + 1 if pos + 1 > m.end() else m.end()
    out.append(src[last_end:])
    return "".join(out)


def _go_expand(template: str, m: re.Match[str]) -> str:
    """Go's Regexp.Expand of a ReplaceAllString template: `$$` is `$`, `$0`/`${0}` the match, any other `$name`
    names a group these patterns never have (so ""), and a `$` starting no name stays literal."""
    out: list[str] = []
    i = 0
    while True:
        j = template.find("$", i)
        if j < 0:
            out.append(template[i:])
            return "".join(out)
        out.append(template[i:j])
        i = j + 1
        if template.startswith("$", i):
            out.append("$")
            i += 1
            continue
        brace = template.startswith("{", i)
        k = i + 1 if brace else i
        start = k
        while k < len(template) and (_is_letter(template[k]) or _is_digit(template[k]) or template[k] == "_"):
            k += 1
        name = template[start:k]
        if not name or (brace and not template.startswith("}", k)):
            out.append("$")
            continue
        i = k + 1 if brace else k
        if name == "0":
            out.append(m.group(0))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _compile_pattern(pattern, greedy=greedy, anchored=True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping each `\\x` escape in front of its character (a\\*c -> c\\*a)."""
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        tok = pattern[i]
        if tok == "\\" and i != last:
            out[last - i - 1] = tok
            out[last - i] = pattern[i + 1]
            i += 2
        else:
            out[last - i] = tok
            i += 1
    return "".join(out)


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # a regex cannot find the shortest rightmost match, so both sides are reversed into a leftmost search
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


class ShellLex:
    """buildkit's shell.Lex with the classic builder's settings (quotes processed, unset variables expand to "")."""

    def __init__(self, escape: str = "\\") -> None:
        if len(escape) != 1:
            raise ValueError(f"escape token must be one character, not {escape!r}")
        self.escape = escape

    def process(self, word: str, env: Mapping[str, str]) -> ProcessResult:
        """One run of the lexer over `word`: everything ProcessWord, ProcessWords and the matches report."""
        sw = _ShellWord(word, env, self.escape)
        try:
            result, words = sw.process_stop_on(None, False)
        except _LexError as err:
            raise InvalidArgument(f"failed to process {go_quote(word)}: {err}") from None
        return ProcessResult(result, words, sw.matched, sw.unmatched)

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        """ProcessWord: one word out (quotes removed, escapes applied, variables expanded; whitespace kept)."""
        return self.process(word, env).result

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """ProcessWords: split into words on unquoted whitespace after expansion (quotes keep a word whole;
        an expansion's own whitespace splits only where Docker's does)."""
        return self.process(word, env).words

    def process_word_with_matches(self, word: str, env: Mapping[str, str]) -> tuple[str, set[str]]:
        """As process_word, plus the names of the variables that were looked up AND found in env (the builder
        uses this for `[Warning] One or more build-args [X] were not consumed`)."""
        res = self.process(word, env)
        return res.result, res.matched
