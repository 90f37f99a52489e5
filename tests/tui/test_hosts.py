"""The host switcher (h), the add-host form, an unreachable host's reason and retry, and one TUI session driving
several real engines: two portside daemons, Debian's dockerd when installed, one of them through a context made
by `docker context create`."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import Input, OptionList, Static

from app.config import Config, load_config
from app.hosts import parse_user_hosts
from app.screens.confirm import ConfirmScreen
from app.screens.hosts import AddHostScreen, HostsScreen
from app.screens.main import MainScreen
from app.tui import PortsideApp
from tests.testbed.cli import DOCKER
from tests.testbed.registry import Registry
from tests.tui.conftest import Engine, main_screen, open_screen, wait_for

pytestmark = [pytest.mark.tui, pytest.mark.timeout(180)]


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tmp_config_home: Path) -> Path:
    """A HOME of the test's own (its ~/.docker holds the contexts), no DOCKER_* from the caller's shell, and no
    Podman or Docker socket of this machine in the list."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in [v for v in os.environ if v.startswith("DOCKER_")]:
        monkeypatch.delenv(var)
    import app.hosts

    monkeypatch.setattr(app.hosts.discover, "__kwdefaults__",
                        {"podman_socket": str(tmp_path / "no-podman.sock"),
                         "docker_socket": str(tmp_path / "no-docker.sock")})
    return home


def docker_context(home: Path, name: str, url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    out = subprocess.run([DOCKER, "context", "create", name, "--docker", f"host={url}"], capture_output=True,
                         text=True, timeout=60, check=False, env={**env, "HOME": str(home)})
    assert out.returncode == 0, out.stderr


def dead_socket(path: Path) -> str:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays; nothing listens
    return f"unix://{path}"


def banner_text(main: MainScreen) -> str:
    return str(main.banner.render())


def option_texts(screen: HostsScreen) -> list[str]:
    ol = screen.query_one("#host-list", OptionList)
    return [str(ol.get_option_at_index(i).prompt) for i in range(ol.option_count)]


async def highlight(pilot: Any, screen: HostsScreen, name: str) -> None:
    await wait_for(pilot, lambda: name in [h.name for h in screen.hosts], what=f"{name} listed")
    screen.option_list.highlighted = [h.name for h in screen.hosts].index(name)
    await pilot.pause()


async def test_switcher_lists_hosts_and_the_form_adds_and_removes(fake_home: Path, tmp_path: Path) -> None:
    docker_context(fake_home, "pst-ctx", dead_socket(tmp_path / "ctx.sock"))
    start = dead_socket(tmp_path / "start.sock")
    app = PortsideApp(host=start, config=Config())
    async with app.run_test(size=(140, 44)) as pilot:
        main = main_screen(app)
        # the dead socket says why, and how to go on
        await wait_for(pilot, lambda: "connection refused" in banner_text(main), what="the reason")
        assert "R: retry now" in banner_text(main)
        assert start in app.sub_title and "disconnected" in app.sub_title

        screen = await open_screen(pilot, "h", HostsScreen)
        names = [h.name for h in screen.hosts]
        assert names[0] == "portside" and "pst-ctx" in names and start in names
        await wait_for(pilot, lambda: all("checking" not in t for t in option_texts(screen)), what="probes")
        texts = dict(zip(names, option_texts(screen), strict=True))
        assert texts[start].startswith("▶") and "unreachable: connection refused" in texts[start]
        assert "unreachable: connection refused" in texts["pst-ctx"]
        assert "pst-ctx *" not in texts["pst-ctx"]  # no current context set

        # the form refuses what docker would not take, and says why
        form = await open_screen(pilot, "a", AddHostScreen)
        form.query_one("#host-url", Input).value = "tcp://127.0.0.1"
        await pilot.pause()
        assert form.query_one("#host-name", Input).value == "127.0.0.1"  # suggested from the URL
        form.query_one("#host-name", Input).value = "pst-added"
        await pilot.press("enter")
        error = form.query_one("#add-host-error", Static)
        await wait_for(pilot, lambda: "needs a port" in str(error.render()), what="the URL error")
        assert isinstance(app.screen, AddHostScreen)
        form.query_one("#host-name", Input).value = "pst-ctx"
        form.query_one("#host-url", Input).value = "tcp://127.0.0.1:1"
        await pilot.press("enter")
        await wait_for(pilot, lambda: "already exists" in str(error.render()), what="the name error")
        form.query_one("#host-name", Input).value = "pst-added"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, what="back in the switcher")
        assert "pst-added" in [h.name for h in screen.hosts]
        cfg, errors = load_config(Path(os.environ["XDG_CONFIG_HOME"]) / "portside" / "config.toml")
        assert errors == []
        saved = parse_user_hosts(cfg.hosts, "")[0]
        assert [(h.name, h.url) for h in saved] == [("pst-added", "tcp://127.0.0.1:1")]
        await wait_for(pilot, lambda: "unreachable: connection refused" in option_texts(screen)[
            [h.name for h in screen.hosts].index("pst-added")], what="the new host probed")

        # a context is not the user's to remove here; an added host is, after a yes
        await highlight(pilot, screen, "pst-ctx")
        await pilot.press("d")
        await pilot.pause()
        assert "pst-ctx" in [h.name for h in screen.hosts] and app.screen is screen
        await highlight(pilot, screen, "pst-added")
        await open_screen(pilot, "d", ConfirmScreen)
        await pilot.press("y")
        await wait_for(pilot, lambda: "pst-added" not in [h.name for h in screen.hosts], what="removed")
        cfg, _ = load_config(Path(os.environ["XDG_CONFIG_HOME"]) / "portside" / "config.toml")
        assert parse_user_hosts(cfg.hosts, "")[0] == []
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the main screen")

        # switching from the Images screen lands on the new host's containers, with its own reason
        from app.screens.resources import ImagesScreen

        await open_screen(pilot, "I", ImagesScreen)
        screen = await open_screen(pilot, "H", HostsScreen)  # h is the Images screen's history
        await highlight(pilot, screen, "pst-ctx")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen), what="the main screen")
        assert len(app.screen_stack) == 2
        await wait_for(pilot, lambda: app.sub_title.startswith("context pst-ctx") and "disconnected" in app.sub_title,
                       what="the header names the context")
        assert "connection refused" in banner_text(main) and "context pst-ctx" in banner_text(main)


