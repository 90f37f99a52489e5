""".dockerignore: reading it (moby/patternmatcher's ignorefile.ReadAll) and applying it to a build context as
`docker build` does (patternmatcher v0.6.0, which Docker 28.5 vendors, and the context walk of go-archive's
TarWithOptions).

Why not docker-py's port (`docker.utils.build.PatternMatcher`, `exclude_paths`): it is not faithful. It lowercases
both pattern and path (Docker matches case-sensitively), takes `[!a]` as negation (Go's syntax is `[^a]`) and has no
`\\` escapes, uses the deprecated single-parent-directory rule (`Matches`) instead of `MatchesOrParentMatches`,
appends `!.dockerignore` and `!Dockerfile` to every pattern list, never reports a malformed pattern or a lone `!`, and
its "an exception may match below this directory" test lacks Docker's trailing separator.

The rules kept here, Docker's:
- A pattern is Go-`filepath.Clean`ed; a leading `!` makes it an exception; the last pattern that matches decides.
- A pattern matches a path or any of its parent directories (`docs` excludes `docs/a/b`).
- `*` and `?` never cross `/`, `**` crosses any number of directories (zero included), `[a-z]`/`[^a]` classes and
  `\\x` escapes work as in Go's regexp (patternmatcher matches through a regexp it builds from the pattern; a pattern
  `filepath.Match` finds malformed is refused up front with "syntax error in pattern"). Regexp escapes beyond
  `\\<punctuation>`, `\\d \\s \\w`(and negations), `\\a \\f \\t \\n \\r \\v \\b \\B \\A \\z` (Go also has `\\x41`,
  octal, `\\pL`, `\\Q..\\E`) are refused here with the same error rather than emulated.
- The context walk skips an excluded directory whole unless an exception pattern, followed by `/`, starts with the
  directory's path followed by `/` (so `!dir/keep` opens `dir`, while `!**/keep` opens nothing: Docker's rule).
  Symlinks are never followed.

Note for the builder: dockerd (builder/remotecontext) reads the Dockerfile and .dockerignore first and then deletes
them from the context when .dockerignore excludes them (`IgnoreMatcher.matches`), so `COPY . /` never carries them.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from engine.errors import InvalidArgument

ERR_BAD_PATTERN = "syntax error in pattern"  # Go's filepath.ErrBadPattern

# Go's unicode.IsSpace, which strings.TrimSpace uses (str.strip also strips U+001C..U+001F)
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029" \
    "\u202f\u205f\u3000"
# regexp metacharacters that mean nothing to filepath.Match, escaped by patternmatcher (its escapeBytes)
_SHOULD_ESCAPE = frozenset(".+()|{}$")
_MAX_LINE = 64 * 1024  # bufio.Scanner's MaxScanTokenSize
_UTF8_BOM = b"\xef\xbb\xbf"


def _trim_space(s: str) -> str:
    return s.strip(_GO_SPACE)


def go_clean(path: str) -> str:
    """Go's filepath.Clean on a '/'-separated path: no empty, `.` or resolvable `..` elements, "." when empty."""
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def _go_dir(path: str) -> str:
    """Go's filepath.Dir."""
    return go_clean(path[: path.rfind("/") + 1])


def read_patterns(data: bytes | str) -> list[str]:
    """ReadAll: one pattern a line, '#' comments, whitespace trimmed, empty lines dropped, a leading '/' dropped,
    paths cleaned (filepath.Clean) keeping a leading '!' for exceptions; UTF-8 BOM stripped."""
    raw = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
    if raw.startswith(_UTF8_BOM):
        raw = raw[len(_UTF8_BOM) :]
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # bufio.ScanLines yields no empty token after a final newline
    patterns: list[str] = []
    for line in lines:
        if len(line) >= _MAX_LINE:
            raise InvalidArgument("bufio.Scanner: token too long")
        if line.endswith(b"\r"):
            line = line[:-1]
        pattern = line.decode("utf-8", "surrogateescape")
        # comments are recognised before trimming: only a '#' in column 1 starts one
        if pattern.startswith("#"):
            continue
        pattern = _trim_space(pattern)
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = _trim_space(pattern[1:])
        if pattern:
            pattern = go_clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


# --- filepath.Match's syntax check (Go 1.24: every chunk of the pattern is checked, matched or not) ---


def _scan_chunk(pattern: str) -> tuple[str, str]:
    """filepath's scanChunk: leading stars dropped, then the chunk up to the next unbracketed '*'."""
    pattern = pattern.lstrip("*")
    in_range = False
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if i + 1 < len(pattern):
                i += 1
        elif ch == "[":
            in_range = True
        elif ch == "]":
            in_range = False
        elif ch == "*" and not in_range:
            break
        i += 1
    return pattern[:i], pattern[i:]


