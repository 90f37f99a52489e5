"""`docker build` on portside's classic builder, through the real docker CLI (28 and 20.10), docker-py and
docker-compose: every instruction, the cache, multi-stage builds, .dockerignore, failures and what they leave."""

from __future__ import annotations

import http.server
import io
import json
import os
import socket
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.api.conftest import PortsideDaemon

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DOCKER_2010 = "/usr/bin/docker"


def _tag() -> str:
    return f"pst-build-{uuid.uuid4().hex[:8]}"


def build(daemon: PortsideDaemon, ctx: Path, *args: str, input: str | None = None,
          cli: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = {"cli": cli} if cli else {}
    env_args = ["build", *args, str(ctx) if not input else "-"]
    old = os.environ.get("DOCKER_BUILDKIT")
    os.environ["DOCKER_BUILDKIT"] = "0"
    try:
        return daemon.docker(*env_args, input=input, **extra)
    finally:
        if old is None:
            os.environ.pop("DOCKER_BUILDKIT", None)
        else:
            os.environ["DOCKER_BUILDKIT"] = old


def write(ctx: Path, files: dict[str, str | bytes]) -> Path:
    for name, data in files.items():
        p = ctx / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            p.write_bytes(data)
        else:
            p.write_text(data)
    return ctx


def image_id(daemon: PortsideDaemon, ref: str) -> str:
    out = daemon.docker("inspect", "-f", "{{.Id}}", ref)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def containers(daemon: PortsideDaemon) -> set[str]:
    return set(daemon.docker("ps", "-aq", "--no-trunc").stdout.split())


def mounts_below(path: Path) -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(path))]


@pytest.fixture
def cleanup(daemon: PortsideDaemon) -> Iterator[list[str]]:
    """Images (tags) a test made; removed afterwards with the containers the failed steps kept."""
    made: list[str] = []
    before = containers(daemon)
    yield made
    for cid in containers(daemon) - before:
        daemon.docker("rm", "-f", cid)
    for ref in made:
        daemon.docker("rmi", "-f", ref)


BASIC = """\
FROM busybox
ARG V=1
ENV A=hello B="x y"
LABEL l1=v1 "l 2"="two words"
WORKDIR /app
COPY hello.txt ./
COPY dir /app/dir/
RUN echo "in run $A $V" && cat hello.txt && ls dir > /app/list
EXPOSE 8080 53/udp
USER 1000:1000
VOLUME /data
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD true
ENTRYPOINT ["sh", "-c"]
CMD ["cat /app/list; id -u"]
"""


