"""The new-container search asks loopback registries over plain HTTP, as Docker does, and no other host."""

import pytest

from app.images import _registry_url


@pytest.mark.parametrize("host", ["127.0.0.1:5000", "127.8.9.10", "localhost:5000", "localhost", "[::1]:5000"])
def test_loopback_registries_are_plain_http(host: str) -> None:
    assert _registry_url(host, "/v2/") == f"http://{host}/v2/"


@pytest.mark.parametrize("host", ["127.example.com", "localhost.example.com:5000", "registry:5000", "10.0.0.1:5000"])
def test_other_registries_are_https(host: str) -> None:
    assert _registry_url(host, "/v2/") == f"https://{host}/v2/"
