"""Go's path.Match / filepath.Match (on Linux they agree) as a Python regex: `*` and `?` never match `/`,
`[...]` classes with `^` negation, `\\` escapes. Shared by the image list's reference filter and the builder's
COPY/ADD wildcards."""

from __future__ import annotations

import re


def compile_pattern(pattern: str) -> re.Pattern[str] | None:
    """The regex for a whole-string match of `pattern`; None for Go's ErrBadPattern (an unclosed class)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 2)
            if end < 0:
                return None
            body = pattern[i + 1 : end]
            neg = body.startswith("^")
            body = body[1:] if neg else body
            out.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z")
    except re.error:
        return None
