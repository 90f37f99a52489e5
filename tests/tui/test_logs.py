"""The log path under load: the stream decoder (frames, chunks, TTY), the bounded log view, and a flood.

Decoder tests cut streams at every byte; engine tests check the decoder on what each engine really sends
(stdout and stderr interleaved, a TTY container); Pilot tests feed 100k+ lines and press keys during a flood.
No timings are asserted: bench/bench_tui.py measures them.
"""

from __future__ import annotations

import struct
import uuid

import pytest

from app.config import Config
from app.log_stream import Dechunker, LogDecoder, LogStream
from app.screens.main import MainScreen
from app.tui import PortsideApp
from tests.tui.conftest import Engine, wait_for

NOWHERE = "unix:///nonexistent/portside-test-logs.sock"


def _frame(stream: int, data: bytes) -> bytes:
    return struct.pack(">BxxxL", stream, len(data)) + data


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, pos = b"", 0
    for n in sizes:
        piece = body[pos : pos + n]
        pos += n
        if piece:
            out += f"{len(piece):x}".encode() + (b";ext=1" if n % 2 else b"") + b"\r\n" + piece + b"\r\n"
    if pos < len(body):
        out += f"{len(body) - pos:x}\r\n".encode() + body[pos:] + b"\r\n"
    return out + b"0\r\n\r\n"


def _decode_in_pieces(decoder: LogDecoder, data: bytes, step: int) -> list[str]:
    lines: list[str] = []
    for i in range(0, len(data), step):
        lines += decoder.feed(data[i : i + step])
    return lines + decoder.flush()


def test_frames_cut_anywhere_give_the_same_lines() -> None:
    stream = (_frame(1, b"out one\n") + _frame(2, b"err one\n") + _frame(1, b"out two\r\n")
              + _frame(1, b"a long line in ") + _frame(2, b"err \xc3\xa9 two\n") + _frame(1, b"two frames\n")
              + _frame(1, b"\xff bad utf-8\n") + _frame(2, b"no newline at the end"))
    want = ["out one", "err one", "out two", "err \u00e9 two", "a long line in two frames", "\ufffd bad utf-8",
            "no newline at the end"]
    for step in range(1, len(stream) + 1):
        assert _decode_in_pieces(LogDecoder(tty=False), stream, step) == want, step


def test_tty_stream_is_raw_lines() -> None:
    data = "première\r\nsecond\r\n\r\nlast without newline".encode()
    for step in range(1, len(data) + 1):
        assert _decode_in_pieces(LogDecoder(tty=True), data, step) == ["première", "second", "", "last without newline"]


def test_dechunker_undoes_chunked_coding_cut_anywhere() -> None:
    body = b"".join(_frame(1 + i % 2, f"line {i}\n".encode()) for i in range(40))
    wire = _chunked(body, [5, 17, 1, 300, 8, 64])
    for step in range(1, len(wire) + 1):
        d = Dechunker()
        got = b"".join(d.feed(wire[i : i + step]) for i in range(0, len(wire), step))
        assert got == body and d.done, step


# --- on each engine's real streams ---



def _wait_exit(engine: Engine, cid: str) -> None:
    assert engine.api.wait(cid, timeout=60)["StatusCode"] == 0, engine.api.logs(cid)[-500:]


