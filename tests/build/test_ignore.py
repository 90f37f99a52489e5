"""engine.build.ignore against moby/patternmatcher's own tests (patternmatcher_test.go, turned into tables),
ignorefile.ReadAll's rules, Docker's documented .dockerignore examples, and the context walk on real trees."""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import socketserver
import tarfile
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.build.ignore import IgnoreMatcher, apply, excluded_paths, go_clean, read_patterns
from engine.errors import InvalidArgument
from tests.testbed.cli import DOCKER
from tests.testbed.cli import docker as cli_docker

# patternmatcher_test.go TestMatches: (pattern, path, excluded)
MATCHES = [
    ("**", "file", True),
    ("**", "file/", True),
    ("**/", "file", True),
    ("**/", "file/", True),
    ("**", "/", True),
    ("**/", "/", True),
    ("**", "dir/file", True),
    ("**/", "dir/file", True),
    ("**", "dir/file/", True),
    ("**/", "dir/file/", True),
    ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True),
    ("dir/**", "dir/file", True),
    ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True),
    ("dir/**", "dir/dir2/file/", True),
    ("**/dir", "dir", True),
    ("**/dir", "dir/file", True),
    ("**/dir2/*", "dir/dir2/file", True),
    ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True),
    ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True),
    ("**file", "dir/file", True),
    ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True),
    ("**/file", "dir/dir/file", True),
    ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True),
    ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True),
    ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True),
    ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True),
    ("**/**/*.txt", "file.txt", True),
    ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True),
    ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False),
    ("a/*.txt", "a/file.txt", True),
    ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False),
    ("a[b-d]e", "ace", True),
    ("a[b-d]e", "aae", False),
    ("a[^b-d]e", "aze", True),
    (".*", ".foo", True),
    (".*", "foo", False),
    ("abc.def", "abcdef", False),
    ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False),
    ("abc?def", "abcZdef", True),
    ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True),
    ("**/foo/bar", "foo/bar", True),
    ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True),
    ("abc/**", "abc", False),
    ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True),
    ("**/.foo", ".foo", True),
    ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True),
    ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("a\\*b", "a*b", True),
]

MULTI = [
    (["**", "!util/docker/web"], "util/docker/web/foo", False),
    (["**", "!util/docker/web", "util/docker/web/foo"], "util/docker/web/foo", True),
    (["**", "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl"],
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    (["**", "!dist/*.whl"], "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", False),
    # the older tests of patternmatcher_test.go
    (["*"], "fileutils.go", True),
    (["*.go"], "fileutils.go", True),
    (["!fileutils.go", "*.go"], "fileutils.go", True),
    (["docs", "!docs/README.md"], "docs/README.md", False),
    (["docs/", "!docs/README.md"], "docs/README.md", False),
    (["docs/*", "!docs/README.md"], "docs/README.md", False),
    (["*.go", "!fileutils.go"], "fileutils.go", False),
    ([], "any/path/there", False),
]

CASES = [([pattern], path, excluded) for pattern, path, excluded in MATCHES] + MULTI


def _parent_chain(pm: IgnoreMatcher, path: str) -> list[bool] | None:
    """Feed MatchesUsingParentResults each parent directory in turn, as patternmatcher's test and the walk do."""
    parent = go_clean(path[: path.rfind("/") + 1]) if "/" in path else "."
    info: list[bool] | None = None
    if parent != ".":
        dirs = parent.split("/")
        for i in range(len(dirs)):
            _, info = pm.match_with_parents("/".join(dirs[: i + 1]), info)
    return info


@pytest.mark.parametrize(("patterns", "path", "excluded"), CASES)
def test_patternmatcher_table(patterns: list[str], path: str, excluded: bool) -> None:
    pm = IgnoreMatcher(patterns)
    assert pm.match_with_parents(path, None)[0] is excluded  # MatchesOrParentMatches, path as given
    assert pm.matches(path) is excluded  # the same on the cleaned path
    assert pm.match_with_parents(path, _parent_chain(pm, path))[0] is excluded  # MatchesUsingParentResults


# patternmatcher_test.go matchTests, Go's filepath.Match tests run through Matches: (pattern, path, excluded/ERR)
ERR = None
FILEPATH_MATCH = [
    ("abc", "abc", True),
    ("*", "abc", True),
    ("*c", "abc", True),
    ("a*", "a", True),
    ("a*", "abc", True),
    ("a*", "ab/c", True),
    ("a*/b", "abc/b", True),
    ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False),
    ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True),
    ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True),
    ("ab[b-d]", "abc", True),
    ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False),
    ("ab[^b-d]", "abc", False),
    ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True),
    ("a\\*b", "ab", False),
    ("a?b", "a☺b", True),
    ("a[^a]b", "a☺b", True),
    ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False),
    ("[a-ζ]*", "\u03b1", True),
    ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False),
    ("a*b", "a/b", False),
    ("[\\]a]", "]", True),
    ("[\\-]", "-", True),
    ("[x\\-]", "x", True),
    ("[x\\-]", "-", True),
    ("[x\\-]", "z", False),
    ("[\\-x]", "x", True),
    ("[\\-x]", "-", True),
    ("[\\-x]", "a", False),
    ("[]a]", "]", ERR),
    ("[-]", "-", ERR),
    ("[x-]", "x", ERR),
    ("[x-]", "-", ERR),
    ("[x-]", "z", ERR),
    ("[-x]", "x", ERR),
    ("[-x]", "-", ERR),
    ("[-x]", "a", ERR),
    ("\\", "a", ERR),
    ("[a-b-c]", "a", ERR),
    ("[", "a", ERR),
    ("[^", "a", ERR),
    ("[^bc", "a", ERR),
    ("a[", "a", ERR),
    ("a[", "ab", ERR),
    ("*x", "xxx", True),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), FILEPATH_MATCH)
