"""Debian's docker-registry on 127.0.0.1, plain or with TLS and htpasswd basic auth, filled by skopeo."""

from __future__ import annotations

import base64
import datetime
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

REGISTRY_BIN = "/usr/bin/docker-registry"

CONFIG = """version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:{port}
  secret: portside-test-secret
{tls}{auth}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    """A running registry. `host` is what image references use; `url` what HTTP clients use."""

    workdir: Path
    tls: bool = False
    username: str | None = None
    password: str | None = None
    port: int = 0
    ca_cert: Path | None = None
    certs_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        storage = self.workdir / "storage"
        storage.mkdir(exist_ok=True)
        tls = auth = ""
        if self.tls:
            self._make_certs()
            tls = f"  tls:\n    certificate: {self.workdir / 'server.crt'}\n    key: {self.workdir / 'server.key'}\n"
        if self.username:
            htpasswd = self.workdir / "htpasswd"
            line = subprocess.run(
                ["htpasswd", "-Bbn", self.username, self.password or ""],
                capture_output=True, text=True, check=True, timeout=30,
            ).stdout.strip()
            htpasswd.write_text(line + "\n")
            auth = f"auth:\n  htpasswd:\n    realm: portside-test\n    path: {htpasswd}\n"
        # Bind races with other sessions picking the same free port are rare; retry a few ports.
        for _ in range(5):
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(CONFIG.format(storage=storage, port=self.port, tls=tls, auth=auth))
            log = (self.workdir / "registry.log").open("ab")
            self.process = subprocess.Popen(
                [REGISTRY_BIN, "serve", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
            log.close()
            if self._wait_ready():
                if self.tls:
                    # A certs.d-style folder, as Docker reads per registry: certs.d/<host:port>/ca.crt.
                    assert self.ca_cert is not None
                    self.certs_dir = self.workdir / "certs.d" / self.host
                    self.certs_dir.mkdir(parents=True, exist_ok=True)
                    (self.certs_dir / "ca.crt").write_bytes(self.ca_cert.read_bytes())
                return
            self.stop()
        raise RuntimeError(f"docker-registry did not start; see {self.workdir / 'registry.log'}")

    def _wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                status = self.get("/v2/")[0]
                if status in (200, 401):
                    return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    # -- plain HTTP access, for tests that check what the registry serves ------------------------------
    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=str(self.ca_cert))

    def get(self, path: str, accept: str | None = None, auth: bool = True) -> tuple[int, dict[str, str], bytes]:
        """GET a registry path; header names come back lower-cased."""
        req = urllib.request.Request(self.url + path)
        if accept:
            req.add_header("Accept", accept)
        if auth and self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.ssl_context()) as resp:
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

    # -- filling it --------------------------------------------------------------------------------------
    def push_layout(self, layout: Path, tag: str, dest: str, *, fmt: str | None, all_platforms: bool = False) -> None:
        """skopeo copy from an OCI layout; fmt "v2s2" converts to Docker schema2, "oci" keeps OCI, None as is."""
        cmd = ["skopeo", "copy", "--quiet", "--retry-times", "2"]
        if all_platforms:
            cmd.append("--all")
        if fmt:
            cmd += ["--format", fmt]
        if self.tls:
            cmd += ["--dest-cert-dir", str(self.certs_dir)]
        else:
            cmd.append("--dest-tls-verify=false")
        if self.username:
            cmd += ["--dest-creds", f"{self.username}:{self.password}"]
        cmd += [f"oci:{layout}:{tag}", f"docker://{self.host}/{dest}"]
        subprocess.run(cmd, check=True, capture_output=True, timeout=300, env={**os.environ, "HOME": str(self.workdir)})

    def _make_certs(self) -> None:
        """A self-signed CA and a server certificate for 127.0.0.1 and localhost, signed by it."""
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portside-test CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name).issuer_name(ca_name)
            .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        import ipaddress

        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        self.ca_cert = self.workdir / "ca.crt"
        self.ca_cert.write_bytes(ca.public_bytes(pem))
        (self.workdir / "server.crt").write_bytes(cert.public_bytes(pem))
        (self.workdir / "server.key").write_bytes(
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )


def fill(registry: Registry, layouts: dict[str, Path]) -> None:
    """Push every image of the test bed in the forms real registries serve."""
    push = registry.push_layout
    push(layouts["busybox"], "latest", "testbed/busybox:latest", fmt="v2s2")
    push(layouts["busybox"], "latest", "testbed/busybox:oci", fmt="oci")
    push(layouts["nginx"], "latest", "testbed/nginx:latest", fmt="v2s2")
    push(layouts["nginx"], "latest", "testbed/nginx:oci", fmt="oci")
    push(layouts["layers"], "latest", "testbed/layers:latest", fmt="v2s2")
    push(layouts["multi"], "latest", "testbed/multi:latest", fmt=None, all_platforms=True)
    push(layouts["zstd"], "latest", "testbed/zstd:latest", fmt=None)
