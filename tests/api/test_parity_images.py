"""Image-side Docker parity: GET /distribution/{name}/json against the test registry (docker-py's
get_registry_data included), and `docker load` of broken archives (Docker's words, nothing left behind) and
of multi-image archives with all their tags."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.api.conftest import DOCKER, PortsideDaemon
from tests.testbed.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = f"{OCI_INDEX}, application/vnd.docker.distribution.manifest.list.v2+json, {OCI_MANIFEST}, {MANIFEST_V2}"


@pytest.fixture
def client(daemon: PortsideDaemon) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=daemon.host, version="auto", timeout=120)
    try:
        yield c
    finally:
        c.close()


def _distribution(daemon: PortsideDaemon, name: str, headers: dict[str, str] | None = None,
                  ) -> tuple[int, dict]:
    status, _h, body = daemon.request("GET", f"/v1.50/distribution/{name}/json", headers=headers)
    return status, json.loads(body)


def _registry_manifest(registry: Registry, repo: str, ref: str) -> tuple[str, int, dict]:
    status, _headers, raw = registry.get(f"/v2/{repo}/manifests/{ref}", accept=ACCEPT)
    assert status == 200
    return "sha256:" + hashlib.sha256(raw).hexdigest(), len(raw), json.loads(raw)


# ---- /distribution ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["latest", "oci"])
def test_distribution_of_a_single_manifest_names_the_config_platform(daemon: PortsideDaemon, registry: Registry,
                                                                    tag: str) -> None:
    digest, size, manifest = _registry_manifest(registry, "testbed/busybox", tag)
    _s, _h, config_raw = registry.get(f"/v2/testbed/busybox/blobs/{manifest['config']['digest']}")
    config = json.loads(config_raw)
    status, body = _distribution(daemon, f"{registry.host}/testbed/busybox:{tag}")
    assert status == 200, body
    assert body["Descriptor"] == {"mediaType": manifest["mediaType"], "digest": digest, "size": size}
    assert body["Platforms"] == [{"architecture": config["architecture"], "os": config["os"]}]
    # by digest: the same answer
    status, by_digest = _distribution(daemon, f"{registry.host}/testbed/busybox@{digest}")
    assert status == 200 and by_digest == body


def test_distribution_of_an_index_lists_its_platforms(daemon: PortsideDaemon, registry: Registry) -> None:
    digest, size, index = _registry_manifest(registry, "testbed/multi", "latest")
    assert index["mediaType"] == OCI_INDEX
    status, body = _distribution(daemon, f"{registry.host}/testbed/multi:latest")
    assert status == 200, body
    assert body["Descriptor"] == {"mediaType": OCI_INDEX, "digest": digest, "size": size}
    want = [{k: v for k, v in m["platform"].items() if k in ("architecture", "os", "variant")}
            for m in index["manifests"]]
    assert body["Platforms"] == want
    assert {"architecture": "arm64", "os": "linux", "variant": "v8"} in body["Platforms"]


def test_distribution_errors_are_dockerds(daemon: PortsideDaemon, registry: Registry) -> None:
    for name in ("testbed/no-such-repo:latest", "testbed/busybox:no-such-tag", "testbed/busybox@sha256:" + "0" * 64):
        status, body = _distribution(daemon, f"{registry.host}/{name}")
        assert (status, body) == (404, {"message": "manifest unknown: manifest unknown"}), name
    assert _distribution(daemon, "sha256:" + "a" * 64) == (500, {"message": "no manifest found for full image ID"})
    status, body = _distribution(daemon, "x:")
    assert status == 400 and body["message"] == "invalid reference format"
    status, body = _distribution(daemon, "127.0.0.1:1/nothing:latest")
    assert status == 500 and "connection refused" in body["message"]


def test_dockerpy_registry_data_and_has_platform(client: docker.DockerClient, registry: Registry) -> None:
    digest, _size, _m = _registry_manifest(registry, "testbed/busybox", "latest")
    data = client.images.get_registry_data(f"{registry.host}/testbed/busybox:latest")
    assert data.id == digest
    assert data.has_platform("linux/amd64") and data.has_platform("linux")
    assert not data.has_platform("linux/s390x")
    multi = client.images.get_registry_data(f"{registry.host}/testbed/multi:latest")
    assert multi.has_platform("linux/arm64/v8") and multi.has_platform("linux/amd64")
    assert not multi.has_platform("windows/amd64")
    with pytest.raises(docker.errors.NotFound, match="manifest unknown"):
        client.images.get_registry_data(f"{registry.host}/testbed/no-such-repo:latest")


def test_distribution_honours_x_registry_auth(daemon: PortsideDaemon, auth_registry: Registry,
                                              client: docker.DockerClient) -> None:
    certs = daemon.data_root / "certs.d" / auth_registry.host
    certs.mkdir(parents=True, exist_ok=True)
    assert auth_registry.ca_cert is not None
    (certs / "ca.crt").write_bytes(auth_registry.ca_cert.read_bytes())
    name = f"{auth_registry.host}/testbed/busybox:latest"
    status, body = _distribution(daemon, name)
    assert status == 401 and "authentication required" in body["message"], body
    creds = {"username": auth_registry.username, "password": auth_registry.password,
             "serveraddress": auth_registry.host}
    header = base64.urlsafe_b64encode(json.dumps(creds).encode()).decode()
    status, body = _distribution(daemon, name, {"X-Registry-Auth": header})
    assert status == 200, body
    digest, _size, _m = _registry_manifest(auth_registry, "testbed/busybox", "latest")
    assert body["Descriptor"]["digest"] == digest
    data = client.images.get_registry_data(name, auth_config=creds)
    assert data.id == digest and data.has_platform("linux/amd64")


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_resolves_image_digests_through_distribution(daemon: PortsideDaemon, registry: Registry,
                                                             tmp_path: Path) -> None:
    # an image this daemon does not have: compose 1.29 asks /distribution/{name}/json for its digest
    image = f"{registry.host}/testbed/zstd:latest"
    daemon.docker("rmi", image)
    digest, _size, _m = _registry_manifest(registry, "testbed/zstd", "latest")
    (tmp_path / "docker-compose.yml").write_text(f'version: "3.7"\nservices:\n  app:\n    image: {image}\n')
    env = dict(os.environ, DOCKER_HOST=daemon.host, COMPOSE_PROJECT_NAME=f"pstdist{os.getpid()}")
    out = subprocess.run(["docker-compose", "config", "--resolve-image-digests"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    # name:tag@digest is compose's form for a digest from the registry (a local image's RepoDigests has no tag)
    assert f"image: {image}@{digest}" in out.stdout, out.stdout


# ---- docker load of broken archives -----------------------------------------------------------------------------


def _layer(marker: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        ti = tarfile.TarInfo("pst-marker")
        ti.size = len(marker)
        t.addfile(ti, io.BytesIO(marker))
    return buf.getvalue()


def _config(diff_ids: list[str]) -> bytes:
    return json.dumps({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "pst test"} for _ in diff_ids],
    }).encode()


def _sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def _archive(images: list[tuple[list[str], list[bytes], bytes | None]], *, drop: tuple[str, ...] = (),
             manifest: bytes | None = None) -> bytes:
    """A docker-archive (Docker 20.10's layout): per image its layers (<dir>/layer.tar), config, then manifest.json.
    `images`: (tags, layer tars, config or None for one made from the layers)."""
    buf = io.BytesIO()
    entries = []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        def add(name: str, data: bytes) -> None:
            if name in drop:
                return
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))

        for tags, layers, config in images:
            config = config or _config([_sha(x) for x in layers])
            names = []
            for layer in layers:
                names.append(f"{_sha(layer)[7:]}/layer.tar")
                add(names[-1], layer)
            add(f"{_sha(config)[7:]}.json", config)
            entries.append({"Config": f"{_sha(config)[7:]}.json", "RepoTags": tags, "Layers": names})
        add("manifest.json", manifest if manifest is not None else json.dumps(entries).encode())
    return buf.getvalue()


def _store_state(daemon: PortsideDaemon) -> dict[str, list[str]]:
    """What the image store holds: blobs, ingests, snapshots, temp files, and the images with their tags."""
    root = daemon.data_root / "image"

    def names(d: Path) -> list[str]:
        return sorted(p.name for p in d.iterdir()) if d.exists() else []

    images = daemon.docker("images", "-a", "--no-trunc", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}")
    assert images.returncode == 0, images.stderr
    return {"blobs": names(root / "content" / "blobs" / "sha256"), "ingest": names(root / "content" / "ingest"),
            "snapshots": names(root / "snapshots"), "tmp": names(root / "tmp"),
            "images": sorted(images.stdout.splitlines())}


def _load_fails(daemon: PortsideDaemon, path: Path, wording: str) -> None:
    before = _store_state(daemon)
    out = daemon.docker("load", "-i", str(path))
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert wording in out.stderr, out.stderr
    assert "Error response from daemon" not in out.stderr  # the error comes in the stream, as dockerd sends it
    assert _store_state(daemon) == before


EOF_TEXT = "Error processing tar file(exit status 1): unexpected EOF"


def test_load_of_a_cut_archive_fails_and_leaves_nothing(daemon: PortsideDaemon, tmp_path: Path) -> None:
    tag = f"pst-load-cut-{os.urandom(3).hex()}:v1"
    layers = [_layer(os.urandom(3000)), _layer(os.urandom(700))]
    data = _archive([([tag], layers, None)])
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(data))}
    first = members[f"{_sha(layers[0])[7:]}/layer.tar"]
    second = members[f"{_sha(layers[1])[7:]}/layer.tar"]
    manifest = members["manifest.json"]
    cuts = {
        100: EOF_TEXT,                                      # inside the first header
        first.offset_data + 1000: EOF_TEXT,                 # inside the first layer
        first.offset_data + first.size - 1: EOF_TEXT,
        second.offset + 300: EOF_TEXT,                      # inside the second layer's header
        manifest.offset_data + 5: EOF_TEXT,                 # inside manifest.json
        # at a header boundary before manifest.json: a complete archive without one, so dockerd looks for the
        # pre-1.10 format's `repositories` file
        manifest.offset: "repositories: no such file or directory",
        0: "repositories: no such file or directory",
    }
    for cut, wording in cuts.items():
        p = tmp_path / f"cut-{cut}.tar"
        p.write_bytes(data[:cut])
        _load_fails(daemon, p, wording)
    # and the whole archive loads
    whole = tmp_path / "whole.tar"
    whole.write_bytes(data)
    try:
        out = daemon.docker("load", "-i", str(whole))
        assert out.returncode == 0 and out.stdout == f"Loaded image: {tag}\n", out.stderr
    finally:
        daemon.docker("rmi", tag)


def test_load_of_garbage_fails_with_dockers_words(daemon: PortsideDaemon, tmp_path: Path) -> None:
    p = tmp_path / "garbage.tar"
    p.write_bytes(b"\x01" * 5000)
    _load_fails(daemon, p, "Error processing tar file(exit status 1): archive/tar: invalid tar header")
    p.write_bytes(b"this is not a tar archive\n" * 10)  # shorter than one block
    _load_fails(daemon, p, EOF_TEXT)
    # a valid first entry, then a corrupt header
    data = bytearray(_archive([(["pst-load-garbage:v1"], [_layer(b"x" * 600)], None)]))
    members = list(tarfile.open(fileobj=io.BytesIO(bytes(data))))
    second_header = members[1].offset
    data[second_header:second_header + 512] = b"\x02" * 512
    p.write_bytes(bytes(data))
    _load_fails(daemon, p, "archive/tar: invalid tar header")


def test_load_with_a_missing_layer_or_config_leaves_nothing(daemon: PortsideDaemon, tmp_path: Path) -> None:
    tag_a, tag_b = f"pst-load-miss-{os.urandom(3).hex()}:a", f"pst-load-miss-{os.urandom(3).hex()}:b"
    ok_layer, lost_layer = _layer(os.urandom(900)), _layer(os.urandom(900))
    # the first image is complete: it must not be loaded either when the second fails
    data = _archive([([tag_a], [ok_layer], None), ([tag_b], [lost_layer], None)],
                    drop=(f"{_sha(lost_layer)[7:]}/layer.tar",))
    p = tmp_path / "missing-layer.tar"
    p.write_bytes(data)
    _load_fails(daemon, p, f"{_sha(lost_layer)[7:]}/layer.tar: no such file or directory")
    config = _config([_sha(ok_layer)])
    p.write_bytes(_archive([([tag_a], [ok_layer], config)], drop=(f"{_sha(config)[7:]}.json",)))
    _load_fails(daemon, p, f"{_sha(config)[7:]}.json: no such file or directory")
    for t in (tag_a, tag_b):
        assert daemon.docker("image", "inspect", t).returncode == 1


def test_load_of_a_layer_that_does_not_match_its_diff_id(daemon: PortsideDaemon, tmp_path: Path) -> None:
    tag = f"pst-load-diff-{os.urandom(3).hex()}:v1"
    good, other = _layer(os.urandom(800)), _layer(os.urandom(800))
    base = _layer(os.urandom(500))
    # layer 1's file is not the one the config names
    config = _config([_sha(base), _sha(good)])
    data = _archive([([tag], [base, good], config)])
    data = data.replace(good, other)  # same size, other bytes: the file the archive carries is `other`
    p = tmp_path / "diff.tar"
    p.write_bytes(data)
    _load_fails(daemon, p, f'invalid diffID for layer 1: expected "{_sha(good)}", got "{_sha(other)}"')
    assert daemon.docker("image", "inspect", tag).returncode == 1


def test_load_of_a_malformed_manifest_json_fails_and_leaves_nothing(daemon: PortsideDaemon, tmp_path: Path) -> None:
    layer = _layer(os.urandom(600))
    p = tmp_path / "shape.tar"
    for manifest, wording in ((b"[{not json", "invalid manifest.json"),
                              (b'{"Config": "x"}', "invalid manifest.json: not a list"),
                              (b'[{"Layers": []}]', "invalid archive: malformed image description"),
                              (b'["a string"]', "invalid archive: malformed image description")):
        p.write_bytes(_archive([(["pst-load-shape:v1"], [layer], None)], manifest=manifest))
        _load_fails(daemon, p, wording)


# ---- docker save | docker load of several images and tags --------------------------------------------------------


def test_save_load_round_trips_several_images_and_tags(daemon: PortsideDaemon, registry: Registry,
                                                       client: docker.DockerClient, tmp_path: Path) -> None:
    suffix = os.urandom(3).hex()
    a1, a2, b1 = f"pst-rt-a-{suffix}:one", f"pst-rt-a-{suffix}:two", f"pst-rt-b-{suffix}:one"
    for src, tags in ((f"{registry.host}/testbed/busybox:latest", (a1, a2)),
                      (f"{registry.host}/testbed/layers:latest", (b1,))):
        assert daemon.docker("pull", src).returncode == 0
        for t in tags:
            assert daemon.docker("tag", src, t).returncode == 0
    ids = {t: json.loads(daemon.docker("image", "inspect", t).stdout)[0]["Id"] for t in (a1, a2, b1)}
    archive = tmp_path / "three.tar"
    try:
        # docker save a b c | docker load, through a pipe
        cli = f"{DOCKER} -H {daemon.host}"
        pipe = subprocess.run(["bash", "-c", f"set -o pipefail; {cli} save {a1} {a2} {b1} | {cli} load"],
                              capture_output=True, text=True, timeout=180, check=False,
                              env={**os.environ, "DOCKER_CONFIG": str(daemon.tmp / "cli")})
        assert pipe.returncode == 0, pipe.stderr
        assert sorted(pipe.stdout.splitlines()) == sorted(f"Loaded image: {t}" for t in (a1, a2, b1))
        # and into an engine that lost them
        save = daemon.docker("save", "-o", str(archive), a1, a2, b1)
        assert save.returncode == 0, save.stderr
        assert daemon.docker("rmi", a1, a2, b1).returncode == 0
        load = daemon.docker("load", "-i", str(archive))
        assert load.returncode == 0, load.stderr
        assert sorted(load.stdout.splitlines()) == sorted(f"Loaded image: {t}" for t in (a1, a2, b1))
        for t, image_id in ids.items():
            insp = json.loads(daemon.docker("image", "inspect", t).stdout)[0]
            assert insp["Id"] == image_id
        a_tags = json.loads(daemon.docker("image", "inspect", a1).stdout)[0]["RepoTags"]
        assert {a1, a2} <= set(a_tags)
        # docker-py's images.load of the same stream
        assert daemon.docker("rmi", a1, a2, b1).returncode == 0
        loaded = client.images.load(archive.read_bytes())
        assert {t for img in loaded for t in img.tags} >= {a1, a2, b1}
        assert {img.id for img in loaded} == set(ids.values())
        # and a broken stream through docker-py raises ImageLoadError with Docker's words
        with pytest.raises(docker.errors.ImageLoadError, match="unexpected EOF"):
            client.images.load(archive.read_bytes()[:3000])
    finally:
        daemon.docker("rmi", a1, a2, b1)


# ---- what the docker CLI shows, as dockerd shows it ---------------------------------------------------------------


def test_images_reference_filter_lists_only_the_matching_tags(daemon: PortsideDaemon, registry: Registry) -> None:
    src = f"{registry.host}/testbed/busybox:latest"
    tag = f"pst-ref-{os.urandom(3).hex()}"
    assert daemon.docker("pull", src).returncode == 0
    assert daemon.docker("tag", src, f"{tag}:one").returncode == 0
    assert daemon.docker("tag", src, f"{tag}:two").returncode == 0
    try:
        def listed(*filters: str) -> list[str]:
            args = [x for f in filters for x in ("--filter", f"reference={f}")]
            out = daemon.docker("images", "--format", "{{.Repository}}:{{.Tag}}", *args)
            assert out.returncode == 0, out.stderr
            return sorted(out.stdout.split())

        # the image also carries the registry's tag: dockerd lists only the tags that match
        assert listed(tag) == [f"{tag}:one", f"{tag}:two"]
        assert listed(f"{tag}:t*") == [f"{tag}:two"]
        assert listed(f"{registry.host}/testbed/*") == sorted(
            t for t in listed(f"{registry.host}/testbed/*") if t.startswith(f"{registry.host}/testbed/"))
        assert src in listed(f"{registry.host}/testbed/*")
        assert listed("*/busybox") == []  # path.Match: `*` does not cross a `/`
        bad = daemon.docker("images", "--filter", "dangling=maybe")
        assert bad.returncode == 1 and "invalid filter 'dangling=[maybe]'" in bad.stderr
    finally:
        daemon.docker("rmi", f"{tag}:one", f"{tag}:two")


def test_image_prune_until_takes_durations_and_refuses_garbage(daemon: PortsideDaemon) -> None:
    bad = daemon.docker("image", "prune", "-f", "--filter", "until=bogus")
    assert bad.returncode == 1 and 'failed to parse value as time or duration: "bogus"' in bad.stderr
    # an image made now is not older than 24h: kept; with until=0s (now) it goes. The label keeps the prunes
    # off other tests' images.
    label = f"pst-prune={os.urandom(3).hex()}"
    made = daemon.docker("import", "--change", f"LABEL {label}", "-", input="")
    assert made.returncode == 0, made.stderr
    image_id = made.stdout.strip()

    def prune(until: str) -> None:
        out = daemon.docker("image", "prune", "-f", "--filter", f"until={until}", "--filter", f"label={label}")
        assert out.returncode == 0, out.stderr

    try:
        for until in ("24h", "1h30m", "2000-01-01T00:00:00Z"):
            prune(until)
            assert daemon.docker("image", "inspect", image_id).returncode == 0, until
        prune("0s")
        assert daemon.docker("image", "inspect", image_id).returncode == 1
    finally:
        daemon.docker("rmi", image_id)


def test_import_of_an_empty_stream_makes_an_empty_image(daemon: PortsideDaemon) -> None:
    out = daemon.docker("import", "-", input="")
    assert out.returncode == 0, out.stderr
    image_id = out.stdout.strip()
    try:
        insp = json.loads(daemon.docker("image", "inspect", image_id).stdout)[0]
        # the empty tar, Docker's empty layer
        assert insp["RootFS"]["Layers"] == ["sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"]
    finally:
        daemon.docker("rmi", image_id)


def test_pull_of_a_missing_manifest_is_an_http_error(daemon: PortsideDaemon, registry: Registry) -> None:
    # dockerd answers before streaming: the CLI prints "Error response from daemon" and no "Pulling from"
    out = daemon.docker("pull", f"{registry.host}/testbed/busybox:no-such-tag")
    assert out.returncode == 1
    assert "Pulling from" not in out.stdout
    assert out.stderr.startswith("Error response from daemon: manifest for ") and "not found" in out.stderr


def test_push_of_a_missing_image_fails_in_the_stream(daemon: PortsideDaemon) -> None:
    name = f"pst-push-missing-{os.urandom(3).hex()}"
    out = daemon.docker("push", name)
    assert out.returncode == 1
    assert f"The push refers to repository [docker.io/library/{name}]" in out.stdout
    assert out.stderr.strip() == f"An image does not exist locally with the tag: {name}"


def test_commit_of_a_container_that_is_exiting(daemon: PortsideDaemon, busybox: str) -> None:
    # docker-py's RemoveImageTest: commit (pause=1) races the container's exit; the pause then finds no cgroup,
    # which came back as a 500 in about one of ten tries
    c = docker.APIClient(base_url=daemon.host, version="auto", timeout=60)
    try:
        for _ in range(15):
            cid = c.create_container(busybox, ["touch", "/pst-test"], name=f"pst-commit-{os.urandom(4).hex()}")["Id"]
            try:
                c.start(cid)
                image_id = c.commit(cid)["Id"]
                assert {"Deleted": image_id} in c.remove_image(image_id, force=True)
                assert not [x for x in c.images(all=True) if x["Id"] == image_id]
            finally:
                c.remove_container(cid, force=True)
    finally:
        c.close()


@pytest.fixture
def search_server(tmp_path: Path) -> Iterator[str]:
    """A registry's v1 search endpoint on 127.0.0.1 over TLS (a loopback registry is insecure: not verified)."""
    import datetime
    import http.server
    import ssl
    import threading

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    results = [
        {"name": "pst/official", "description": "", "star_count": 10, "is_official": True, "is_automated": False},
        {"name": "pst/popular", "description": "", "star_count": 50, "is_official": False, "is_automated": False},
        {"name": "pst/plain", "description": "", "star_count": 1, "is_official": False, "is_automated": False},
    ]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"num_results": len(results), "query": "pst", "results": results}).encode()
            self.send_response(200 if self.path.startswith("/v1/search") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        t.join(10)


def test_search_filters_are_applied_as_dockerd_does(daemon: PortsideDaemon, search_server: str) -> None:
    def names(*filters: str) -> list[str]:
        args = [x for f in filters for x in ("--filter", f)]
        out = daemon.docker("search", "--format", "{{.Name}}", *args, f"{search_server}/pst")
        assert out.returncode == 0, out.stderr
        return sorted(out.stdout.split())

    assert names() == ["pst/official", "pst/plain", "pst/popular"]
    assert names("is-official=true") == ["pst/official"]
    assert names("is-official=false") == ["pst/plain", "pst/popular"]
    assert names("stars=5") == ["pst/official", "pst/popular"]
    assert names("stars=5", "stars=20") == ["pst/popular"]
    assert names("is-automated=true") == []
    bad = daemon.docker("search", "--filter", "stars=many", f"{search_server}/pst")
    assert bad.returncode == 1 and "invalid filter 'stars=many'" in bad.stderr
    bad = daemon.docker("search", "--filter", "color=red", f"{search_server}/pst")
    assert bad.returncode == 1 and "invalid filter 'color'" in bad.stderr