async def test_an_unreachable_host_says_why_and_retry_connects(engine: Engine, fake_home: Path,
                                                               tmp_path: Path) -> None:
    """No socket at the address: the banner says so; once the socket is there, R connects at once (the pause
    before the next attempt has grown to 8 s by then) and the list loads."""
    cid = engine.run(["sleep", "100"], f"pst-retry-{uuid.uuid4().hex[:6]}")
    link = tmp_path / "later.sock"
    app = PortsideApp(host=f"unix://{link}", config=engine.config())
    async with app.run_test(size=(140, 40)) as pilot:
        main = main_screen(app)
        await wait_for(pilot, lambda: "no such socket" in banner_text(main), what="the reason")
        assert not app.connected
        conn = app.pool.get(str(app.current_host.name)) if app.pool and app.current_host else None
        assert conn is not None
        # let it fail a few times, so its next try is seconds away
        await wait_for(pilot, lambda: conn.failures >= 4, what="four failed attempts")
        link.symlink_to(engine.url.removeprefix("unix://"))
        await pilot.press("R")
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), timeout=6, what="connected")
        assert not main.banner.display
        await wait_for(pilot, lambda: cid in main.container_list.rows_by_id, what="the list")


# --- one session, several engines ---


def _pull_busybox(api: Any, registry: Registry) -> str:
    repo = f"{registry.host}/testbed/busybox"
    api.pull(repo, tag="latest")
    return f"{repo}:latest"


@pytest.fixture
def two_daemons(registry: Registry) -> Iterator[list[Any]]:
    """Two `portside daemon` processes (tests/api/conftest.py's PortsideDaemon), each holding busybox."""
    if os.geteuid() != 0:
        pytest.skip("the portside daemon needs root")
    from tests.api.conftest import new_daemon, remove_daemon_dirs

    daemons = [new_daemon(), new_daemon()]
    try:
        for d in daemons:
            d.start()
        yield daemons
    finally:
        for d in daemons:
            d.stop()
            d.cleanup_containers()
            d.destroy_network_state()
            remove_daemon_dirs(d)


def _run(api: Any, image: str, name: str) -> str:
    hc = api.create_host_config(network_mode="none")
    cid: str = api.create_container(image, ["sleep", "300"], name=name, host_config=hc)["Id"]
    api.start(cid)
    return cid


async def _switch_to(pilot: Any, name: str) -> None:
    screen = await open_screen(pilot, "h", HostsScreen)
    await highlight(pilot, screen, name)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, MainScreen), what="the main screen")


