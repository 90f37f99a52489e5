"""One stats stream per watched container, shared by everything that shows that container's stats.

The Stats tab's table wants every running container, the Home and Stats tabs want the selected one: a container
is streamed once (`GET /containers/{id}/stats?stream=1`, a sample a second) whoever asks, because a stream costs
a fraction of a one-shot call's CPU. Each stream is read by a daemon thread into the container's `History`;
`watch()` names the containers wanted now, opening the new streams and closing the others. No Textual here: the
screen decides what to watch and is told of samples through `on_sample` (called on the reading thread).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import Any

from app.stats import History, sample


class _Watch:
    def __init__(self, cid: str) -> None:
        self.cid = cid
        self.stream: Any = None
        self.closed = False
        self.lock = threading.Lock()

    def attach(self, stream: Any) -> bool:
        """Keep the opened stream unless the watch was closed meanwhile (then the caller closes it)."""
        with self.lock:
            if self.closed:
                return False
            self.stream = stream
            return True

    def close(self) -> None:
        with self.lock:
            self.closed = True
            stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()


class StatsStreams:
    """The open stats streams and the History each one feeds.

    `open_stream(cid)` returns an iterable of decoded stats objects with `.close()` (EngineClient.stats);
    `on_sample(cid)` is called after each sample is added. A stream that ends (the container stopped) forgets
    its watch, so watching the container again once it runs opens a new one; its History is kept until
    `forget()`, so the graphs go on where they stopped.
    """

    def __init__(self, open_stream: Callable[[str], Any], on_sample: Callable[[str], None]) -> None:
        self._open = open_stream
        self._on_sample = on_sample
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._histories: dict[str, History] = {}

    def history(self, cid: str) -> History:
        with self._lock:
            h = self._histories.get(cid)
            if h is None:
                h = self._histories[cid] = History()
            return h

    def histories(self) -> dict[str, History]:
        with self._lock:
            return dict(self._histories)

    @property
    def watched(self) -> set[str]:
        with self._lock:
            return set(self._watches)

    def watch(self, cids: Iterable[str]) -> None:
        """Stream exactly these containers: open streams for the new ones, close the others'."""
        wanted = set(cids)
        with self._lock:
            gone = [w for cid, w in self._watches.items() if cid not in wanted]
            for w in gone:
                del self._watches[w.cid]
            new = [_Watch(cid) for cid in wanted if cid not in self._watches]
            for w in new:
                self._watches[w.cid] = w
                self._histories.setdefault(w.cid, History())
        for w in gone:
            w.close()
        for w in new:
            threading.Thread(target=self._read, args=(w,), name=f"stats-{w.cid[:12]}", daemon=True).start()

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the histories of containers not in `keep` (removed ones), so they do not pile up."""
        kept = set(keep)
        with self._lock:
            for cid in [c for c in self._histories if c not in kept and c not in self._watches]:
                del self._histories[cid]

    def restart(self, cid: str) -> None:
        """Open a fresh stream for a watched container (it started again while an old stream lingered)."""
        with self._lock:
            old = self._watches.pop(cid, None)
        if old is not None:
            old.close()
            self.watch(self.watched | {cid})

    def close_all(self) -> None:
        with self._lock:
            watches, self._watches = list(self._watches.values()), {}
        for w in watches:
            w.close()

    def _read(self, w: _Watch) -> None:
        try:
            stream = self._open(w.cid)
        except Exception:
            self._ended(w)
            return
        if not w.attach(stream):
            with contextlib.suppress(Exception):
                stream.close()
            return
        history = self.history(w.cid)
        try:
            for raw in stream:
                if w.closed:
                    break
                read = str(raw.get("read") or "")
                if not read or read.startswith("0001"):
                    continue  # a stopped container's empty sample
                history.add(sample(raw))
                self._on_sample(w.cid)
        except Exception:
            pass  # closed under us, or the engine went away: the watch ends either way
        finally:
            self._ended(w)
            w.close()

    def _ended(self, w: _Watch) -> None:
        with self._lock:
            if self._watches.get(w.cid) is w:
                del self._watches[w.cid]
