"""The service's log at the cost-saving points of issue 18: the intake process sends a line per
file, and each used to cost the service ~32 µs (four formats, two ``stat``, a ``seek`` and two
flushes per line). A line is now formatted once for the console, the file and the ring, the file's
size is counted instead of asked of the disk, and a forwarded batch reaches each stream in one
write — with the same lines, the same rotation points and the same masking as before.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from stationflow.engine.service import logs
from stationflow.engine.service.intake_process import IntakeProcess
from stationflow.engine.service.logs import LogRing, RotatingLog, SecretFilter, ServiceLogging, one_write
from stationflow.schemas.config import MASK, LoggingSection


class _CountingStream(io.StringIO):
    """A console stream that counts its flushes (each one a write to the real stderr)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


@pytest.fixture
def service_logs(tmp_path: Path) -> Any:
    stream = _CountingStream()
    handlers = ServiceLogging(tmp_path, LoggingSection(), LogRing(), secrets=["tok-secret-1234"], stream=stream)
    try:
        yield handlers, stream
    finally:
        handlers.close()


@pytest.mark.parametrize("json_lines", [False, True])
def test_a_line_is_formatted_once_for_the_console_the_file_and_the_ring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, json_lines: bool) -> None:
    calls: list[str] = []
    for kind in (logs.OnceFormatter, logs.JsonFormatter):
        def counting(self: logs.OnceFormatter, record: logging.LogRecord,
                     real: Any = kind.__dict__["format_once"]) -> str:
            calls.append(type(self).__name__)
            return str(real(self, record))

        monkeypatch.setattr(kind, "format_once", counting)
    section = LoggingSection.model_validate({"json": json_lines})
    ring = LogRing()
    stream = io.StringIO()
    handlers = ServiceLogging(tmp_path, section, ring, secrets=["tok-secret-1234"], stream=stream)
    try:
        for i in range(10):
            logging.getLogger("tests.once").info("file %d.json → 1 report(s) tok-secret-1234", i)
    finally:
        handlers.close()
    # one text format per line (shared by the ring, and by the console and file when not JSON) and
    # one JSON format per line when JSON: never a format per handler
    assert sorted(calls) == sorted(["JsonFormatter", "OnceFormatter"] * 10 if json_lines else ["OnceFormatter"] * 10)
    written = handlers.path.read_text(encoding="utf-8")
    assert written == stream.getvalue() and written.count("\n") == 10
    assert all(f"file {i}.json" in line for i, line in enumerate(written.splitlines()))
    assert "tok-secret-1234" not in written and MASK in written
    if json_lines:
        assert all(json.loads(line)["msg"] == f"file {i}.json → 1 report(s) {MASK}"
                   for i, line in enumerate(written.splitlines()))
    assert [line.split(": ", 1)[1] for line in ring.tail(10)] == [
        f"file {i}.json → 1 report(s) {MASK}" for i in range(10)]


def test_a_secret_added_later_is_masked_in_a_record_already_masked_once() -> None:
    secrets = SecretFilter(["first-secret"])
    record = logging.LogRecord("x", logging.INFO, "f", 1, "a first-secret and a second-secret", (), None)
    assert secrets.filter(record) and record.getMessage() == f"a {MASK} and a second-secret"
    secrets.add("second-secret")
    assert secrets.filter(record) and record.getMessage() == f"a {MASK} and a {MASK}"


def test_lines_of_a_one_write_block_reach_the_console_and_the_file_in_one_flush(service_logs: Any) -> None:
    handlers, stream = service_logs
    probe = logging.getLogger("tests.batch")
    probe.info("before")
    assert stream.flushes == 1
    other_thread_flushed: list[bool] = []
    with one_write():
        for i in range(20):
            probe.info("line %d", i)
        assert stream.flushes == 1, "held until the block ends"
        assert "line 19" not in handlers.path.read_text(encoding="utf-8")

        def elsewhere() -> None:  # another thread's line is not held by this block
            probe.warning("from another thread")
            other_thread_flushed.append("from another thread" in handlers.path.read_text(encoding="utf-8"))

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(30)
    assert other_thread_flushed == [True]
    assert stream.flushes == 3  # the other thread's line, then the block's twenty lines at once
    lines = handlers.path.read_text(encoding="utf-8").splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == ["before", *(f"line {i}" for i in range(20)),
                                                          "from another thread"]  # in the order logged
    assert stream.getvalue().splitlines() == lines


def test_a_forwarded_batch_of_log_records_is_one_write(tmp_path: Path, service_logs: Any) -> None:
    handlers, stream = service_logs

    class Config:
        intake: list[Any] = []
        station = None

    process = IntakeProcess(Config(), None, tmp_path, machines={"conversion": None})  # type: ignore[arg-type]
    records = [(logging.INFO, "stationflow.engine.intake.intake", f"intake a: f{i}.json → 1 report(s) in the spool")
               for i in range(32)]
    before = stream.flushes
    process._handle(("logs", records), None)
    assert stream.flushes == before + 1
    lines = handlers.path.read_text(encoding="utf-8").splitlines()
    assert [line.split(": ", 1)[1] for line in lines[-32:]] == [text for _, _, text in records]
    assert all(" INFO stationflow.engine.intake.intake: " in line for line in lines[-32:])


def test_rotation_counts_the_bytes_it_writes_without_asking_the_disk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stationflow.log"
    handler = RotatingLog(path, maxBytes=1000, backupCount=3, encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("tests.rotation")
    logger.propagate = False
    logger.addHandler(handler)
    stats: list[str] = []
    real_stat = os.stat

    def counting_stat(target: Any, *args: Any, **kwargs: Any) -> Any:
        stats.append(str(target))
        return real_stat(target, *args, **kwargs)

    lines = [f"{i:03d} é–ü {'x' * (i % 17)}" for i in range(250)]  # multi-byte: bytes ≠ characters
    try:
        monkeypatch.setattr(os, "stat", counting_stat)
        for line in lines[:10]:  # ~250 bytes: no rotation due
            logger.warning(line)
        assert stats == [], "the size of the file is counted, not asked of the disk at every line"
        for line in lines[10:]:
            logger.warning(line)
    finally:
        logger.removeHandler(handler)
        handler.close()
    files = [Path(f"{path}.{n}") for n in (3, 2, 1)] + [path]
    assert all(f.exists() for f in files)
    written = [f.read_bytes() for f in files]
    assert b"".join(written).decode("utf-8").splitlines() == lines[-sum(w.count(b"\n") for w in written):]
    for content, after in zip(written, written[1:]):
        # each rotated file was rotated exactly when the next line would have taken it past maxBytes
        next_line = after.split(b"\n", 1)[0] + b"\n"
        assert len(content) < 1000 <= len(content) + len(next_line)