@pytest.mark.integration
@pytest.mark.timeout(400)
async def test_one_session_drives_several_engines(two_daemons: list[Any], registry: Registry, fake_home: Path,
                                                  request: pytest.FixtureRequest) -> None:
    import docker

    a, b = two_daemons
    api_a = docker.APIClient(base_url=a.host, version="auto", timeout=120)
    api_b = docker.APIClient(base_url=b.host, version="auto", timeout=120)
    tag = uuid.uuid4().hex[:6]
    on_a = _run(api_a, _pull_busybox(api_a, registry), f"pst-on-a-{tag}")
    on_b = _run(api_b, _pull_busybox(api_b, registry), f"pst-on-b-{tag}")
    docker_context(fake_home, "pst-b", b.host)
    dockerd: Engine | None = None
    from tests.testbed import dockerd as testbed_dockerd

    if testbed_dockerd.available():
        dockerd = request.getfixturevalue("dockerd_engine")
    on_d = dockerd.run(["sleep", "300"], f"pst-on-d-{tag}") if dockerd is not None else ""

    app = PortsideApp(host=a.host, config=Config(hub_search=False))
    try:
        async with app.run_test(size=(150, 44)) as pilot:
            main = main_screen(app)
            await wait_for(pilot, lambda: on_a in main.container_list.rows_by_id, what="A's container")
            assert a.host in app.sub_title

            # B through the context docker made
            await _switch_to(pilot, "pst-b")
            await wait_for(pilot, lambda: on_b in main.container_list.rows_by_id, what="B's container")
            assert on_a not in main.container_list.rows_by_id
            assert app.sub_title == f"context pst-b ({b.host})"
            # the header and the verbs follow the host: stop B's container from the keyboard
            assert main.container_list.select_id(on_b)
            await pilot.press("x")
            await wait_for(pilot, lambda: main.container_list.rows_by_id[on_b].state == "exited", timeout=30,
                           what="B's container stopped")
            assert api_a.inspect_container(on_a)["State"]["Running"]

            if dockerd is not None:
                # dockerd as a host added through the form
                screen = await open_screen(pilot, "h", HostsScreen)
                form = await open_screen(pilot, "a", AddHostScreen)
                form.query_one("#host-url", Input).value = dockerd.url
                form.query_one("#host-name", Input).value = "pst-dockerd"
                await pilot.press("enter")
                await wait_for(pilot, lambda: app.screen is screen, what="back in the switcher")
                await highlight(pilot, screen, "pst-dockerd")
                texts = dict(zip([h.name for h in screen.hosts], option_texts(screen), strict=True))
                assert "connected: portside" in texts["pst-b"]
                await wait_for(pilot, lambda: "reachable: Docker" in option_texts(screen)[
                    [h.name for h in screen.hosts].index("pst-dockerd")], what="dockerd probed")
                await pilot.press("enter")
                await wait_for(pilot, lambda: on_d in main.container_list.rows_by_id, what="dockerd's container")
                assert on_b not in main.container_list.rows_by_id
                assert main.container_list.select_id(on_d)
                await pilot.press("x")
                await wait_for(pilot, lambda: main.container_list.rows_by_id[on_d].state == "exited", timeout=30,
                               what="dockerd's container stopped")

            # back to A: its connection was kept, so the switch needs no round trip
            screen = await open_screen(pilot, "h", HostsScreen)
            await highlight(pilot, screen, a.host)
            assert app.pool is not None
            kept = app.pool.get(a.host)
            assert kept is not None and kept.connected
            await pilot.press("enter")
            assert app.connected and app.engine is kept.engine  # at once, before any message was handled
            await wait_for(pilot, lambda: on_a in main.container_list.rows_by_id, what="A's container again")
            assert on_b not in main.container_list.rows_by_id
            assert a.host in app.sub_title
            # events of the host shown now reach the list
            api_a.stop(on_a, timeout=1)
            await wait_for(pilot, lambda: main.container_list.rows_by_id[on_a].state == "exited", timeout=30,
                           what="A's event")
            assert len(app.pool.connections()) == (3 if dockerd is not None else 2)

            # every connected host at once, grouped: A's rows first, then each other host's, keyed host/id
            main.container_list.focus()
            await pilot.press("A")
            key_b = f"pst-b/{on_b}"

            def rows() -> dict[str, Any]:
                return main.container_list.rows_by_id

            await wait_for(pilot, lambda: key_b in rows() and on_a in rows(), what="the all-hosts list")
            if dockerd is not None:
                assert f"pst-dockerd/{on_d}" in rows()
            shown = main.container_list._shown
            assert shown.index(on_a) < shown.index(key_b)
            assert str(main.container_list.get_cell(key_b, "name")).startswith("pst-b ▸ ")
            assert str(main.container_list.get_cell(on_a, "name")).startswith(f"{a.host} ▸ ")
            # a verb acts on the row's own host, and that host's events come back into the list
            assert main.container_list.select_id(key_b)
            await pilot.press("s")
            await wait_for(pilot, lambda: rows()[key_b].state == "running", timeout=30, what="B's container started")
            assert api_b.inspect_container(on_b)["State"]["Running"]
            assert not api_a.inspect_container(on_a)["State"]["Running"]
            # Enter on another host's container goes there
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.current_host is not None and app.current_host.name == "pst-b"
                           and main.selected_id == on_b, what="switched to B with its container selected")
            await wait_for(pilot, lambda: f"{a.host}/{on_a}" in rows(), what="A among the other hosts")
            assert app.sub_title == f"context pst-b ({b.host})"
    finally:
        if dockerd is not None and on_d:
            dockerd.api.remove_container(on_d, force=True)


