"""Docker's reference grammar and normalisation."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.images import platform as platforms
from engine.images.reference import parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("ref", "full", "familiar"),
    [
        ("nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("nginx:1.25", "docker.io/library/nginx:1.25", "nginx:1.25"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("docker.io/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("index.docker.io/library/nginx", "docker.io/library/nginx:latest", "nginx:latest"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
        ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
        (f"host.io/app@{D}", f"host.io/app@{D}", f"host.io/app@{D}"),
        (f"host:1/app:tag@{D}", f"host:1/app:tag@{D}", f"host:1/app:tag@{D}"),
        ("[::1]:5000/app", "[::1]:5000/app:latest", "[::1]:5000/app:latest"),
        ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest", "a__b/c-d.e_f:latest"),
    ],
)
def test_normalisation(ref: str, full: str, familiar: str) -> None:
    r = parse(ref)
    assert str(r) == full
    assert r.familiar == familiar


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("", "invalid reference format"),
        ("Nginx", "repository name (library/Nginx) must be lowercase"),
        ("nginx:", "invalid reference format"),
        ("nginx:bad tag", "invalid reference format"),
        ("-nginx", "invalid reference format"),
        ("nginx@sha256:abc", "invalid reference format"),
        ("nginx@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("a" * 64, "cannot specify 64-byte hexadecimal strings"),
        ("host/" + "a" * 260, "must not be more than 255 characters"),
        ("a//b", "invalid reference format"),
        ("nginx:" + "t" * 129, "invalid reference format"),
    ],
)
def test_invalid_forms(ref: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(ref)


def test_platforms() -> None:
    assert str(platforms.parse("linux/arm64/v8")) == "linux/arm64"
    assert str(platforms.parse("linux/arm/v7")) == "linux/arm/v7"
    entries = [
        {"digest": "a", "platform": {"os": "unknown", "architecture": "unknown"}},
        {"digest": "b", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
        {"digest": "c", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"digest": "d", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]
    assert platforms.choose(entries, platforms.parse("linux/arm/v7"))["digest"] == "c"
    assert platforms.choose(entries, platforms.parse("linux/arm64"))["digest"] == "d"
    with pytest.raises(Exception, match="no matching manifest for linux/amd64"):
        platforms.choose(entries, platforms.parse("linux/amd64"))