def _get_esc_ok(chunk: str, i: int) -> int | None:
    """filepath's getEsc: the index after one (possibly escaped) range character, or None when malformed."""
    if i >= len(chunk) or chunk[i] in "-]":
        return None
    if chunk[i] == "\\":
        i += 1
        if i >= len(chunk):
            return None
    i += 1
    return i if i < len(chunk) else None


def _chunk_ok(chunk: str) -> bool:
    i = 0
    while i < len(chunk):
        ch = chunk[i]
        if ch == "[":
            i += 1
            if i < len(chunk) and chunk[i] == "^":
                i += 1
            ranges = 0
            while True:
                if i < len(chunk) and chunk[i] == "]" and ranges > 0:
                    i += 1
                    break
                nxt = _get_esc_ok(chunk, i)
                if nxt is None:
                    return False
                i = nxt
                if chunk[i] == "-":
                    nxt = _get_esc_ok(chunk, i + 1)
                    if nxt is None:
                        return False
                    i = nxt
                ranges += 1
        elif ch == "\\":
            if i + 1 >= len(chunk):
                return False
            i += 2
        else:
            i += 1
    return True


def match_syntax_ok(pattern: str) -> bool:
    """Whether Go's filepath.Match accepts `pattern` (patternmatcher.New calls Match(pattern, ".") for this)."""
    rest = pattern
    while rest:
        chunk, rest = _scan_chunk(rest)
        if not _chunk_ok(chunk):
            return False
    return True


# --- patternmatcher's Pattern ---

_EXACT, _PREFIX, _SUFFIX, _REGEXP = "exact", "prefix", "suffix", "regexp"

# Go RE2 escapes with a Python spelling; other escaped letters/digits are refused (see the module docstring)
_ESCAPES_OUTSIDE = {"a": r"\a", "f": r"\f", "t": r"\t", "n": r"\n", "r": r"\r", "v": r"\v", "d": "[0-9]",
                    "D": "[^0-9]", "s": r"[\t\n\f\r ]", "S": r"[^\t\n\f\r ]", "w": "[0-9A-Za-z_]",
                    "W": "[^0-9A-Za-z_]", "b": r"\b", "B": r"\B", "A": r"\A", "z": r"\Z"}
_ESCAPES_INSIDE = {"a": r"\a", "f": r"\f", "t": r"\t", "n": r"\n", "r": r"\r", "v": r"\v", "d": "0-9",
                   "s": r"\t\n\f\r ", "w": "0-9A-Za-z_", "D": r"\D", "S": r"\S", "W": r"\W"}
_POSIX_CLASSES = {"alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": r"\x00-\x7f", "blank": r"\t ",
                  "cntrl": r"\x00-\x1f\x7f", "digit": "0-9", "graph": r"!-~", "lower": "a-z", "print": r" -~",
                  "punct": r"!-/:-@\[-`{-~", "space": r"\t\n\v\f\r ", "upper": "A-Z", "word": "0-9A-Za-z_",
                  "xdigit": "0-9A-Fa-f"}


class _BadPattern(Exception):
    pass


def _go_regex_to_python(go: str) -> str:
    """Spell the RE2 expression patternmatcher builds in Python's re syntax (they differ in escapes and classes)."""
    out: list[str] = []
    in_class = False
    class_start = 0
    i = 0
    while i < len(go):
        ch = go[i]
        if ch == "\\":
            if i + 1 >= len(go):
                raise _BadPattern
            nxt = go[i + 1]
            i += 2
            if nxt.isascii() and not nxt.isalnum():
                out.append("\\" + nxt)
                continue
            table = _ESCAPES_INSIDE if in_class else _ESCAPES_OUTSIDE
            if nxt not in table:
                raise _BadPattern
            out.append(table[nxt])
            continue
        if not in_class:
            if ch == "[":
                in_class = True
                out.append("[")
                i += 1
                if go.startswith("^", i):
                    out.append("^")
                    i += 1
                class_start = i
                continue
            out.append(ch)
            i += 1
            continue
        # inside a class
        if ch == "]" and i > class_start:
            in_class = False
            out.append("]")
        elif ch == "[" and go.startswith("[:", i):
            end = go.find(":]", i + 2)
            negate = go.startswith("^", i + 2)
            name = go[i + (3 if negate else 2) : end] if end > 0 else ""
            if end < 0 or name not in _POSIX_CLASSES or negate:
                raise _BadPattern
            out.append(_POSIX_CLASSES[name])
            i = end + 2
            continue
        elif ch in "[]&~|":
            out.append("\\" + ch)  # literal in RE2 classes; Python warns about (or will give meaning to) them
        else:
            out.append(ch)
        i += 1
    if in_class:
        raise _BadPattern
    return "".join(out)


