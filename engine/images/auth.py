"""Registry credentials: X-Registry-Auth from the client, or the docker config file (`auths`, `credsStore`,
`credHelpers` through `docker-credential-<helper>` programs), looked up as the docker CLI does."""

from __future__ import annotations

import base64
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InvalidArgument

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth refresh token from `docker login`
    registry_token: str = ""  # a bearer token to use as is

    @property
    def empty(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)


def from_auth_header(auth: dict | None) -> Credentials | None:
    """The decoded X-Registry-Auth of the Engine API (username/password/serveraddress/identitytoken/...)."""
    if not auth:
        return None
    c = Credentials(
        username=auth.get("username") or auth.get("Username") or "",
        password=auth.get("password") or auth.get("Password") or "",
        identity_token=auth.get("identitytoken") or auth.get("IdentityToken") or "",
        registry_token=auth.get("registrytoken") or auth.get("RegistryToken") or "",
    )
    return None if c.empty else c


def _config_key_matches(key: str, domain: str) -> bool:
    k = key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
    if domain == "docker.io":
        return k in ("index.docker.io", "docker.io", "registry-1.docker.io")
    return k == domain


class DockerConfig:
    """Reads a docker CLI config file (default ~/.docker/config.json) on each lookup, so `docker login` counts."""

    def __init__(self, path: Path | None) -> None:
        self.path = path

    def _load(self) -> dict:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as e:
            raise InvalidArgument(f"error reading docker config {self.path}: {e}") from None
        return data if isinstance(data, dict) else {}

    def credentials(self, domain: str) -> Credentials | None:
        cfg = self._load()
        helpers = cfg.get("credHelpers") or {}
        for key, helper in helpers.items():
            if _config_key_matches(key, domain):
                return _from_helper(helper, key)
        auths = cfg.get("auths") or {}
        if cfg.get("credsStore"):
            key = DOCKER_HUB_AUTH_KEY if domain == "docker.io" else domain
            for k in auths:
                if _config_key_matches(k, domain):
                    key = k
                    break
            c = _from_helper(cfg["credsStore"], key)
            if c is not None:
                return c
        for key, entry in auths.items():
            if not _config_key_matches(key, domain) or not isinstance(entry, dict):
                continue
            user, password = entry.get("username", ""), entry.get("password", "")
            if entry.get("auth"):
                try:
                    user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
                except (ValueError, UnicodeDecodeError):
                    raise InvalidArgument(f"invalid auth configuration for {key} in {self.path}") from None
            c = Credentials(user, password, identity_token=entry.get("identitytoken", ""))
            if not c.empty:
                return c
        return None


def _from_helper(helper: str, server: str) -> Credentials | None:
    try:
        out = subprocess.run(
            [f"docker-credential-{helper}", "get"], input=server, capture_output=True, text=True, timeout=30
        )
    except FileNotFoundError:
        raise InvalidArgument(
            f"error getting credentials - err: exec: \"docker-credential-{helper}\": executable file not found in $PATH"
        ) from None
    if out.returncode != 0:
        if "credentials not found" in (out.stdout + out.stderr).lower():
            return None
        raise InvalidArgument(f"error getting credentials - err: {out.stderr.strip() or out.stdout.strip()}")
    try:
        data = json.loads(out.stdout)
    except ValueError:
        raise InvalidArgument(f"error getting credentials: docker-credential-{helper} printed no JSON") from None
    user, secret = data.get("Username", ""), data.get("Secret", "")
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(user, secret)


def decode_registry_auth(header: str) -> dict[str, Any]:
    """X-Registry-Auth: base64url JSON of {username, password, serveraddress, identitytoken}."""
    if not header:
        return {}
    try:
        pad = "=" * (-len(header) % 4)
        data = json.loads(base64.urlsafe_b64decode(header + pad))
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) else {}
