"""``stationflow demo``: the whole pipeline against the emulator, on generated data, with no setup.

It starts the WATS emulator on loopback, makes a temporary station, generates realistic reports,
sends them through the real spool and uploader with a live progress line, takes the server down
for a few seconds in the middle (and loses a few acknowledgements) so retry and recovery can be
seen, and ends with a summary. ``lost`` must be 0: every generated report is either stored by the
server or still in the spool. The exit code says so.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import anyio

from engine.emulator import DEFAULT_TOKEN, Emulator
from engine.samples import make_report_bytes
from engine.spool import Spool
from engine.uploader import Uploader
from schemas.config import RetrySection, ServerSection, UploadSection


@dataclass
class DemoResult:
    generated: int = 0
    accepted: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    duplicates: int = 0
    lost: int = 0
    seconds: float = 0.0
    outage_s: float = 0.0
    lost_ids: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


class Progress:
    """One line, rewritten in place on a terminal; a line every second otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0

    def show(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            self.stream.write("\r" + text.ljust(100)[:110])
            self.stream.flush()
        elif force or now - self._last >= 1.0:
            self.stream.write(text + "\n")
            self.stream.flush()
            self._last = now

    def done(self) -> None:
        if self.tty:
            self.stream.write("\n")


def run_demo(*, reports: int = 300, outage_s: float = 3.0, workdir: Path | None = None, keep: bool = False,
             stream: TextIO = sys.stdout, timeout_s: float = 120.0) -> DemoResult:
    """Run the demo; returns the figures (``lost`` is the number that must be 0)."""
    base = Path(tempfile.mkdtemp(prefix="stationflow-demo-", dir=workdir))
    out = stream.write
    result = DemoResult(generated=reports)
    emulator = Emulator(port=0, seed=7)
    emulator.start()
    try:
        out(f"stationflow demo: WATS emulator on {emulator.url}, station in {base}\n")
        generated: set[str] = set()
        with Spool(base / "data") as spool:
            out(f"accepting {reports} generated reports into the spool …\n")
            for i in range(reports):
                size = 50_000 if i % 10 == 0 else 1_200
                raw = make_report_bytes(i, approx_bytes=size, station="DEMO-STATION")
                accepted = spool.accept(raw, source=f"demo/report-{i:04d}.json")
                generated.add(accepted.key)
            result.accepted = len(generated)
            emulator.set_faults(drop_after_rate=0.02, error_rate=0.02, error_status=503)
            server = ServerSection(url=emulator.url, token=DEFAULT_TOKEN, timeout_s=10, connect_timeout_s=2)
            upload = UploadSection(concurrency=4, rate_per_s=150,
                                   retry=RetrySection(initial_s=0.2, max_s=2.0, offline_after=3))
            uploader = Uploader(spool, server, upload)
            result.seconds, result.outage_s = _serve(uploader, spool, emulator, reports, outage_s, timeout_s,
                                                     Progress(stream))
            counts = spool.counts()
            at_server = emulator.received_ids()
            stats = emulator.stats()
            in_spool = {k for k in generated if spool.state_of(k) != "sent"}
            lost = sorted(generated - at_server - in_spool)
            result.sent = counts.get("sent", 0)
            result.retried = uploader.counters["retried"]
            result.failed = counts.get("failed", 0)
            result.duplicates = stats.duplicates
            result.lost = len(lost)
            result.lost_ids = lost
        _summary(result, out)
        return result
    finally:
        emulator.stop()
        if keep:
            out(f"station kept in {base}\n")
        else:
            shutil.rmtree(base, ignore_errors=True)


def _serve(uploader: Uploader, spool: Spool, emulator: Emulator, total: int, outage_s: float, timeout_s: float,
           progress: Progress) -> tuple[float, float]:
    """Upload until every report is sent, with one outage when a third has gone."""
    started = time.monotonic()
    outage = {"start": 0.0, "end": 0.0}

    def line() -> str:
        c = spool.counts()
        elapsed = time.monotonic() - started
        server = "DOWN" if not emulator.is_up else uploader.mode
        return (f"sent {c['sent']:>4}/{total}  pending {c['pending']:>4}  retry_wait {c['retry_wait']:>3}  "
                f"failed {c['failed']}  server {server:<8} {c['sent'] / elapsed if elapsed else 0:6.0f}/s")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(uploader.run)
            with anyio.fail_after(timeout_s):
                while spool.counts()["sent"] < total:
                    sent = spool.counts()["sent"]
                    if not outage["start"] and sent >= total // 3 and outage_s > 0:
                        outage["start"] = time.monotonic()
                        emulator.go_down()
                        progress.show(line() + "  ← server taken down", force=True)
                    elif outage["start"] and not outage["end"] and time.monotonic() - outage["start"] >= outage_s:
                        outage["end"] = time.monotonic()
                        emulator.come_back()
                        progress.show(line() + "  ← server back", force=True)
                    progress.show(line())
                    if spool.counts()["failed"] and spool.counts()["pending"] + spool.counts()["retry_wait"] + \
                            spool.counts()["sending"] == 0:
                        break
                    await anyio.sleep(0.1)
            progress.show(line(), force=True)
            uploader.drain()

    anyio.run(main)
    progress.done()
    return time.monotonic() - started, (outage["end"] - outage["start"]) if outage["end"] else 0.0


def _summary(r: DemoResult, out: Callable[[str], object]) -> None:
    out("\nsummary\n")
    out(f"  accepted into the spool  {r.accepted}\n")
    out(f"  sent (acknowledged)      {r.sent}\n")
    out(f"  retried attempts         {r.retried}\n")
    out(f"  failed (rejected)        {r.failed}\n")
    out(f"  duplicates at server     {r.duplicates}  (same id sent again after a lost acknowledgement)\n")
    out(f"  lost                     {r.lost}\n")
    out(f"  server outage            {r.outage_s:.1f} s\n")
    out(f"  rate                     {r.rate:.0f} reports/s over {r.seconds:.1f} s\n")
    if r.lost:
        out(f"LOST REPORTS: {', '.join(r.lost_ids[:20])}\n")