def test_filepath_match_table(pattern: str, path: str, excluded: bool | None) -> None:
    if excluded is ERR:
        with pytest.raises(InvalidArgument) as info:
            IgnoreMatcher([pattern])
        assert info.value.message == "syntax error in pattern"
    else:
        assert IgnoreMatcher([pattern]).matches(path) is excluded


# patternmatcher_test.go compileTests: (pattern, match type, Go regexp)
COMPILE = [
    ("*", "regexp", "^[^/]*$"),
    ("file*", "regexp", "^file[^/]*$"),
    ("*file", "regexp", "^[^/]*file$"),
    ("a*/b", "regexp", "^a[^/]*/b$"),
    ("**", "suffix", ""),
    ("**/**", "regexp", "^(.*/)?.*$"),
    ("dir/**", "prefix", ""),
    ("**/dir", "suffix", ""),
    ("**/dir2/*", "regexp", "^(.*/)?dir2/[^/]*$"),
    ("**/dir2/**", "regexp", "^(.*/)?dir2/.*$"),
    ("**file", "suffix", ""),
    ("**/file*txt", "regexp", "^(.*/)?file[^/]*txt$"),
    ("**/**/*.txt", "regexp", "^(.*/)?(.*/)?[^/]*\\.txt$"),
    ("a[b-d]e", "regexp", "^a[b-d]e$"),
    (".*", "regexp", "^\\.[^/]*$"),
    ("abc.def", "exact", ""),
    ("abc?def", "regexp", "^abc[^/]def$"),
    ("**/foo/bar", "suffix", ""),
    ("a(b)c/def", "exact", ""),
    ("a.|)$(}+{bc", "exact", ""),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", "exact", ""),
]


@pytest.mark.parametrize(("pattern", "kind", "go_regex"), COMPILE)
def test_compile_table(pattern: str, kind: str, go_regex: str) -> None:
    (p,) = IgnoreMatcher([pattern]).patterns
    p.compile()
    assert (p.match_type, p.go_regex) == (kind, go_regex)


def test_malformed_regexp_fails_on_every_use() -> None:
    """patternmatcher's regression test for moby#52203: `[Local-Only]` passes filepath.Match but not regexp."""
    pm = IgnoreMatcher(["[Local-Only]/"])
    for _ in range(2):
        with pytest.raises(InvalidArgument, match=r"^syntax error in pattern$"):
            pm.matches("x")


def test_lone_exclamation_is_refused() -> None:
    with pytest.raises(InvalidArgument) as info:
        IgnoreMatcher(["!"])
    assert info.value.message == 'illegal exclusion pattern: "!"'


def test_patterns_are_trimmed_cleaned_and_empty_ones_dropped() -> None:
    pm = IgnoreMatcher(["docs", "config", "", "  !docs/README.md  ", "a/./b/../c/"])
    assert [repr(p) for p in pm.patterns] == ["docs", "config", "!docs/README.md", "a/c"]
    assert pm.has_exceptions
    assert not IgnoreMatcher(["docs"]).has_exceptions
    assert IgnoreMatcher(["a/./b/../c/"]).matches("a/c/d")