def test_every_step_runs_streams_and_caches(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                            cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    ctx = write(tmp_path, {"Dockerfile": BASIC, "hello.txt": "hi\n", "dir/one": "1", "dir/two": "2"})
    out = build(daemon, ctx, "-t", tag)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "Step 1/15 : FROM busybox" in lines
    assert "Step 8/15 : RUN echo \"in run $A $V\" && cat hello.txt && ls dir > /app/list" in lines
    assert "in run hello 1" in lines and "hi" in lines  # the RUN step's own output, streamed
    assert any(line.startswith(" ---> Running in ") for line in lines)
    assert any(line.startswith(" ---> Removed intermediate container ") for line in lines)
    built = next(line for line in lines if line.startswith("Successfully built "))
    assert f"Successfully tagged {tag}:latest" in lines
    first_id = image_id(daemon, tag)
    assert first_id.removeprefix("sha256:").startswith(built.split()[-1])

    run = daemon.docker("run", "--rm", tag)
    assert (run.returncode, run.stdout) == (0, "one\ntwo\n1000\n"), run.stderr
    cfg = json.loads(daemon.docker("inspect", "-f", "{{json .Config}}", tag).stdout)
    assert cfg["Env"][-2:] == ["A=hello", "B=x y"]
    assert cfg["Labels"] == {"l1": "v1", "l 2": "two words"}
    assert cfg["WorkingDir"] == "/app" and cfg["User"] == "1000:1000" and cfg["StopSignal"] == "SIGINT"
    assert set(cfg["ExposedPorts"]) == {"8080/tcp", "53/udp"} and set(cfg["Volumes"]) == {"/data"}
    assert cfg["Entrypoint"] == ["sh", "-c"] and cfg["Cmd"] == ["cat /app/list; id -u"]
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000, "Retries": 2}

    hist = daemon.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}|{{.Size}}", tag).stdout.splitlines()
    assert hist[0].startswith('/bin/sh -c #(nop)  CMD ["cat /app/list; id -u"]|0B')
    assert "|1 V=1 /bin/sh -c echo \"in run $A $V\" && cat hello.txt && ls dir > /app/list|8B" in hist
    assert any(h.startswith("/bin/sh -c #(nop) COPY file:") and " in /app/ |3B" in h for h in hist), hist
    assert any(h.startswith("/bin/sh -c #(nop) COPY dir:") and " in /app/dir/ |2B" in h for h in hist), hist
    assert "/bin/sh -c #(nop)  ENV A=hello B=x y|0B" in hist

    # fully cached: every step a hit, the very same image
    again = build(daemon, ctx, "-t", tag)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count(" ---> Using cache") == 14, again.stdout
    assert "Running in" not in again.stdout
    assert image_id(daemon, tag) == first_id

    # a new mtime alone keeps the cache; new contents miss it from that step on
    os.utime(ctx / "hello.txt", (time.time() + 100, time.time() + 100))
    assert image_id(daemon, tag) == first_id
    touched = build(daemon, ctx, "-t", tag)
    assert touched.stdout.count(" ---> Using cache") == 14 and image_id(daemon, tag) == first_id
    (ctx / "hello.txt").write_text("HI\n")
    changed = build(daemon, ctx, "-t", tag)
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.count(" ---> Using cache") == 4, changed.stdout  # ARG ENV LABEL WORKDIR
    assert image_id(daemon, tag) != first_id
    # --no-cache: nothing from the cache
    nocache = build(daemon, ctx, "--no-cache", "-q", "-t", tag)
    assert nocache.returncode == 0 and nocache.stdout.strip().startswith("sha256:"), nocache.stderr
    assert nocache.stdout.strip() == image_id(daemon, tag)


