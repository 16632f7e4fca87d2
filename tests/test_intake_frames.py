"""The pipe between the service and its intake process, at the cost-saving points of issue 18:
frames read straight into one buffer (a reader thread in the service), log records several to a
frame, and the service's answer to an accept only once the reports are in the spool.

Real pipes and a real stand-in intake process (a script that speaks the protocol through the real
``ServiceLink``); the service side is the real ``IntakeProcess`` with a real spool.
"""

from __future__ import annotations

import json
import logging
import os
import select
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from stationflow.engine.devtools.samples import make_report_bytes
from stationflow.engine.service import intake_child
from stationflow.engine.service import frames
from stationflow.engine.service.frames import MAX_FRAME, FrameReader, parts, read_frame, read_frame_into, write_parts
from stationflow.engine.service.intake_child import ServiceLink
from stationflow.engine.service.intake_process import IntakeProcess, IntakeProcessExited
from stationflow.engine.spool.store import Spool


def _next_frame(pipe: Any, timeout: float = 30.0) -> Any:
    ready, _, _ = select.select([pipe], [], [], timeout)
    assert ready, "nothing arrived in time"
    return read_frame(pipe)


def test_frames_are_read_whole_into_one_buffer_and_the_end_is_eoferror() -> None:
    read, write = os.pipe()
    big = [(os.urandom(50_000), f"/watch/{i}") for i in range(60)]  # ~3 MB: many pipe-fulls
    messages: list[Any] = [("ready",), ("accept", 1, big, ["k"] * 60), ("status", {"paused": False})]

    def writer() -> None:
        with os.fdopen(write, "wb") as out:
            for message in messages:
                write_parts(out, parts(message))

    thread = threading.Thread(target=writer)
    thread.start()
    with open(read, "rb", buffering=0) as pipe:
        got = [read_frame_into(pipe) for _ in messages]
        with pytest.raises(EOFError):
            read_frame_into(pipe)
    thread.join(30)
    assert got == messages


def test_reports_travel_beside_the_pickle_and_arrive_as_bytes_of_their_own() -> None:
    """Pickling a batch into one 1.6 MB buffer cost the intake process ~31 µs per report (issue
    18): a report (a bytes object of OUT_OF_BAND_BYTES or more) is written as it is, after a small
    pickle, and read into a bytes object of its own; smaller bytes stay inside the pickle."""
    reports = [os.urandom(50_000) for _ in range(4)]
    small = os.urandom(100)
    message = ("accept", 7, [(raw, f"/w/{i}") for i, raw in enumerate(reports)] + [(small, None)], None)
    frame = parts(message)
    head, body, *buffers = frame
    assert len(body) < 1000 and [bytes(b) for b in buffers] == reports
    assert all(isinstance(b, memoryview) and b.obj is raw for b, raw in zip(buffers, reports)), "not copied"
    read, write = os.pipe()

    def writer() -> None:
        with os.fdopen(write, "wb") as out:
            for _ in range(2):
                write_parts(out, frame)

    thread = threading.Thread(target=writer)
    thread.start()
    with open(read, "rb", buffering=0) as raw_pipe, open(os.dup(read), "rb") as buffered:
        got = FrameReader(raw_pipe).read()  # the service's reader
        again = read_frame(raw_pipe)  # the blocking reader reads the same form
        with pytest.raises(EOFError):
            read_frame(buffered)
    thread.join(30)
    assert got == again == message
    assert all(type(raw) is bytes for raw, _ in got[2])


