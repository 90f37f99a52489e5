"""Host discovery, the user's hosts in the config file, and why a host is unreachable (app/hosts.py).

Contexts are made by the real docker CLI (`docker context create`) in a fake HOME, and one by hand; the
unreachable hosts are real sockets on this machine: a dead unix socket, a TCP listener on 127.0.0.1 that never
answers, a plain-HTTP listener reached with TLS.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import hosts
from app.config import load_config
from app.endpoint import Endpoint
from app.host_pool import probe
from tests.testbed.cli import DOCKER

CERT_SUBJECT = "/CN=portside-test"


def _docker(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=60, check=False,
                          env={**env, "HOME": str(home)})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    d = tmp_path / "certs"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "1", "-subj", CERT_SUBJECT],
                   check=True, capture_output=True)
    (d / "ca.pem").write_bytes((d / "cert.pem").read_bytes())
    return d


def _env(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), **extra}


def test_contexts_made_by_the_docker_cli(home: Path, certs: Path) -> None:
    assert _docker(home, "context", "create", "pst-local", "--description", "a socket",
                   "--docker", "host=unix:///tmp/pst-nothing.sock").returncode == 0
    tls = f"host=tcp://127.0.0.1:2376,ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem"
    assert _docker(home, "context", "create", "pst-tls", "--docker", tls).returncode == 0
    assert _docker(home, "context", "use", "pst-local").returncode == 0

    found = {h.name: h for h in hosts.contexts(_env(home))}
    assert set(found) == {"pst-local", "pst-tls"}
    local, remote = found["pst-local"], found["pst-tls"]
    assert local.url == "unix:///tmp/pst-nothing.sock" and local.current and local.tls is None
    assert local.description == "a socket"
    assert not remote.current and remote.url == "tcp://127.0.0.1:2376"
    # the CLI copies the TLS files into its store: the host points at those copies
    assert remote.tls is not None and remote.tls.verify
    store = home / ".docker" / "contexts" / "tls" / hosts.context_id("pst-tls") / "docker"
    assert remote.tls.ca == str(store / "ca.pem") and Path(remote.tls.key).read_bytes() == \
        (certs / "key.pem").read_bytes()

    # the current context is where the TUI starts, as the docker CLI would; DOCKER_CONTEXT overrides it
    assert hosts.initial(env=_env(home)).name == "pst-local"
    assert hosts.initial(env=_env(home, DOCKER_CONTEXT="pst-tls")).name == "pst-tls"
    marked = [h.name for h in hosts.discover(_env(home, DOCKER_CONTEXT="pst-tls")) if h.current]
    assert marked == ["pst-tls"]
    # -H and $DOCKER_HOST still come first
    assert hosts.initial("unix:///tmp/x.sock", env=_env(home)).source == "cli"
    assert hosts.initial(env=_env(home, DOCKER_HOST="unix:///tmp/y.sock")).url == "unix:///tmp/y.sock"


def test_a_context_written_by_hand(home: Path) -> None:
    """meta.json as docker/cli's store keeps it: under the sha256 of the name; SkipTLSVerify honoured."""
    meta = home / ".docker" / "contexts" / "meta" / hosts.context_id("by-hand") / "meta.json"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"Name": "by-hand", "Metadata": {},
                                "Endpoints": {"docker": {"Host": "tcp://127.0.0.1:2376", "SkipTLSVerify": True}}}))
    (home / ".docker" / "config.json").write_text(json.dumps({"currentContext": "by-hand"}))
    h = hosts.initial(env=_env(home))
    assert (h.name, h.url, h.current) == ("by-hand", "tcp://127.0.0.1:2376", True)
    assert h.tls is not None and not h.tls.verify
    # the docker CLI reads the same file the same way
    out = _docker(home, "context", "inspect", "by-hand", "--format", "{{.Endpoints.docker.Host}}")
    assert out.stdout.strip() == "tcp://127.0.0.1:2376"


def test_an_unknown_context_is_dockers_error(home: Path) -> None:
    with pytest.raises(hosts.ContextNotFound) as err:
        hosts.initial(context="pst-none", env=_env(home))
    cli = _docker(home, "--context", "pst-none", "ps")
    assert cli.returncode == 1
    assert str(err.value) in cli.stderr
    assert str(err.value).startswith('context "pst-none": context not found')
    # and the portside command says it and exits 1 before any TUI starts
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    out = subprocess.run([sys.executable, "-m", "app.cli", "--context", "pst-none"], capture_output=True, text=True,
                         timeout=60, env={**env, "HOME": str(home)}, check=False)
    assert out.returncode == 1
    assert out.stderr.strip() == f"portside: {err.value}"
    out = subprocess.run([sys.executable, "-m", "app.cli"], capture_output=True, text=True, timeout=60, check=False,
                         env={**env, "HOME": str(home), "DOCKER_CONTEXT": "pst-none"})
    assert (out.returncode, out.stderr.strip()) == (1, f"portside: {err.value}")
    out = subprocess.run([sys.executable, "-m", "app.cli", "-H", "unix:///x", "--context", "pst-none"],
                         capture_output=True, text=True, timeout=60, check=False, env={**env, "HOME": str(home)})
    assert out.returncode == 1 and "cannot specify both --host and --context" in out.stderr


