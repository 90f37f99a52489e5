"""Unit tests of the API's building blocks: events filtering, volumes store, ids, frames, params, config."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from pathlib import Path

import pytest

from engine import ids
from engine.api.hijack import frame
from engine.api.params import timestamp_ns
from engine.daemon import DaemonConfig, DataRootLock
from engine.errors import Conflict, InvalidArgument, NotFound
from engine.events import EventBus, matches
from engine.volumes import ANONYMOUS_LABEL, VolumeStore


def test_ids_and_names_look_like_dockers() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", ids.new_id())
    assert re.fullmatch(r"[a-z]+_[a-z]+", ids.random_name())
    assert re.fullmatch(r"[a-z]+_[a-z]+[0-9]", ids.random_name(1))


def test_multiplexed_frame_header() -> None:
    assert frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert frame(2, b"")[:4] == b"\x02\x00\x00\x00"


def test_timestamps_as_the_cli_sends_them() -> None:
    assert timestamp_ns("1700000000.5") == 1_700_000_000_500_000_000
    assert timestamp_ns("1700000000") == 1_700_000_000_000_000_000
    assert timestamp_ns("2023-11-14T22:13:20Z") == 1_700_000_000_000_000_000
    with pytest.raises(InvalidArgument):
        timestamp_ns("yesterday")


def test_event_filters() -> None:
    bus = EventBus()
    ev = bus.publish("container", "start", "a" * 64, {"name": "web", "image": "nginx", "x": "1"})
    assert matches(ev, {"type": ["container"], "event": ["start"]})
    assert matches(ev, {"container": ["web"]}) and matches(ev, {"container": ["aaaa"]})
    assert matches(ev, {"label": ["x=1"]}) and not matches(ev, {"label": ["x=2"]})
    assert not matches(ev, {"type": ["volume"]})
    assert not matches(ev, {"volume": ["web"]})
    assert ev["status"] == "start" and ev["from"] == "nginx"
    assert bus.history(ev["timeNano"], None) == [ev]
    assert bus.history(ev["timeNano"] + 1, None) == []


async def test_followed_events_are_either_kept_or_queued_never_both() -> None:
    bus = EventBus()
    before = bus.publish("volume", "create", "v1")
    with bus.follow(before["timeNano"], None) as (past, queue):
        after = bus.publish("volume", "create", "v2")
        await asyncio.sleep(0)  # the queue is fed through the loop, as from the daemon's other threads
        assert past == [before] and queue.get_nowait() is after and queue.empty()
    assert bus.subscriber_count == 0


def test_volume_store_lifecycle(tmp_path: Path) -> None:
    users: dict[str, list[str]] = {}
    store = VolumeStore(tmp_path / "volumes", users=lambda n: users.get(n, []))
    vol, created = store.create("data", labels={"a": "b"})
    assert created and vol["Mountpoint"].endswith("/volumes/data/_data")
    assert store.create("data")[1] is False
    anon, _ = store.create()
    assert ANONYMOUS_LABEL in anon["Labels"] and re.fullmatch(r"[0-9a-f]{64}", anon["Name"])
    users["data"] = ["c1"]
    with pytest.raises(Conflict, match="volume is in use"):
        store.remove("data")
    # prune keeps named volumes unless asked for all; keeps volumes in use always
    deleted, _ = store.prune(False, [], [])
    assert deleted == [anon["Name"]]
    assert store.prune(True, [], [])[0] == []
    users.clear()
    store.remove("data")
    with pytest.raises(NotFound):
        store.inspect("data")


def test_volume_copy_up_happens_once_into_an_empty_volume(tmp_path: Path) -> None:
    store = VolumeStore(tmp_path / "volumes")
    src = tmp_path / "img"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    store.create("vv")
    store.populate("vv", src)
    data = Path(store.inspect("vv")["Mountpoint"])
    assert (data / "sub" / "f").read_text() == "x"
    (data / "sub" / "f").unlink()
    store.populate("vv", src)
    assert not (data / "sub" / "f").exists()


def test_data_root_lock_is_exclusive(tmp_path: Path) -> None:
    a, b = DataRootLock(tmp_path), DataRootLock(tmp_path)
    a.acquire()
    try:
        with pytest.raises(Conflict):
            b.acquire()
    finally:
        a.release()
    b.acquire()
    b.release()


def test_daemon_json_merges_and_refuses_duplicates() -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump({"insecure-registries": ["10.0.0.0/8"], "log-level": "debug"}, f)
        f.flush()
        cfg = DaemonConfig.merge_file(DaemonConfig(), Path(f.name), set())
        assert cfg.insecure_registries == ["10.0.0.0/8"] and cfg.log_level == "debug"
        with pytest.raises(InvalidArgument, match="both as a flag and in the configuration file"):
            DaemonConfig.merge_file(DaemonConfig(), Path(f.name), {"log_level"})