def test_a_frame_goes_out_in_gathering_writes_and_one_cut_short_is_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    """One os.writev per frame where there is one (a write per report woke the reader per report);
    a writev that writes only part (a signal) is continued where it stopped, never repeated."""
    real_writev = os.writev
    calls: list[int] = []

    def short_writev(fd: int, views: list[memoryview]) -> int:
        calls.append(len(views))
        budget, cut = 70_001, []  # at most ~70 KB a call, ending inside a piece
        for view in views:
            if budget <= 0:
                break
            cut.append(view[:budget])
            budget -= len(cut[-1])
        return real_writev(fd, cut)

    monkeypatch.setattr(frames.os, "writev", short_writev)
    message = ("accept", 1, [(os.urandom(50_000), f"/w/{i}") for i in range(6)], None)
    read, write = os.pipe()
    frames.widen_pipe(write)

    def writer() -> None:
        with os.fdopen(write, "wb") as out:
            write_parts(out, parts(("logs", [(20, "x", "before")])))  # small: held in the buffer, flushed first
            write_parts(out, parts(message))

    thread = threading.Thread(target=writer)
    thread.start()
    with open(read, "rb", buffering=0) as pipe:
        reader = FrameReader(pipe)
        assert reader.read() == ("logs", [(20, "x", "before")])
        assert reader.read() == message
        with pytest.raises(EOFError):
            reader.read()
    thread.join(30)
    assert calls and calls[0] == 8 and len(calls) == 5  # 300 KB in cuts of ~70 KB, continued