def test_docker_host_with_tls_from_the_environment(home: Path, certs: Path) -> None:
    env = _env(home, DOCKER_HOST="tcp://127.0.0.1:2376", DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=str(certs))
    h = hosts.initial(env=env)
    assert h.tls == hosts.Tls(str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem"), True)
    assert any(x.name == "DOCKER_HOST" and x.tls == h.tls for x in hosts.discover(env))
    # a unix socket never gets TLS
    assert hosts.initial(env=_env(home, DOCKER_HOST="/tmp/pst.sock", DOCKER_TLS_VERIFY="1")).tls is None


@pytest.fixture
def listening_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "podman.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.listen(1)
    yield path
    s.close()


def test_podman_sockets_are_listed_when_present(home: Path, tmp_path: Path, listening_socket: Path) -> None:
    user_dir = tmp_path / "run-user"
    (user_dir / "podman").mkdir(parents=True)
    user_sock = socket.socket(socket.AF_UNIX)
    user_sock.bind(str(user_dir / "podman" / "podman.sock"))
    try:
        found = hosts.discover(_env(home, XDG_RUNTIME_DIR=str(user_dir)), podman_socket=str(listening_socket),
                               docker_socket=str(tmp_path / "none.sock"))
        podman = [(h.name, h.url) for h in found if h.source == "podman"]
        assert podman == [("podman", f"unix://{listening_socket}"),
                          ("podman-user", f"unix://{user_dir}/podman/podman.sock")]
        none = hosts.discover(_env(home), podman_socket=str(tmp_path / "missing.sock"),
                              docker_socket=str(tmp_path / "none.sock"))
        assert [h.name for h in none] == ["portside"]
    finally:
        user_sock.close()


def test_user_hosts_persist_in_the_config_file(tmp_path: Path, certs: Path) -> None:
    path = tmp_path / "portside" / "config.toml"
    path.parent.mkdir()
    path.write_text('# my settings\ntheme = "nord"\n\n[keys]\nrun_nginx = "w"  # keep me\n')
    a = hosts.make_user_host("box", "tcp://127.0.0.1:2376", str(certs / "ca.pem"), str(certs / "cert.pem"),
                             str(certs / "key.pem"))
    b = hosts.make_user_host("sock", "/tmp/pst-other.sock")
    c = hosts.make_user_host("far", "ssh://me@127.0.0.1:2222")
    hosts.save_user_hosts(path, [a, b, c])
    text = path.read_text()
    assert text.startswith('# my settings\ntheme = "nord"') and 'run_nginx = "w"  # keep me' in text
    cfg, errors = load_config(path)
    assert errors == [] and cfg.theme == "nord" and cfg.keys == {"run_nginx": "w"}
    back, errors = hosts.parse_user_hosts(cfg.hosts, str(path))
    assert errors == []
    assert back == [a, b, c]
    assert b.url == "unix:///tmp/pst-other.sock"
    # removing one rewrites only the hosts
    hosts.save_user_hosts(path, [c])
    cfg, _ = load_config(path)
    assert [h.name for h in hosts.parse_user_hosts(cfg.hosts, "")[0]] == ["far"]
    assert path.read_text().count("[[hosts]]") == 1 and "# my settings" in path.read_text()
    # and they are listed, after the discovered ones
    listed = hosts.discover({"HOME": str(tmp_path)}, user=[c], podman_socket="/nonexistent",
                            docker_socket="/nonexistent")
    assert [h.name for h in listed] == ["portside", "far"] and listed[-1].removable


def test_bad_hosts_in_the_config_file_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[[hosts]]\nname = "ok"\nurl = "unix:///tmp/a.sock"\n\n[[hosts]]\nname = "bad"\n'
                    'url = "ftp://x"\n\n[[hosts]]\nname = "ok"\nurl = "unix:///tmp/b.sock"\n')
    cfg, errors = load_config(path)
    assert errors == []
    found, errors = hosts.parse_user_hosts(cfg.hosts, str(path))
    assert [h.name for h in found] == ["ok"]
    assert len(errors) == 2 and "bad" in errors[0] and "ftp://x" in errors[0]


@pytest.mark.parametrize(("name", "url", "extra", "wanted"), [
    ("", "unix:///x.sock", {}, "a name is needed"),
    ("a b", "unix:///x.sock", {}, "names are letters"),
    ("taken", "unix:///x.sock", {}, "already exists"),
    ("x", "", {}, "a URL is needed"),
    ("x", "http//nope", {}, "use unix:///path"),
    ("x", "unix://relative.sock", {}, "absolute path"),
    ("x", "tcp://127.0.0.1", {}, "needs a port"),
    ("x", "tcp://127.0.0.1:99999", {}, "not a port number"),
    ("x", "tcp://127.0.0.1:2376", {"ca": "/nonexistent/ca.pem"}, "no such file"),
    ("x", "unix:///x.sock", {"ca": "CERT"}, "TLS files are for tcp://"),
    ("x", "tcp://127.0.0.1:2376", {"cert": "CERT"}, "give both or neither"),
])
def test_the_add_host_fields_are_checked(name: str, url: str, extra: dict[str, str], wanted: str,
                                         certs: Path) -> None:
    fields = {k: str(certs / "cert.pem") if v == "CERT" else v for k, v in extra.items()}
    with pytest.raises(hosts.HostError, match=wanted):
        hosts.make_user_host(name, url, taken={"taken"}, **fields)