def test_case_sensitive_and_the_context_root_never_excluded() -> None:
    pm = IgnoreMatcher(["*.MD", "*"])
    assert IgnoreMatcher(["*.MD"]).matches("x.md") is False
    assert pm.matches(".") is False
    assert pm.matches("") is False


# Go regexp escapes a pattern can use, in Python spelling
@pytest.mark.parametrize(
    ("pattern", "path", "excluded"),
    [("v\\d", "v1", True), ("v\\d", "vx", False), ("[\\d]x", "7x", True), ("a\\.b", "a.b", True),
     ("[[:digit:]]z", "5z", True), ("[[:digit:]]z", "xz", False), ("a\\sb", "a b", True),
     # the regexp patternmatcher builds reads `[a*]` as the class [a[^/] repeated, then a literal ]
     ("[a*]", "a[]", True), ("[a*]", "a", False)],
)
def test_regexp_escapes(pattern: str, path: str, excluded: bool) -> None:
    assert IgnoreMatcher([pattern]).matches(path) is excluded


def test_unsupported_regexp_escape_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        IgnoreMatcher(["a\\é"]).matches("aé")


# --- ignorefile.ReadAll ---


def test_read_patterns_rules() -> None:
    data = (
        b"\xef\xbb\xbf# comment\n"
        b"  # not a comment: only column 1 starts one\n"
        b"\n"
        b"   \n"
        b"/foo/bar\r\n"
        b"  *.md  \n"
        b"!  /README.md\n"
        b"a/./b/../c/\n"
        b"/\n"
        b"!\n"
        b"dir//\n"
        b"last-without-newline"
    )
    assert read_patterns(data) == [
        "# not a comment: only column 1 starts one", "foo/bar", "*.md", "!README.md", "a/c", "/", "!", "dir",
        "last-without-newline",
    ]
    assert read_patterns("\ufeffx\n") == ["x"]
    assert read_patterns(b"") == []


def test_read_patterns_line_too_long() -> None:
    assert read_patterns(b"a" * 65535) == ["a" * 65535]
    with pytest.raises(InvalidArgument, match="token too long"):
        read_patterns(b"a" * 65536 + b"\n")


def test_go_clean() -> None:
    cases = {"": ".", ".": ".", "a/": "a", "//a//b/": "/a/b", "../a": "../a", "/../a": "/a", "a/../..": "..",
             "a/b/../../c": "c", "./!x": "!x"}
    assert {k: go_clean(k) for k in cases} == cases


# --- the context walk on real trees ---

TREE = [
    "Dockerfile", ".dockerignore", "README.md", "README-secret.md", "CHANGELOG.md", "main.go", "temp", "tempa",
    "tempab", "temp.txt", "somedir/temporary.txt", "somedir/temp/x", "somedir/subdir/temporary.txt",
    "somedir/keep.txt", "docs/README.md", "docs/guide.md", "docs/sub/deep.go", "a/b", "a/x/b", "a/x/y/b",
    "a/x/y/c",
]


def _tree_paths() -> set[str]:
    """TREE's files and the directories they make."""
    return {"/".join(rel.split("/")[: i + 1]) for rel in TREE for i in range(rel.count("/") + 1)}


def _make(root: Path, files: list[str]) -> None:
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)