def test_the_reader_keeps_one_buffer_for_every_frame_up_to_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new buffer per frame cost page faults and its zeroing (issue 18): the reader keeps one for
    the pickles. A smaller frame after a larger one reads none of the larger one's bytes, and a
    pickle past KEEP_BYTES gets a buffer of its own (the kept one does not grow without end)."""
    monkeypatch.setattr(frames, "KEEP_BYTES", 300_000)
    read, write = os.pipe()
    in_band = frames.OUT_OF_BAND_BYTES // 2
    messages: list[Any] = [("accept", 1, [(os.urandom(in_band), f"/w/{i}") for i in range(20)], None),  # ~160 KB
                           ("status", {"n": 1}),
                           ("accept", 2, [(os.urandom(50_000), "/w/x")], None),  # out of band
                           ("accept", 3, [(os.urandom(in_band), f"/w/{i}") for i in range(50)], None),  # ~400 KB
                           ("logs", [(20, "x", "after the large one")])]

    def writer() -> None:
        with os.fdopen(write, "wb") as out:
            for message in messages:
                write_parts(out, parts(message))

    thread = threading.Thread(target=writer)
    thread.start()
    with open(read, "rb", buffering=0) as pipe:
        reader = FrameReader(pipe)
        got, buffers = [], []
        for _ in messages:
            got.append(reader.read())
            buffers.append(reader._buffer)
        with pytest.raises(EOFError):
            reader.read()
    thread.join(30)
    assert got == messages
    assert all(b is buffers[0] for b in buffers) and 150_000 < len(buffers[0]) <= 300_000


@pytest.mark.parametrize("junk", [MAX_FRAME.to_bytes(4, "big") + b"junk",  # no pickle, 1.8e9 buffers
                                  (MAX_FRAME | 10).to_bytes(4, "big") + (0).to_bytes(4, "big"),  # no buffer
                                  (MAX_FRAME | 10).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\xff" * 4])
def test_a_frame_head_out_of_step_is_refused(junk: bytes) -> None:
    for reader in (read_frame_into, read_frame):
        read, write = os.pipe()
        os.write(write, junk)
        os.close(write)
        with open(read, "rb", buffering=0) as pipe, pytest.raises(ValueError, match="out of step"):
            reader(pipe)


def test_info_records_go_several_to_a_frame_before_the_next_message_and_a_warning_at_once() -> None:
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    with os.fdopen(to_child_r, "rb") as inp, os.fdopen(from_child_w, "wb") as out, \
            os.fdopen(from_child_r, "rb", buffering=0) as service_side:
        link = ServiceLink(inp, out)
        for i in range(50):
            link.log(logging.INFO, "stationflow.engine.intake", f"file {i}")
        link.send(("status", {"n": 1}))
        logs = _next_frame(service_side)
        assert logs == ("logs", [(logging.INFO, "stationflow.engine.intake", f"file {i}") for i in range(50)])
        assert _next_frame(service_side) == ("status", {"n": 1})  # after the records logged before it
        link.log(logging.WARNING, "stationflow.engine.intake", "disk almost full")  # nothing else sent
        assert _next_frame(service_side) == ("logs", [(logging.WARNING, "stationflow.engine.intake",
                                                       "disk almost full")])
        os.close(to_child_w)


def test_an_info_record_alone_is_sent_by_the_forwarding_thread() -> None:
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    with os.fdopen(to_child_r, "rb") as inp, os.fdopen(from_child_w, "wb") as out, \
            os.fdopen(from_child_r, "rb", buffering=0) as service_side:
        link = ServiceLink(inp, out)
        threading.Thread(target=link.forward_logs, daemon=True).start()
        link.log(logging.INFO, "x", "one")
        assert _next_frame(service_side) == ("logs", [(logging.INFO, "x", "one")])
        link.log(logging.INFO, "x", "two")
        link.log(logging.INFO, "x", "three")
        assert _next_frame(service_side) == ("logs", [(logging.INFO, "x", "two"), (logging.INFO, "x", "three")])
        os.close(to_child_w)
    assert intake_child._LOG_DELAY_S < 1  # a line reaches the service's log well within a status period


#: A stand-in intake process: one accept batch through the real ServiceLink; on the answer it
#: checks that every accepted report is already in pending/ (the service answers only after
#: accept_many returned), logs a line per report, and exits.
_CHILD = r'''
import json, logging, os, sys, threading
from stationflow.engine.service.intake_child import ServiceLink, _ForwardLogs
pending, batch = sys.argv[1], json.loads(open(sys.argv[2]).read())
out = os.fdopen(os.dup(1), "wb"); os.dup2(2, 1)
link = ServiceLink(sys.stdin.buffer, out)
logging.getLogger().handlers[:] = [_ForwardLogs(link)]
logging.getLogger().setLevel(logging.INFO)
def reader():
    try:
        while True:
            message = link.read()
            if message[0] == "accepted":
                link.answer(message[1], message[2])
    except EOFError:
        link.gone()
threading.Thread(target=reader, daemon=True).start()
link.send(("ready",))
items = [(r.encode("latin-1"), f"/watch/{i}.json") for i, r in enumerate(batch["reports"])]
results = link.accept_many(items, validated_keys=batch["keys"])
for r in results:
    assert type(r).__name__ == "Accepted" and not r.already_present, r
    assert any(n.startswith(r.key + ".") for n in os.listdir(pending)), f"{r.key} answered before it was in pending/"
    logging.getLogger("stationflow.engine.intake").info("accepted %s", r.key)
link.flush_logs()
os._exit(0)  # not sys.exit: the reader thread is inside a read of stdin (the service keeps it open)
'''


async def test_an_accept_batch_is_answered_once_durable_and_the_logs_arrive_in_order(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    spool = Spool(tmp_path, min_free_bytes=1)
    keys = [str(uuid.uuid4()) for _ in range(32)]
    template = make_report_bytes(1, approx_bytes=50_000)
    old_id = json.loads(template)["id"].encode()
    reports = [template.replace(old_id, key.encode()).decode("latin-1") for key in keys]
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    real_open = anyio.open_process

    async def open_child(cmd: list[str], **kwargs: Any) -> Any:
        assert cmd[-1] == "stationflow.engine.service.intake_child"
        batch = tmp_path / "batch.json"
        batch.write_text(json.dumps({"reports": reports, "keys": keys}))
        return await real_open([sys.executable, str(script), str(tmp_path / "spool" / "pending"), str(batch)],
                               **kwargs)

    monkeypatch.setattr(anyio, "open_process", open_child)

    class Config:
        intake: list[Any] = []
        station = None

    process = IntakeProcess(Config(), spool, tmp_path, machines={"conversion": None})  # type: ignore[arg-type]
    try:
        with anyio.fail_after(120):
            with pytest.raises(IntakeProcessExited, match="exited with code 0"):
                await process.run()
        assert sorted(spool.keys("pending")) == sorted(keys)
        lines = [r.getMessage() for r in caplog.records if r.name == "stationflow.engine.intake"]
        assert lines == [f"accepted {key}" for key in keys]
    finally:
        spool.close()