# --- why a host is unreachable, against real sockets ---


def test_a_dead_unix_socket_is_connection_refused(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens
    with pytest.raises(Exception) as err:
        probe(Endpoint(f"unix://{path}", "host", ""), timeout=2)
    assert hosts.describe_error(err.value) == "connection refused"
    with pytest.raises(Exception) as err:
        probe(Endpoint(f"unix://{tmp_path}/missing.sock", "host", ""), timeout=2)
    assert hosts.describe_error(err.value).startswith("no such socket")


def test_a_listener_that_never_answers_times_out() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel completes the handshake; nothing ever reads or writes
    try:
        port = server.getsockname()[1]
        with pytest.raises(Exception) as err:
            probe(Endpoint(f"tcp://127.0.0.1:{port}", "host", ""), timeout=0.5)
        assert hosts.describe_error(err.value, 0.5) == "timed out after 0.5 s"
    finally:
        server.close()


def _plain_http_server(reply: bytes) -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)

    def serve() -> None:
        while True:
            try:
                conn = server.accept()[0]
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(reply)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return server, server.getsockname()[1]


def test_tls_against_a_plain_listener_is_a_tls_error(certs: Path) -> None:
    server, port = _plain_http_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        tls = hosts.Tls(str(certs / "ca.pem"), str(certs / "cert.pem"), str(certs / "key.pem")).config()
        with pytest.raises(Exception) as err:
            probe(Endpoint(f"tcp://127.0.0.1:{port}", "host", "", tls=tls), timeout=2)
        assert hosts.describe_error(err.value).startswith("TLS error: wrong_version_number")
    finally:
        server.close()


def test_an_unauthorised_answer_is_an_auth_error() -> None:
    body = b'{"message":"authorization denied by plugin pst"}'
    reply = b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body), body)
    server, port = _plain_http_server(reply)
    try:
        with pytest.raises(Exception) as err:
            probe(Endpoint(f"tcp://127.0.0.1:{port}", "host", ""), timeout=2)
        assert hosts.describe_error(err.value) == "auth: the host refused access (HTTP 401)"
    finally:
        server.close()


def test_an_ssh_host_that_refuses_is_connection_refused() -> None:
    """ssh:// goes through docker-py's paramiko transport: a port with nothing on it is refused, in words."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(Exception) as err:
        probe(Endpoint(f"ssh://pst@127.0.0.1:{port}", "host", ""), timeout=2)
    assert hosts.describe_error(err.value) == "connection refused"


def test_the_pool_keeps_the_last_four_and_says_why_each_failed(tmp_path: Path) -> None:
    """Five hosts opened in turn: the least recently used one is closed (its thread ends), what was known of it
    stays; every host reports its reason through the callback; retry() tries again at once."""
    import time

    from app.host_pool import HostPool

    changes: list[tuple[str, str, str]] = []
    pool = HostPool(lambda h: Endpoint(h.url, "host", h.title), lambda c: changes.append(
        (c.host.name, c.status.state, c.status.reason)), lambda c, e: None, size=4, timeout=1)
    made = [hosts.Host(f"pst-{i}", f"unix://{tmp_path}/dead-{i}.sock", "user") for i in range(5)]
    for h in made:
        s = socket.socket(socket.AF_UNIX)
        s.bind(h.url.removeprefix("unix://"))
        s.close()  # the file stays, nobody listens
    try:
        first = pool.open(made[0])
        for h in made[1:4]:
            pool.open(h)
        pool.open(made[0])  # used again: pst-1 is now the oldest
        oldest = pool.get("pst-1")
        assert oldest is not None
        pool.open(made[4])
        assert [c.host.name for c in pool.connections()] == ["pst-2", "pst-3", "pst-0", "pst-4"]
        assert pool.get("pst-1") is None
        oldest.thread.join(5)
        assert not oldest.thread.is_alive()
        assert "pst-1" in pool.last_state
        deadline = time.monotonic() + 10
        while not all(pool.state(h.name).state == "unreachable" for h in made[2:] + made[:1]):
            assert time.monotonic() < deadline, changes
            time.sleep(0.05)
        assert pool.state("pst-0").reason == "connection refused"
        assert ("pst-4", "unreachable", "connection refused") in changes
        tries = first.failures
        first.retry()
        while first.failures == tries:
            assert time.monotonic() < deadline, "retry() did not try again"
            time.sleep(0.05)
    finally:
        conns = pool.connections()
        pool.close_all()
    for c in conns:
        c.thread.join(5)
        assert not c.thread.is_alive()