class _Pattern:
    """One cleaned pattern, compiled on first use as patternmatcher does."""

    def __init__(self, cleaned: str, exclusion: bool) -> None:
        self.cleaned = cleaned
        self.exclusion = exclusion
        self.dirs = cleaned.split("/")
        self.match_type: str | None = None
        self.go_regex = ""
        self.regex: re.Pattern[str] | None = None

    def __repr__(self) -> str:
        return ("!" if self.exclusion else "") + self.cleaned

    def compile(self) -> None:
        reg = ["^"]
        kind = _EXACT
        p = self.cleaned
        i = n = 0
        while i < len(p):
            ch = p[i]
            i += 1
            if ch == "*":
                if p.startswith("*", i):
                    i += 1
                    if p.startswith("/", i):
                        i += 1  # "**/" is "**"
                    if i >= len(p):
                        if kind == _EXACT:
                            kind = _PREFIX
                        else:
                            reg.append(".*")
                            kind = _REGEXP
                    else:
                        reg.append("(.*/)?")
                        kind = _REGEXP
                    if n == 0:
                        kind = _SUFFIX
                else:
                    reg.append("[^/]*")
                    kind = _REGEXP
            elif ch == "?":
                reg.append("[^/]")
                kind = _REGEXP
            elif ch in _SHOULD_ESCAPE:
                reg.append("\\" + ch)
            elif ch == "\\":
                if i < len(p):
                    reg.append("\\" + p[i])
                    i += 1
                    kind = _REGEXP
                else:
                    reg.append("\\")
            elif ch in "[]":
                reg.append(ch)
                kind = _REGEXP
            else:
                reg.append(ch)
            n += 1
        if kind == _REGEXP:
            reg.append("$")
            self.go_regex = "".join(reg)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.regex = re.compile(_go_regex_to_python(self.go_regex), re.ASCII | re.DOTALL)
            except (re.error, _BadPattern):
                raise InvalidArgument(ERR_BAD_PATTERN) from None  # and stays uncompiled: every use fails alike
        self.match_type = kind

    def match(self, path: str) -> bool:
        if self.match_type is None:
            self.compile()
        if self.match_type == _EXACT:
            return path == self.cleaned
        if self.match_type == _PREFIX:
            return path.startswith(self.cleaned[:-2])
        if self.match_type == _SUFFIX:
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]  # "**/foo" matches "foo"
        assert self.regex is not None
        return self.regex.match(path) is not None