def test_a_failing_run_gives_its_exit_code_and_leaves_no_tag(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                           cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox\nRUN echo partial > /f && exit 3\nRUN echo never\n"})
    before = containers(daemon)
    out = build(daemon, ctx, "-t", tag)
    assert out.returncode == 3, (out.stdout, out.stderr)
    assert "The command '/bin/sh -c echo partial > /f && exit 3' returned a non-zero code: 3" in out.stderr
    assert "never" not in out.stdout
    assert daemon.docker("inspect", tag).returncode != 0  # no tag
    kept = containers(daemon) - before
    assert len(kept) == 1  # --rm (the default) keeps the failed step's container, as Docker does
    st = daemon.docker("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", kept.pop()).stdout.split()
    assert st == ["exited", "3"]
    # --force-rm: nothing kept
    before = containers(daemon)
    out = build(daemon, ctx, "--force-rm", "-t", tag)
    assert out.returncode == 3 and containers(daemon) == before
    assert mounts_below(daemon.data_root / "build") == [] and list((daemon.data_root / "build").iterdir()) == []


@pytest.mark.parametrize("dockerfile,message", [
    ("FROM busybox\nFROB x\n", "dockerfile parse error on line 2: unknown instruction: FROB"),
    ("FROM busybox\nCOPY missing.txt /x\n", "missing.txt"),
    ("FROM busybox\nCOPY a b c\n", "When using COPY with more than one source file, the destination must be a "
                                   "directory and end with a /"),
    ("FROM busybox\nRUN --mount=type=cache,target=/x true\n", "the --mount option requires BuildKit"),
    ("FROM busybox AS 1bad\n", "invalid name for build stage"),
    ("FROM busybox\nUSER\n", "USER requires exactly one argument"),
    ("FROM busybox\nEXPOSE 80/ftp\n", "invalid proto: ftp"),
    ("FROM pst-no-such-image-anywhere\n", "pst-no-such-image-anywhere"),
    ("", "cannot be empty"),
    ("FROM busybox\nRUN <<EOF\necho hi\nEOF\n", "the heredoc syntax of RUN requires BuildKit"),
    ("FROM busybox\nCOPY --chmod=u+x a /a\n", "invalid chmod parameter: u+x"),
])
def test_bad_dockerfiles_fail_in_dockers_words(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                               dockerfile: str, message: str) -> None:
    ctx = write(tmp_path, {"Dockerfile": dockerfile, "a": "a", "b": "b"})
    before = containers(daemon)
    out = build(daemon, ctx)
    assert out.returncode != 0 and message in out.stderr, (out.stdout, out.stderr)
    assert containers(daemon) == before


def test_target_stage_missing(daemon: PortsideDaemon, busybox: str, tmp_path: Path) -> None:
    ctx = write(tmp_path, {"Dockerfile": "FROM busybox AS one\n"})
    out = build(daemon, ctx, "--target", "two")
    assert out.returncode == 1 and 'target stage "two" could not be found' in out.stderr, out.stderr


def test_multi_stage_copy_from_target_and_skipped_stages(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                         cleanup: list[str]) -> None:
    tag, tag2 = _tag(), _tag()
    cleanup.extend([tag, tag2])
    ctx = write(tmp_path, {"Dockerfile": """\
ARG BASE=busybox
FROM ${BASE} AS builder
RUN mkdir /out && echo built > /out/artifact && chown 123:45 /out/artifact
FROM builder AS unused
RUN exit 9
FROM ${BASE}
COPY --from=builder /out/artifact /artifact
COPY --from=0 --chown=7:8 --chmod=750 /out/artifact /owned
RUN ls -ln /artifact /owned | awk '{print $1" "$3":"$4}'
FROM busybox AS second
COPY --from=2 /artifact /again
"""})
    out = build(daemon, ctx, "-t", tag)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "exit 9" not in out.stdout  # the unused stage is never built
    assert "123:45" in out.stdout and "-rwxr-x--- 7:8" in out.stdout  # --from keeps ownership unless --chown
    assert daemon.docker("run", "--rm", tag, "cat", "/again").stdout == "built\n"
    # --target stops at a stage: the stage after it is not built
    out = build(daemon, ctx, "--target", "builder", "-t", tag2)
    assert out.returncode == 0, out.stderr
    assert daemon.docker("run", "--rm", tag2, "cat", "/out/artifact").stdout == "built\n"
    assert daemon.docker("run", "--rm", tag2, "ls", "/artifact").returncode != 0


def test_dockerignore_is_applied_to_the_context(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    ctx = write(tmp_path, {
        "Dockerfile": "FROM busybox\nCOPY . /ctx/\nRUN cd /ctx && find . | sort\n",
        ".dockerignore": "# comment\n*.md\n!README.md\nsecret/\n**/*.tmp\nDockerfile\n",
        "README.md": "r", "CHANGES.md": "c", "secret/key": "k", "src/a.go": "a", "src/deep/x.tmp": "t", "keep": "k",
    })
    out = build(daemon, ctx, "-t", tag)
    assert out.returncode == 0, out.stderr
    found = set(daemon.docker("run", "--rm", tag, "find", "/ctx", "-type", "f").stdout.split())
    assert found == {"/ctx/README.md", "/ctx/.dockerignore", "/ctx/src/a.go", "/ctx/keep"}, found


def test_build_args_scoping_and_the_unused_warning(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                   cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    ctx = write(tmp_path, {"Dockerfile": """\
ARG GLOBAL=g0
FROM busybox
ARG GLOBAL
ARG LOCAL=l0
ENV FROM_ENV=${LOCAL:-none}-${UNSET:+set}-${GLOBAL}
RUN echo "run: $GLOBAL $LOCAL $FROM_ENV $HTTP_PROXY" > /args
"""})
    out = build(daemon, ctx, "--build-arg", "LOCAL=l1", "--build-arg", "NOPE=x", "--build-arg",
                "HTTP_PROXY=http://127.0.0.1:9", "-t", tag)
    assert out.returncode == 0, out.stderr
    assert "[Warning] One or more build-args [NOPE] were not consumed" in out.stdout
    assert daemon.docker("run", "--rm", tag, "cat", "/args").stdout == "run: g0 l1 l1--g0 http://127.0.0.1:9\n"
    env = json.loads(daemon.docker("inspect", "-f", "{{json .Config.Env}}", tag).stdout)
    assert "FROM_ENV=l1--g0" in env and not any(e.startswith(("LOCAL=", "HTTP_PROXY=")) for e in env)
    # the proxy arg is not part of the cache key or the history (Docker's builtin args)
    hist = daemon.docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag).stdout
    assert "|2 GLOBAL=g0 LOCAL=l1 /bin/sh -c echo" in hist and "HTTP_PROXY=" not in hist


def test_add_unpacks_local_archives_and_downloads_urls(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                       cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    payload = tmp_path / "payload"
    payload.mkdir()
    (payload / "inside.txt").write_text("inside\n")
    for mode, name in (("w:gz", "a.tar.gz"), ("w:xz", "b.tar.xz"), ("w:bz2", "c.tar.bz2")):
        with tarfile.open(tmp_path / name, mode) as t:
            t.add(payload / "inside.txt", arcname=f"{name}.d/inside.txt")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"downloaded\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/files/remote.txt"
        write(tmp_path, {"Dockerfile": f"FROM busybox\nADD a.tar.gz b.tar.xz c.tar.bz2 /x/\nADD {url} /dl/\n"
                                       "ADD a.tar.gz /plain-copy/a.tar.gz.not-unpacked-as-url\n"})
        out = build(daemon, tmp_path, "--network", "host", "-t", tag)
        assert out.returncode == 0, out.stderr
    finally:
        srv.shutdown()
    ls = daemon.docker("run", "--rm", tag, "sh", "-c",
                       "cat /x/*.d/inside.txt; stat -c '%a %Y' /dl/remote.txt; cat /dl/remote.txt").stdout
    assert ls == "inside\ninside\ninside\n600 1445412480\ndownloaded\n", ls


def test_stdin_dockerfile_a_named_dockerfile_and_the_2010_cli(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                              cleanup: list[str]) -> None:
    tag, tag2 = _tag(), _tag()
    cleanup.extend([tag, tag2])
    out = build(daemon, tmp_path, "-t", tag, input="FROM busybox\nRUN echo from-stdin > /f\n")
    assert out.returncode == 0, out.stderr
    assert daemon.docker("run", "--rm", tag, "cat", "/f").stdout == "from-stdin\n"
    write(tmp_path, {"sub/Dockerfile.dev": "FROM busybox\nCOPY sub/x /x\n", "sub/x": "dev\n"})
    if not Path(DOCKER_2010).exists():
        pytest.skip("no docker 20.10 CLI")
    out = build(daemon, tmp_path, "-f", str(tmp_path / "sub/Dockerfile.dev"), "-t", tag2, cli=DOCKER_2010)
    assert out.returncode == 0, out.stderr
    assert "Successfully tagged" in out.stdout
    assert daemon.docker("run", "--rm", tag2, "cat", "/x").stdout == "dev\n"
    missing = build(daemon, tmp_path, "-f", str(tmp_path / "nope/Dockerfile"), cli=DOCKER_2010)
    assert missing.returncode != 0


def test_a_large_context(daemon: PortsideDaemon, busybox: str, tmp_path: Path, cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    blob = os.urandom(1 << 20)
    write(tmp_path, {"Dockerfile": "FROM busybox\nCOPY big /big\nRUN du -sk /big | cut -f1\n"})
    (tmp_path / "big").mkdir()
    for i in range(66):
        (tmp_path / "big" / f"f{i:02d}").write_bytes(blob[i:] + blob[:i])
    out = build(daemon, tmp_path, "-t", tag)
    assert out.returncode == 0, out.stderr
    assert "Sending build context to Docker daemon  69.2" in out.stdout
    sizes = [int(line) for line in out.stdout.splitlines() if line.isdigit()]
    assert sizes and 67584 <= sizes[0] < 67584 + 64, out.stdout  # 66 MiB in KiB, plus the directory's blocks
    sums = daemon.docker("run", "--rm", tag, "sh", "-c", "cat /big/f00 | md5sum").stdout.split()[0]
    import hashlib

    assert sums == hashlib.md5(blob).hexdigest()


def test_rmi_takes_the_intermediate_images_and_builder_prune_the_cache(daemon: PortsideDaemon, busybox: str,
                                                                       tmp_path: Path) -> None:
    tag = _tag()
    ctx = write(tmp_path, {"Dockerfile": f"FROM busybox\nENV X={tag}\nRUN echo {tag} > /f\nCMD [\"true\"]\n"})
    assert build(daemon, ctx, "-t", tag).returncode == 0
    all_before = set(daemon.docker("images", "-aq", "--no-trunc").stdout.split())
    shown = set(daemon.docker("images", "-q", "--no-trunc").stdout.split())
    final = image_id(daemon, tag)
    chain = []
    cur = final
    while True:
        parent = daemon.docker("inspect", "-f", "{{.Parent}}", cur).stdout.strip()
        if not parent:
            break
        chain.append(parent)
        cur = parent
    intermediates = chain[:-1]  # the last one is busybox
    assert len(intermediates) == 2 and set(intermediates) <= all_before and not set(intermediates) & shown
    df = json.loads(daemon.docker("system", "df", "--format", "{{json .}}").stdout.splitlines()[-1])
    assert df["Type"] == "Build Cache" and int(df["TotalCount"]) >= 2
    out = daemon.docker("rmi", tag)
    assert out.returncode == 0, out.stderr
    deleted = {line.split(": ", 1)[1] for line in out.stdout.splitlines() if line.startswith("Deleted: ")}
    assert deleted == {final, *intermediates}
    left = set(daemon.docker("images", "-aq", "--no-trunc").stdout.split())
    assert not left & deleted and image_id(daemon, "busybox") in left
    # an untagged build's chain is what builder prune takes; tagged images and what they are made of stay
    untagged = build(daemon, ctx, "-q")
    assert untagged.returncode == 0, untagged.stderr
    dangling = untagged.stdout.strip()
    assert dangling in set(daemon.docker("images", "-aq", "--no-trunc").stdout.split())
    tagged = {i for i in daemon.docker("images", "-q", "--no-trunc", "--filter", "dangling=false").stdout.split()}
    pruned = daemon.docker("builder", "prune", "-f")
    assert pruned.returncode == 0, pruned.stderr
    after = set(daemon.docker("images", "-aq", "--no-trunc").stdout.split())
    assert dangling not in after and tagged <= after


def test_build_events(daemon: PortsideDaemon, busybox: str, tmp_path: Path, cleanup: list[str]) -> None:
    tag = _tag()
    cleanup.append(tag)
    since = str(int(time.time()) - 1)
    ctx = write(tmp_path, {"Dockerfile": f"FROM busybox\nRUN echo {tag}\n"})
    out = build(daemon, ctx, "-t", tag)
    assert out.returncode == 0, out.stderr
    step_container = next(line.split()[-1] for line in out.stdout.splitlines() if "Running in" in line)
    until = str(int(time.time()) + 1)
    ev = daemon.docker("events", "--since", since, "--until", until, "--format",
                       "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}").stdout
    mine = [" ".join(e.split()[:2]) for e in ev.splitlines()
            if e.split()[2].startswith(step_container) or e.endswith(f" {tag}:latest")]
    assert mine == ["container create", "container start", "container die", "container destroy", "image tag"], ev


def test_docker_py_builds_from_a_path_and_a_fileobj(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                    cleanup: list[str]) -> None:
    import docker

    tag, tag2 = _tag(), _tag()
    cleanup.extend([tag, tag2])
    client = docker.DockerClient(base_url=daemon.host, version="1.41")
    try:
        write(tmp_path, {"Dockerfile": "FROM busybox\nCOPY f /f\nRUN cat /f\nLABEL built=by-docker-py\n",
                         "f": "file-content\n"})
        img, logs = client.images.build(path=str(tmp_path), tag=tag, rm=True)
        logs = list(logs)
        assert img.labels == {"built": "by-docker-py"} and f"{tag}:latest" in img.tags
        assert any("file-content" in (chunk.get("stream") or "") for chunk in logs)
        assert any((chunk.get("aux") or {}).get("ID") == img.id for chunk in logs)
        img2, _ = client.images.build(fileobj=io.BytesIO(b"FROM busybox\nCMD [\"echo\", \"fileobj\"]\n"), tag=tag2)
        assert client.containers.run(img2.id, remove=True) == b"fileobj\n"
        with pytest.raises(docker.errors.BuildError, match="returned a non-zero code: 4"):
            client.images.build(fileobj=io.BytesIO(b"FROM busybox\nRUN exit 4\n"), forcerm=True)
    finally:
        client.close()


def test_docker_compose_builds_a_service(daemon: PortsideDaemon, busybox: str, tmp_path: Path) -> None:
    import shutil

    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.skip("docker-compose is not installed")
    project = f"pstbuild{uuid.uuid4().hex[:6]}"
    write(tmp_path, {
        "docker-compose.yml": "version: '3'\nservices:\n  app:\n    build:\n      context: ./app\n"
                              "      args:\n        MSG: from-compose\n    command: cat /msg\n",
        "app/Dockerfile": "FROM busybox\nARG MSG\nRUN echo $MSG > /msg\n",
    })
    env = {**os.environ, "DOCKER_HOST": daemon.host, "COMPOSE_PROJECT_NAME": project, "DOCKER_BUILDKIT": "0",
           "COMPOSE_DOCKER_CLI_BUILD": "0", "DOCKER_CONFIG": str(daemon.tmp / "cli")}
    try:
        b = subprocess.run([compose, "build"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert b.returncode == 0, b.stderr + b.stdout
        up = subprocess.run([compose, "up", "--no-color"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
        assert up.returncode == 0 and "from-compose" in up.stdout, up.stdout + up.stderr
    finally:
        subprocess.run([compose, "down", "--rmi", "local"], cwd=tmp_path, env=env, capture_output=True, timeout=120)


def test_a_client_that_goes_away_stops_the_build_and_leaves_nothing(daemon: PortsideDaemon, busybox: str,
                                                                  tmp_path: Path) -> None:
    tag = _tag()
    ctx = io.BytesIO()
    with tarfile.open(fileobj=ctx, mode="w") as t:
        data = f"FROM busybox\nRUN echo started-{tag} && sleep 30\n".encode()
        ti = tarfile.TarInfo("Dockerfile")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    body = ctx.getvalue()
    before = containers(daemon)
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(daemon.sock))
    s.sendall(f"POST /build?t={tag}&rm=1 HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    seen = b""
    deadline = time.monotonic() + 30
    while f"started-{tag}".encode() not in seen and time.monotonic() < deadline:
        seen += s.recv(65536)
    assert f"started-{tag}".encode() in seen
    s.close()  # the client goes away mid-RUN
    deadline = time.monotonic() + 30
    while containers(daemon) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert containers(daemon) == before
    assert daemon.docker("inspect", tag).returncode != 0
    deadline = time.monotonic() + 10
    while (mounts_below(daemon.data_root / "build") or list((daemon.data_root / "build").iterdir())) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert mounts_below(daemon.data_root / "build") == [] and list((daemon.data_root / "build").iterdir()) == []


def test_a_run_steps_stderr_is_streamed_in_red(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                              cleanup: list[str]) -> None:
    """The classic builder's stderr writer wraps a RUN step's stderr in `\\x1b[91m...\\x1b[0m` (docker-py's
    test_build_stderr_data looks for it); stdout stays plain."""
    import docker

    tag = _tag()
    cleanup.append(tag)
    client = docker.APIClient(base_url=daemon.host, version="auto")
    try:
        dockerfile = b'FROM busybox\nRUN sh -c "echo to-out; >&2 echo to-err"\n'
        chunks = [c.get("stream") for c in client.build(fileobj=io.BytesIO(dockerfile), tag=tag, decode=True,
                                                         nocache=True)]
    finally:
        client.close()
    assert "\x1b[91mto-err\n\x1b[0m" in chunks, chunks
    assert "to-out\n" in chunks, chunks


def test_cache_from_limits_the_cache_to_those_images(daemon: PortsideDaemon, busybox: str, tmp_path: Path,
                                                    cleanup: list[str]) -> None:
    """With cachefrom, a local step is reused only when a --cache-from image descends from it, and a cachefrom of
    images that do not exist reuses nothing (moby's ImageCache with sources; docker-py's
    test_build_with_cache_from)."""
    import docker

    first, second = _tag(), _tag()
    cleanup += [first, second]
    dockerfile = b"FROM busybox\nENV FOO=bar\nRUN touch baz\nRUN touch bax\n"
    client = docker.APIClient(base_url=daemon.host, version="auto")

    def cached(**kw: object) -> int:
        chunks = client.build(fileobj=io.BytesIO(dockerfile), tag=second, decode=True, **kw)
        return sum("Using cache" in (c.get("stream") or "") for c in chunks)

    try:
        for _ in client.build(fileobj=io.BytesIO(dockerfile), tag=first, decode=True):
            pass
        assert cached(cache_from=[first]) == 3
        client.remove_image(second)
        assert cached(cache_from=["pst-no-such-image"]) == 0
        assert cached() == 3  # no cachefrom: the local cache as before
    finally:
        client.close()
