"""docker-py clients for one endpoint, and the cancellable streams the TUI reads in thread workers.

Two low-level clients: `api` with a timeout for calls, and `streams` without one, because docker-py gives
`logs(follow=True)` the client's read timeout and a quiet container would end its log stream after a minute.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import docker
from docker.types.daemon import CancellableStream

from app.endpoint import Endpoint
from app.log_stream import LogStream

CALL_TIMEOUT = 60


def own_ca(client: Any, tls: Any) -> None:
    """A TLS host's own CA must be the one verified against: requests lets $REQUESTS_CA_BUNDLE/$CURL_CA_BUNDLE
    (set system-wide on many machines) override the session's CA file per request, and the host's certificate
    then fails as "self-signed certificate in certificate chain". The docker CLI ignores those variables."""
    if tls and getattr(tls, "ca_cert", None) and getattr(tls, "verify", False):
        client.trust_env = False


class EngineClient:
    def __init__(self, endpoint: Endpoint, version: str = "auto") -> None:
        """`version`: the API version to speak when it is known (the host pool asked /version with a short
        timeout already); "auto" asks the engine."""
        self.endpoint = endpoint
        self.api = docker.APIClient(base_url=endpoint.url, version=version, timeout=CALL_TIMEOUT, max_pool_size=16,
                                    tls=endpoint.tls or False)
        version = self.api.api_version
        self.streams = docker.APIClient(base_url=endpoint.url, version=version, timeout=None, max_pool_size=64,
                                        tls=endpoint.tls or False)
        self.server_version: dict[str, Any] = {}
        for c in (self.api, self.streams):
            own_ca(c, endpoint.tls)

    def ping(self) -> bool:
        return bool(self.api.ping())

    def close(self) -> None:
        for c in (self.api, self.streams):
            with contextlib.suppress(Exception):
                c.close()

    # --- streams: each returns something with .close() that ends the reading thread ---

    def events(self) -> CancellableStream:
        return self.streams.events(decode=True)

    def logs(self, cid: str, tail: int | str = 1000, since: float | None = None,
             cancelled: Callable[[], bool] | None = None) -> LogStream:
        """Follow stdout and stderr with timestamps; iterating gives lists of lines (see log_stream.py).
        `cancelled` says, while the engine has not answered yet, whether the stream is still wanted."""
        return LogStream(self.streams, cid, tail=tail, since=since, cancelled=cancelled)

    def stats(self, cid: str) -> CancellableStream:
        """A sample a second, decoded. The engine writes one JSON object per line (Go's json.Encoder; portside
        the same), so lines are split and parsed whole: docker-py's own decoder reads the body a byte at a
        time and re-scans its buffer in Python, about half of what 20 streams cost the TUI."""
        api = self.streams
        res = api._get(api._url("/containers/{0}/stats", cid), params={"stream": True}, stream=True)
        api._raise_for_status(res)

        def decoded() -> Iterator[dict[str, Any]]:
            for line in res.iter_lines(chunk_size=1 << 16):  # chunked reads return each chunk as it arrives
                if line.strip():
                    yield json.loads(line)

        return CancellableStream(decoded(), res)

    def pull(self, repository: str, tag: str | None) -> CancellableStream:
        api = self.streams
        params = {"fromImage": repository, "tag": tag or "latest"}
        headers: dict[str, str] = {}
        try:
            from docker import auth

            header = auth.get_config_header(api, auth.resolve_repository_name(repository)[0])
            if header:
                headers["X-Registry-Auth"] = header
        except Exception:
            pass
        res = api._post(api._url("/images/create"), params=params, headers=headers, stream=True, timeout=None)
        api._raise_for_status(res)
        return CancellableStream(api._stream_helper(res, decode=True), res)