class IgnoreMatcher:
    """patternmatcher.PatternMatcher over a .dockerignore's patterns (as read_patterns gives them)."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        self._has_exceptions = False
        for raw in patterns:
            p = _trim_space(raw)
            if not p:
                continue
            p = go_clean(p)
            exclusion = p.startswith("!")
            if exclusion:
                if len(p) == 1:
                    raise InvalidArgument('illegal exclusion pattern: "!"')
                p = p[1:]
                self._has_exceptions = True
            if not match_syntax_ok(p):
                raise InvalidArgument(ERR_BAD_PATTERN)
            self.patterns.append(_Pattern(p, exclusion))

    @property
    def has_exceptions(self) -> bool:
        return self._has_exceptions

    def matches(self, rel_path: str) -> bool:
        """True when the context path (relative, '/'-separated, no leading './') is excluded. Last matching
        pattern wins; '!' re-includes; a pattern also matches everything below a matching directory
        (patternmatcher's parent-path rule); '**' matches any number of directories; '?', '*', '[a-z]',
        '\\' escapes as in Go's filepath.Match."""
        path = go_clean(rel_path)
        if path == ".":
            return False  # "don't let them exclude everything"
        return self.match_with_parents(path, None)[0]

    def match_with_parents(self, path: str, parent: list[bool] | None) -> tuple[bool, list[bool]]:
        """MatchesUsingParentResults: whether `path` is excluded, given which patterns matched its parent
        directory (None: not known, so the parent directories are matched here), and which patterns matched it
        (to pass on to its children)."""
        matched = False
        info = [False] * len(self.patterns)
        parent_dirs: list[str] | None = None
        for i, pattern in enumerate(self.patterns):
            match = parent[i] if parent else False
            if not match:
                # an inclusion cannot change an excluded path, an exception cannot change a kept one
                if pattern.exclusion != matched:
                    continue
                match = pattern.match(path)
                if not match and not parent:
                    if parent_dirs is None:
                        parent_path = _go_dir(path)
                        parent_dirs = [] if parent_path == "." else parent_path.split("/")
                    for j in range(len(parent_dirs)):
                        if pattern.match("/".join(parent_dirs[: j + 1])):
                            match = True
                            break
            info[i] = match
            if match:
                matched = not pattern.exclusion
        return matched, info

    def may_reinclude_below(self, dir_path: str) -> bool:
        """The context walk's test for walking into an excluded directory: an exception pattern that, followed by
        '/', starts with `dir_path` + '/'."""
        prefix = dir_path + "/"
        return any(p.exclusion and (p.cleaned + "/").startswith(prefix) for p in self.patterns)


@dataclass
class _Entry:
    rel: str
    path: str
    is_dir: bool
    excluded: bool
    walked: bool  # a directory whose children are looked at one by one


def _check_root(root: Path) -> str:
    if root.is_symlink() or not root.is_dir():
        raise ValueError(f"build context root {root} is not a directory")
    return os.fspath(root)


def _walk(root: str, matcher: IgnoreMatcher, keep: frozenset[str] = frozenset()) -> Iterator[_Entry]:
    """The context walk, in lexical pre-order. `keep` paths are never excluded and their directories are walked."""
    keep_dirs = {k[:i] for k in keep for i, ch in enumerate(k) if ch == "/"}
    stack: list[tuple[str, str, list[bool] | None]] = [(root, "", None)]
    while stack:
        abs_dir, rel_dir, info = stack.pop()
        try:
            with os.scandir(abs_dir) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue  # as go-archive does: an unreadable directory is left out, not fatal
        children: list[tuple[str, str, list[bool] | None]] = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            excluded, child_info = matcher.match_with_parents(rel, info)
            if rel in keep:
                excluded = False
            walked = is_dir and (
                not excluded
                or (matcher.has_exceptions and matcher.may_reinclude_below(rel))
                or rel in keep_dirs
            )
            yield _Entry(rel, entry.path, is_dir, excluded, walked)
            if walked:
                children.append((entry.path, rel, child_info))
        stack.extend(reversed(children))


def _tree(path: str) -> Iterator[tuple[str, bool]]:
    """Everything below a directory (not following symlinks), children before their directory: (path, is_dir)."""
    stack: list[tuple[str, bool]] = [(path, False)]
    while stack:
        current, listed = stack.pop()
        if listed:
            yield current, True
            continue
        stack.append((current, True))
        with os.scandir(current) as it:
            entries = list(it)  # listed before the caller removes anything from the directory
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, False))
            else:
                yield entry.path, False


def excluded_paths(root: Path, patterns: list[str]) -> list[str]:
    """Every path under `root` (an extracted build context) that the patterns exclude, relative, '/'-separated,
    as `docker build`'s context walk decides it: an excluded directory is skipped whole unless an exception
    pattern could match something below it (then it is walked and its non-excluded children kept). Never follows
    symlinks. Sorted."""
    base = _check_root(Path(root))
    out: list[str] = []
    for entry in _walk(base, IgnoreMatcher(patterns)):
        if entry.excluded:
            out.append(entry.rel)
            if entry.is_dir and not entry.walked:
                for path, _ in _tree(entry.path):
                    if path != entry.path:
                        out.append(os.path.relpath(path, base).replace(os.sep, "/"))
    return sorted(out)


def apply(root: Path, patterns: list[str], keep: Iterable[str] = ()) -> int:
    """Deletes the excluded paths from `root` in place (never following symlinks, never leaving root), except the
    relative paths in `keep` (the builder passes the Dockerfile and .dockerignore: it reads them first); a
    directory that still holds a kept or re-included path is kept. Returns the number of entries removed.

    `keep` works as the docker CLI's TrimBuildFilesFromExcludes: each kept path the patterns exclude is added as an
    exception pattern (`!Dockerfile`), so the rest of its directory is decided as the CLI's walk decides it."""
    base = _check_root(Path(root))
    kept = frozenset(go_clean(k) for k in keep)
    first = IgnoreMatcher(patterns)
    extra = [f"!{k}" for k in sorted(kept) if first.matches(k)]
    matcher = IgnoreMatcher(patterns + extra) if extra else first
    removed = 0
    walked_excluded: list[str] = []
    for entry in _walk(base, matcher, kept):
        if not entry.excluded:
            continue
        if entry.walked:
            walked_excluded.append(entry.path)  # removed below if nothing in it survives
        elif entry.is_dir:
            for path, is_dir in _tree(entry.path):
                if is_dir:
                    os.rmdir(path)
                else:
                    os.unlink(path)
                removed += 1
        else:
            os.unlink(entry.path)
            removed += 1
    for path in reversed(walked_excluded):  # the walk yields a directory before anything below it
        try:
            os.rmdir(path)
        except OSError:
            continue  # it still holds a kept or re-included path
        removed += 1
    return removed