def _all_paths(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


@pytest.mark.parametrize(
    ("dockerignore", "excluded"),
    [
        # docs.docker.com, "Build context: .dockerignore files"
        ("# comment\n*/temp*\n*/*/temp*\ntemp?\n",
         ["somedir/subdir/temporary.txt", "somedir/temp", "somedir/temp/x", "somedir/temporary.txt", "tempa"]),
        ("**/*.go\n", ["docs/sub/deep.go", "main.go"]),
        ("*.md\n!README.md\n", ["CHANGELOG.md", "README-secret.md"]),
        ("*.md\n!README*.md\nREADME-secret.md\n", ["CHANGELOG.md", "README-secret.md"]),
        ("*.md\nREADME-secret.md\n!README*.md\n", ["CHANGELOG.md"]),
        ("/somedir/temp\n", ["somedir/temp", "somedir/temp/x"]),
        ("a/**/b\n", ["a/b", "a/x/b", "a/x/y/b"]),
        ("docs\n", ["docs", "docs/README.md", "docs/guide.md", "docs/sub", "docs/sub/deep.go"]),
        # an exception inside an excluded directory: the directory is walked, the rest of it stays excluded
        ("docs\n!docs/README.md\n", ["docs", "docs/guide.md", "docs/sub", "docs/sub/deep.go"]),
        ("docs/\n!docs/sub/deep.go\n", ["docs", "docs/README.md", "docs/guide.md", "docs/sub"]),
        # Docker's walk opens an excluded directory only for an exception that starts with its path
        ("docs\n!**/README.md\n", ["docs", "docs/README.md", "docs/guide.md", "docs/sub", "docs/sub/deep.go"]),
        # "include only": `*` then exceptions; `docs` is walked for `!docs/*.md`, `docs/sub` is not
        ("*\n!main.go\n!docs/*.md\n", sorted(_tree_paths() - {"main.go", "docs/README.md", "docs/guide.md"})),
    ],
)
def test_excluded_paths_docker_examples(tmp_path: Path, dockerignore: str, excluded: list[str]) -> None:
    _make(tmp_path, TREE)
    assert excluded_paths(tmp_path, read_patterns(dockerignore)) == sorted(excluded)


def test_apply_removes_what_docker_would_not_send(tmp_path: Path) -> None:
    _make(tmp_path, TREE)
    patterns = read_patterns("docs\n!docs/README.md\n*/temp*\nDockerfile\n.dockerignore\n")
    expected_gone = set(excluded_paths(tmp_path, patterns)) - {"Dockerfile", ".dockerignore", "docs"}
    removed = apply(tmp_path, patterns, keep=["Dockerfile", ".dockerignore"])
    assert removed == len(expected_gone) == 6
    left = _all_paths(tmp_path)
    assert not left & expected_gone
    # kept: the files the builder reads first, and the re-included file with its (excluded) directory
    assert {"Dockerfile", ".dockerignore", "docs", "docs/README.md", "somedir/keep.txt"} <= left
    assert apply(tmp_path, patterns, keep=["Dockerfile", ".dockerignore"]) == 0


def test_apply_keeps_a_kept_path_inside_an_excluded_directory(tmp_path: Path) -> None:
    _make(tmp_path, ["build/Dockerfile", "build/junk", "build/sub/x", "src/a"])
    removed = apply(tmp_path, ["build"], keep=["build/Dockerfile"])
    assert _all_paths(tmp_path) == {"build", "build/Dockerfile", "src", "src/a"}
    assert removed == 3


def test_apply_removes_an_emptied_walked_directory(tmp_path: Path) -> None:
    _make(tmp_path, ["docs/a.txt", "docs/b.txt"])
    assert apply(tmp_path, ["docs", "!docs/README.md"]) == 3
    assert _all_paths(tmp_path) == set()


def test_symlinks_are_removed_as_links_never_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _make(outside, ["precious/data.txt", "secret.txt"])
    root = tmp_path / "ctx"
    _make(root, ["app/main.py", "logs/x.log"])
    (root / "link-dir").symlink_to(outside / "precious")  # a link to a directory outside the context
    (root / "app" / "secret").symlink_to(outside / "secret.txt")
    (root / "logs" / "up").symlink_to(outside)
    (root / "dangling").symlink_to(tmp_path / "nowhere")
    patterns = ["link-dir", "app/secret", "logs", "dangling", "**/data.txt"]
    # link-dir/data.txt is not in the context: the link is not walked into, so **/data.txt finds nothing there
    assert excluded_paths(root, patterns) == ["app/secret", "dangling", "link-dir", "logs", "logs/up", "logs/x.log"]
    assert apply(root, patterns) == 6
    assert _all_paths(root) == {"app", "app/main.py"}
    assert (outside / "precious" / "data.txt").read_text() == "precious/data.txt"
    assert (outside / "secret.txt").exists()


def test_a_symlink_to_a_directory_is_one_entry_to_patterns(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    _make(outside, ["x.tmp"])
    root = tmp_path / "ctx"
    _make(root, ["keep"])
    (root / "d").symlink_to(outside)
    assert excluded_paths(root, ["**/*.tmp"]) == []
    assert apply(root, ["d/*"]) == 0
    assert (outside / "x.tmp").exists()


def test_root_must_be_a_real_directory(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ValueError):
        apply(tmp_path / "link", ["*"])
    with pytest.raises(ValueError):
        excluded_paths(tmp_path / "missing", ["*"])


def test_bad_pattern_fails_the_walk(tmp_path: Path) -> None:
    _make(tmp_path, ["a"])
    with pytest.raises(InvalidArgument, match="syntax error in pattern"):
        excluded_paths(tmp_path, ["[Local-Only]"])
    assert (tmp_path / "a").exists()


# --- the docker 28 CLI's own context walk as the reference ---


class _ContextRecorder(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """Answers the docker CLI's /_ping and records the names in the context tar its legacy `docker build` posts
    (then fails the build), so the CLI's .dockerignore walk can be compared with ours. No engine involved."""

    daemon_threads = True
    names: list[str] | None = None


class _RecorderHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ContextRecorder

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(200)
        self.send_header("API-Version", "1.50")
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._reply(b"OK")

    def do_GET(self) -> None:
        self._reply(b"OK")

    def do_POST(self) -> None:
        data = bytearray()
        if self.headers.get("Transfer-Encoding") == "chunked":
            while (size := int(self.rfile.readline().strip(), 16)) != 0:
                data += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            data += self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with tarfile.open(fileobj=io.BytesIO(bytes(data))) as tar:
            self.server.names = sorted(m.name.rstrip("/") for m in tar)
        self._reply(json.dumps({"error": "recorded", "errorDetail": {"message": "recorded"}}).encode() + b"\n",
                    "application/json")


@pytest.fixture(scope="module")
def recorder() -> Iterator[tuple[_ContextRecorder, str]]:
    if not os.path.exists(DOCKER):
        pytest.skip("no docker CLI")
    sock_dir = Path(tempfile.mkdtemp(prefix="pst-ignore-"))
    server = _ContextRecorder(str(sock_dir / "api.sock"), _RecorderHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server, f"unix://{sock_dir / 'api.sock'}"
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(sock_dir, ignore_errors=True)


CLI_TREE = [*TREE, "node_modules/m/index.js", "b/node_modules/README.md", "k[1]", "a b/c", ".hidden/x"]


@pytest.mark.parametrize(
    "dockerignore",
    [
        "docs\n!docs/README.md\n",
        "docs\n!**/README.md\n",
        "*\n!main.go\n!docs/*.md\n",
        "**\n!a/x\na/x/y/c\n",
        "**/node_modules\n*/*\n.*\n!b\n",
        "a/**/b\n!a/x/**\n",
        "Dockerfile\n.dockerignore\n*.md\n!README*.md\nREADME-secret.md\n",
        "k\\[1\\]\n[a-c]\n!a/x/y\n",
        "a b\n/somedir/temp\n./temp?\nsomedir/../tempab\n",
        "*/temp*\n*/*/temp*\ntemp?\n!somedir/temp/x\n",
        "\ufeff# c\n  docs/  \n!docs/sub/\n",
        "a[\n",
        "!\n",
    ],
)
def test_walk_matches_the_docker_cli(recorder: tuple[_ContextRecorder, str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch, dockerignore: str) -> None:
    server, host = recorder
    ctx = tmp_path / "ctx"
    _make(ctx, CLI_TREE)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / ".dockerignore").write_text(dockerignore)
    (ctx / "docs" / "out").symlink_to(tmp_path)
    work = tmp_path / "work"
    shutil.copytree(ctx, work, symlinks=True)

    server.names = None
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")  # the legacy builder: the CLI walks the context itself
    out = cli_docker(host, tmp_path / "cli", "build", str(ctx), timeout=60)
    try:
        apply(work, read_patterns((ctx / ".dockerignore").read_bytes()), keep=["Dockerfile", ".dockerignore"])
    except InvalidArgument as err:
        assert server.names is None
        assert f"error checking context: {err.message}" in out.stderr
        return
    assert server.names is not None, out.stderr
    sent = set(server.names)
    left = {p: (work / p).is_dir() and not (work / p).is_symlink() for p in _all_paths(work)}
    # every non-directory the CLI sent is left, and nothing else; a directory is left when the CLI sent it or
    # something below it (an excluded directory opened for an exception is not itself in the tar)
    assert {p for p, is_dir in left.items() if not is_dir} == {p for p in sent if not left.get(p)}
    below = {"/".join(p.split("/")[:i]) for p in sent for i in range(1, p.count("/") + 1)}
    assert {p for p, is_dir in left.items() if is_dir} == {p for p in sent if left.get(p)} | below