# --- ssh:// through a real SSH server (paramiko's) in front of the engine ---


@pytest.fixture
def ssh_engine(engine: Engine, fake_home: Path) -> Iterator[tuple[Any, Path]]:
    """An SSH server on 127.0.0.1 whose `docker system dial-stdio` reaches the engine, and a ~/.ssh in the fake
    HOME with a key it accepts (named by ~/.ssh/config); known_hosts is left to the test."""
    import paramiko

    from tests.tui.sshd import SshServer

    ssh_dir = fake_home / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    # an ed25519 key in OpenSSH's format, as ssh-keygen makes by default
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh_dir / "id_pst")], check=True)
    key = paramiko.Ed25519Key(filename=str(ssh_dir / "id_pst"))
    (ssh_dir / "config").write_text(f"Host 127.0.0.1\n  IdentityFile {ssh_dir / 'id_pst'}\n")
    server = SshServer(engine.url.removeprefix("unix://"), key)
    try:
        yield server, ssh_dir
    finally:
        server.close()


@pytest.mark.integration
async def test_an_ssh_host(engine: Engine, ssh_engine: tuple[Any, Path], tmp_path: Path) -> None:
    """ssh://user@host goes through docker-py's ssh transport: an unknown host key and a refused login say so;
    with both right, the host is added in the form and its containers are managed as any other's."""
    from app import hosts
    from app.endpoint import Endpoint
    from app.host_pool import probe

    server, ssh_dir = ssh_engine
    url = f"ssh://pst@127.0.0.1:{server.port}"
    with pytest.raises(Exception) as err:
        probe(Endpoint(url, "host", ""), timeout=3)
    assert hosts.describe_error(err.value) == "ssh: the host key is not in ~/.ssh/known_hosts"
    (ssh_dir / "known_hosts").write_text(server.known_hosts_line())
    with pytest.raises(Exception) as err:
        probe(Endpoint(f"ssh://someone@127.0.0.1:{server.port}", "host", ""), timeout=3)
    assert hosts.describe_error(err.value).startswith("auth: ssh refused the login")
    assert probe(Endpoint(url, "host", ""), timeout=3)["ApiVersion"] == engine.api.version()["ApiVersion"]

    cid = engine.run(["sleep", "300"], f"pst-ssh-{uuid.uuid4().hex[:6]}")
    app = PortsideApp(host=dead_socket(tmp_path / "start.sock"), config=engine.config())
    async with app.run_test(size=(140, 44)) as pilot:
        main = main_screen(app)
        screen = await open_screen(pilot, "h", HostsScreen)
        form = await open_screen(pilot, "a", AddHostScreen)
        form.query_one("#host-url", Input).value = url
        await pilot.pause()
        assert form.query_one("#host-name", Input).value == "127.0.0.1"
        form.query_one("#host-name", Input).value = "pst-ssh"
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.screen is screen, what="back in the switcher")
        await highlight(pilot, screen, "pst-ssh")
        await pilot.press("enter")
        await wait_for(pilot, lambda: cid in main.container_list.rows_by_id, timeout=30, what="the list over ssh")
        assert app.sub_title == f"pst-ssh ({url})"
        assert main.container_list.select_id(cid)
        await pilot.press("x")
        await wait_for(pilot, lambda: main.container_list.rows_by_id[cid].state == "exited", timeout=30,
                       what="stopped over ssh (and its event came back over ssh)")
    assert server.dials >= 2  # the call client and the event stream each dialled