def _read_all(engine: Engine, cid: str) -> list[str]:
    stream = LogStream(engine.api, cid, tail="all", timestamps=False)
    try:
        return [line for lines in stream for line in lines]
    finally:
        stream.close()


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("read_size", [65536, 7])
def test_real_multiplexed_stream_interleaved_and_cut_across_reads(engine: Engine, read_size: int,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout and stderr lines of a non-TTY container, a long line and a line without a newline come through
    whole, each stream in order, also when every read ends inside a frame (7 bytes a read)."""
    monkeypatch.setattr("app.log_stream.READ_SIZE", read_size)
    long = "x" * 20000
    cid = engine.run(["sh", "-c", f"for i in 1 2 3 4 5 6; do echo out$i; echo err$i >&2; done; echo {long}; "
                                  "printf 'é no newline'"], f"pst-mux-{uuid.uuid4().hex[:6]}")
    _wait_exit(engine, cid)
    lines = _read_all(engine, cid)
    assert [x for x in lines if x.startswith("out")] == [f"out{i}" for i in range(1, 7)]
    assert [x for x in lines if x.startswith("err")] == [f"err{i}" for i in range(1, 7)]
    assert long in lines
    assert lines[-1] == "é no newline"
    assert len(lines) == 14


@pytest.mark.every_engine
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_real_tty_stream(engine: Engine) -> None:
    """A TTY container's log is the terminal's raw output: "\\r\\n" line ends, no frames."""
    hc = engine.api.create_host_config(network_mode="none")
    cid = engine.api.create_container(engine.busybox, ["sh", "-c", "echo one; echo två; echo three >&2"], tty=True,
                                      name=f"pst-tty-{uuid.uuid4().hex[:6]}", host_config=hc)["Id"]
    engine.api.start(cid)
    _wait_exit(engine, cid)
    assert _read_all(engine, cid) == ["one", "två", "three"]
    # with timestamps, each line starts with its RFC 3339 time
    stream = LogStream(engine.api, cid, tail="all", timestamps=True)
    try:
        stamped = [line for lines in stream for line in lines]
    finally:
        stream.close()
    assert [x.split(" ", 1)[1] for x in stamped] == ["one", "två", "three"]
    assert all(x[4] == "-" and x[10] == "T" for x in stamped)


# --- the view ---


def _main(app: PortsideApp) -> MainScreen:
    screen = app.screen
    assert isinstance(screen, MainScreen)
    return screen


@pytest.mark.tui
async def test_view_keeps_the_last_max_lines_and_shows_the_end(tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """250k lines fed in batches leave exactly max_lines (200k) kept, the newest, with the last on screen while
    following; paused, held lines are bounded too, and a search's matches follow the trimming."""
    app = PortsideApp(host=NOWHERE, config=Config())
    async with app.run_test(size=(120, 40)) as pilot:
        view = _main(app).log_view
        total = 250_000
        assert view.max_lines == 200_000
        view.search("line 2499")  # matches 24990..24999 and 249900..249999 (110 lines); all but the last 100 go
        for start in range(0, total, 5000):
            view.feed([f"2026-11-28T06:00:00.000000000Z line {i}" for i in range(start, start + 5000)])
        await wait_for(pilot, lambda: view.lines and view.lines[-1] == f"line {total - 1}", what="the last line")
        assert len(view.lines) == len(view.timestamps) == 200_000
        assert view.lines[0] == f"line {total - 200_000}"
        assert len(view.matches) == 100 and view.lines[view.matches[0]] == "line 249900"
        view.search("")
        view.follow = True
        await pilot.pause()
        assert view.virtual_size.height == 200_000
        assert view.scroll_offset.y == view.max_scroll_y > 0
        bottom = view.scrollable_content_region.height - 1
        assert view.render_line(bottom).text.startswith(f"line {total - 1}")
        # paused: new lines are held back, and no more than max_lines of them
        view.max_lines = 1000
        view.paused = True
        view.feed([f"held {i}" for i in range(3000)])
        await wait_for(pilot, lambda: len(view._held) == 1000, what="held lines")
        assert view.lines[-1] == f"line {total - 1}"
        view.paused = False
        await pilot.pause()
        assert view.lines[-1] == "held 2999" and len(view.lines) == 1000


@pytest.mark.every_engine
@pytest.mark.integration
@pytest.mark.tui
@pytest.mark.timeout(180)
async def test_keys_take_effect_while_a_container_floods(engine: Engine, tmp_config_home) -> None:  # type: ignore[no-untyped-def]
    """A container printing ~10,000 lines a second: its lines arrive, and follow, pause and scrolling keys change
    the view's state while it floods (states, not timings: bench/bench_tui.py times them)."""
    app = PortsideApp(host=engine.url, config=Config(log_tail=100))
    async with app.run_test(size=(160, 45)) as pilot:
        main = _main(app)
        await wait_for(pilot, lambda: app.connected and main.loaded.is_set(), what="connection")
        cid = engine.run(["sh", "-c", "while :; do seq 1 1000; usleep 100000; done"],
                         f"pst-flood-{uuid.uuid4().hex[:6]}")
        try:
            await wait_for(pilot, lambda: main.tabs_built and cid in main.container_list.rows_by_id,
                           what="the container in the list")
            assert main.container_list.select_id(cid)
            view = main.log_view
            await wait_for(pilot, lambda: len(view.lines) > 5000, what="flooding lines")
            view.focus()
            assert view.follow
            await pilot.press("f")
            assert not view.follow
            await pilot.press("f")
            assert view.follow
            await pilot.press("P")
            assert view.paused
            await wait_for(pilot, lambda: len(view._held) > 1000, what="lines held while paused")
            kept = len(view.lines)
            await pilot.pause(0.2)
            assert len(view.lines) == kept
            await pilot.press("P")
            assert not view.paused
            await wait_for(pilot, lambda: len(view.lines) > kept, what="held lines shown")
            await pilot.press("up")
            assert not view.follow  # moving up leaves follow, so the flood does not pull the view down
            top = view.scroll_offset.y
            await pilot.pause(0.3)
            assert view.scroll_offset.y <= top
            await pilot.press("end")
            assert view.follow
            await wait_for(pilot, lambda: view.scroll_offset.y == view.max_scroll_y, what="the end in view")
        finally:
            engine.api.remove_container(cid, force=True)
