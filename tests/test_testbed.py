"""The test bed serves real images from real registries: checked over plain HTTP, digest by digest."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

import pytest
import zstandard

from tests.conftest import TestBed
from tests.testbed import images
from tests.testbed.registry import Registry

pytestmark = pytest.mark.integration

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ",".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX])


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(reg: Registry, repo: str, ref: str) -> tuple[dict, str]:
    status, headers, body = reg.get(f"/v2/{repo}/manifests/{ref}", accept=ACCEPT)
    assert status == 200, body
    assert headers["docker-content-digest"] == digest_of(body)
    return json.loads(body), headers["content-type"]


def blob(reg: Registry, repo: str, digest: str) -> bytes:
    status, _, body = reg.get(f"/v2/{repo}/blobs/{digest}")
    assert status == 200
    assert digest_of(body) == digest, "the registry served a blob whose content does not match its digest"
    return body


def test_busybox_is_served_as_docker_schema2_with_verified_blobs(registry: Registry) -> None:
    m, ctype = manifest(registry, "testbed/busybox", "latest")
    assert ctype == DOCKER_MANIFEST and m["mediaType"] == DOCKER_MANIFEST
    config = json.loads(blob(registry, "testbed/busybox", m["config"]["digest"]))
    assert config["config"]["Cmd"] == ["sh"]
    assert config["architecture"] == "amd64"
    (layer,) = m["layers"]
    data = blob(registry, "testbed/busybox", layer["digest"])
    assert layer["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    tar = zlib.decompress(data, wbits=31)
    # The diff id in the config is the digest of the uncompressed layer.
    assert config["rootfs"]["diff_ids"] == [digest_of(tar)]
    names = tarfile.open(fileobj=io.BytesIO(tar)).getnames()
    assert "bin/busybox" in names and "etc/passwd" in names


def test_oci_forms_are_served_with_oci_media_types(registry: Registry) -> None:
    for repo in ("testbed/busybox", "testbed/nginx"):
        m, ctype = manifest(registry, repo, "oci")
        assert ctype == OCI_MANIFEST
        assert all(layer["mediaType"].startswith("application/vnd.oci.image.layer.v1.tar") for layer in m["layers"])


def test_nginx_image_exposes_80_and_runs_nginx(registry: Registry) -> None:
    m, _ = manifest(registry, "testbed/nginx", "latest")
    config = json.loads(blob(registry, "testbed/nginx", m["config"]["digest"]))["config"]
    assert config["ExposedPorts"] == {"80/tcp": {}}
    assert config["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert len(m["layers"]) == 2


def test_multi_platform_index_lists_amd64_and_arm64(registry: Registry) -> None:
    index, ctype = manifest(registry, "testbed/multi", "latest")
    assert ctype == OCI_INDEX
    platforms = {(d["platform"]["os"], d["platform"]["architecture"]) for d in index["manifests"]}
    assert platforms == {("linux", "amd64"), ("linux", "arm64")}
    for desc in index["manifests"]:
        m, _ = manifest(registry, "testbed/multi", desc["digest"])
        last = zlib.decompress(blob(registry, "testbed/multi", m["layers"][-1]["digest"]), wbits=31)
        marker = tarfile.open(fileobj=io.BytesIO(last)).extractfile("etc/platform")
        assert marker is not None
        assert marker.read().decode().strip() == f"linux/{desc['platform']['architecture']}"


def test_zstd_layers_are_zstd(registry: Registry) -> None:
    m, _ = manifest(registry, "testbed/zstd", "latest")
    for layer in m["layers"]:
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
        data = blob(registry, "testbed/zstd", layer["digest"])
        assert data[:4] == b"\x28\xb5\x2f\xfd"
        zstandard.ZstdDecompressor().decompressobj().decompress(data)


def test_layers_image_carries_whiteouts_and_opaque_dirs(registry: Registry) -> None:
    m, _ = manifest(registry, "testbed/layers", "latest")
    assert len(m["layers"]) == 3
    last = zlib.decompress(blob(registry, "testbed/layers", m["layers"][2]["digest"]), wbits=31)
    members = {t.name: t for t in tarfile.open(fileobj=io.BytesIO(last)).getmembers()}
    assert "data/.wh.gone" in members and "data/.wh.gonedir" in members
    assert "opaque/.wh..wh..opq" in members
    assert members["filedir"].isdir()
    assert members["dirlink"].issym() and members["dirlink"].linkname == "data"


def test_auth_registry_wants_basic_auth_over_verified_tls(auth_registry: Registry) -> None:
    status, headers, _ = auth_registry.get("/v2/", auth=False)
    assert status == 401
    assert headers["www-authenticate"].startswith("Basic")
    status, _, _ = auth_registry.get("/v2/testbed/busybox/tags/list")
    assert status == 200
    m, _ = manifest(auth_registry, "testbed/busybox", "latest")
    assert m["mediaType"] == DOCKER_MANIFEST
    # Without the test CA the certificate is not trusted.
    with pytest.raises(urllib.error.URLError) as err:
        urllib.request.urlopen(auth_registry.url + "/v2/", timeout=10, context=ssl.create_default_context())
    assert isinstance(err.value.reason, ssl.SSLCertVerificationError)
    assert auth_registry.certs_dir is not None
    assert (auth_registry.certs_dir / "ca.crt").read_bytes() == auth_registry.ca_cert.read_bytes()  # type: ignore[union-attr]


def test_rootfs_binaries_run_from_their_own_libraries(testbed: TestBed, tmp_path: Path) -> None:
    out = subprocess.run(
        ["chroot", str(testbed.busybox_rootfs), "/bin/sh", "-c", "echo hi from $(id -un)"],
        capture_output=True, text=True, timeout=30, check=True,
    )
    assert out.stdout == "hi from root\n"
    # nginx -t opens its logs (and would create dev/stdout as a file), so it runs on a copy: the cached
    # rootfs is shared and read-only.
    nginx_copy = tmp_path / "nginx"
    shutil.copytree(testbed.nginx_rootfs, nginx_copy, symlinks=True)
    out = subprocess.run(
        ["chroot", str(nginx_copy), "/usr/sbin/nginx", "-t"],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "test is successful" in out.stderr
    passwd = (testbed.busybox_rootfs / "etc" / "passwd").read_text()
    assert "root:x:0:0:" in passwd and "user:x:1000:1000:" in passwd


def test_cache_is_reused_while_inputs_are_unchanged(testbed: TestBed) -> None:
    again = images.ensure_built()
    assert again.busybox_rootfs == testbed.busybox_rootfs
    assert (again.root / "complete").exists()
    # Nothing in the session may write into the shared root filesystems.
    for stray in ("dev/stdout", "dev/stderr", "run/nginx.pid"):
        assert not (testbed.nginx_rootfs / stray).exists(), stray