# --- tcp:// with TLS: a portside daemon that verifies client certificates, reached through a docker context ---


def _make_tls(d: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and a CA nobody used."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    out: dict[str, Path] = {}

    def write(name: str, obj: Any) -> None:
        path = d / f"{name}.pem"
        if isinstance(obj, ec.EllipticCurvePrivateKey):
            path.write_bytes(obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        else:
            path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
        out[name] = path

    def ca(cn: str) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(ca_key: Any, ca_cert: Any, cn: str, usage: Any, san: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    ca_key, ca_cert = ca("pst-test CA")
    write("ca", ca_cert)
    key, cert = leaf(ca_key, ca_cert, "127.0.0.1", ExtendedKeyUsageOID.SERVER_AUTH, True)
    write("server-key", key)
    write("server-cert", cert)
    key, cert = leaf(ca_key, ca_cert, "pst-client", ExtendedKeyUsageOID.CLIENT_AUTH, False)
    write("key", key)
    write("cert", cert)
    write("other-ca", ca("pst-other CA")[1])
    return out


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def tls_daemon(tmp_path: Path) -> Iterator[tuple[str, dict[str, Path]]]:
    if os.geteuid() != 0:
        pytest.skip("the portside daemon needs root")
    from tests.api.conftest import new_daemon, remove_daemon_dirs

    certs_dir = tmp_path / "tls"
    certs_dir.mkdir()
    files = _make_tls(certs_dir)
    url = f"tcp://127.0.0.1:{_free_port()}"
    d = new_daemon(["-H", url, "--tlsverify", "--tlscacert", str(files["ca"]), "--tlscert",
                    str(files["server-cert"]), "--tlskey", str(files["server-key"])])
    try:
        d.start()
        yield url, files
    finally:
        d.stop()
        d.cleanup_containers()
        d.destroy_network_state()
        remove_daemon_dirs(d)


@pytest.mark.integration
async def test_a_tls_host_through_a_docker_context(tls_daemon: tuple[str, dict[str, Path]], fake_home: Path,
                                                   tmp_path: Path) -> None:
    from app import hosts
    from app.endpoint import Endpoint
    from app.host_pool import probe

    url, f = tls_daemon
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    out = subprocess.run([DOCKER, "context", "create", "pst-tls", "--docker",
                          f"host={url},ca={f['ca']},cert={f['cert']},key={f['key']}"],
                         capture_output=True, text=True, timeout=60, check=False, env={**env, "HOME": str(fake_home)})
    assert out.returncode == 0, out.stderr
    # the docker CLI reaches it through the context, so the context and the daemon's TLS are right
    cli = subprocess.run([DOCKER, "--context", "pst-tls", "version", "--format", "{{.Server.APIVersion}}"],
                         capture_output=True, text=True, timeout=60, check=False, env={**env, "HOME": str(fake_home)})
    assert cli.returncode == 0, cli.stderr
    ctx = hosts.load_context("pst-tls", {"HOME": str(fake_home)})
    assert ctx is not None and ctx.tls is not None
    assert probe(Endpoint(url, "host", "", tls=ctx.tls.config()))["ApiVersion"] == cli.stdout.strip()

    # without a client certificate, and trusting another CA: each says which TLS problem it is
    no_cert = hosts.Tls(str(f["ca"])).config()
    with pytest.raises(Exception) as err:
        probe(Endpoint(url, "host", "", tls=no_cert))
    assert hosts.describe_error(err.value, tls=no_cert) == \
        "TLS error: the host closed the connection: it wants a client certificate (none given)"
    with pytest.raises(Exception) as err:
        probe(Endpoint(url, "host", "", tls=hosts.Tls(str(f["other-ca"]), str(f["cert"]), str(f["key"])).config()))
    assert hosts.describe_error(err.value).startswith("TLS error: certificate not trusted")

    app = PortsideApp(host=dead_socket(tmp_path / "start.sock"), config=Config(hub_search=False))
    async with app.run_test(size=(140, 44)) as pilot:
        main = main_screen(app)
        await _switch_to(pilot, "pst-tls")
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), timeout=30, what="connected over TLS")
        assert app.sub_title == f"context pst-tls ({url})"
        screen = await open_screen(pilot, "h", HostsScreen)
        texts = dict(zip([h.name for h in screen.hosts], option_texts(screen), strict=True))
        assert "connected: portside" in texts["pst-tls"] and "TLS" in texts["pst-tls"]
