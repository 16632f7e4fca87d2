"""``stationflow demo``: the whole pipeline against the emulator, on generated data, with no setup.

It starts the WATS emulator on loopback, makes a temporary station with a watch folder, runs the
real service (intake, spool, uploader), drops generated report files into the folder the way test
equipment writes them, takes the server down for a few seconds in the middle (and loses a few
acknowledgements) so retry and recovery can be seen, and ends with a summary. ``lost`` must be 0:
every generated report is stored by the server, or still in the spool, or its file is still
waiting in the folder. The exit code says so.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import anyio

from .emulator import DEFAULT_TOKEN, Emulator
from .samples import make_report_bytes
from ..service.service import Service
from ..spool.store import Spool


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
             stream: TextIO | None = None, timeout_s: float = 180.0) -> DemoResult:
    """Run the demo; returns the figures (``lost`` is the number that must be 0)."""
    stream = stream or sys.stdout
    base = Path(tempfile.mkdtemp(prefix="stationflow-demo-", dir=workdir))
    out = stream.write
    result = DemoResult(generated=reports)
    emulator = Emulator(port=0, seed=7)
    emulator.start()
    try:
        config = _write_station(base, emulator.url)
        out(f"stationflow demo: WATS emulator on {emulator.url}; station {config}\n")
        out(f"dropping {reports} generated reports into {base / 'drop'}; the service converts, spools "
            f"and uploads them (2% server errors, 2% lost acknowledgements, a {outage_s:g} s outage)\n")
        emulator.set_faults(drop_after_rate=0.02, error_rate=0.02, error_status=503)
        service = Service(config, log_level="WARNING", log_stream=_LogTail())
        generated, result.seconds, result.outage_s = _serve(service, base / "drop", emulator, reports, outage_s,
                                                            timeout_s, Progress(stream))
        at_server = emulator.received_ids()
        stats = emulator.stats()
        spool = Spool(base / "data", readonly=True)
        counts = spool.counts()
        result.accepted = len(set(generated) & set(spool.keys()))
        in_spool = {k for k in generated if k in set(spool.keys()) and spool.state_of(k) != "sent"}
        waiting_sources = {p.stem for p in (base / "drop").glob("*.json")}
        lost = sorted(k for k in set(generated) - at_server - in_spool if generated[k] not in waiting_sources)
        result.sent = counts.get("sent", 0)
        result.retried = (service.uploader.counters["retried"] if service.uploader else 0)
        result.failed = counts.get("failed", 0)
        result.duplicates = stats.duplicates
        result.lost = len(lost)
        result.lost_ids = lost
        _summary(result, out)
        if keep:
            out(f"service log: {base / 'data' / 'logs' / 'stationflow.log'}\n")
        return result
    finally:
        emulator.stop()
        if keep:
            out(f"station kept in {base}\n")
        else:
            shutil.rmtree(base, ignore_errors=True)


class _LogTail(io.StringIO):
    """Keeps the service's console log out of the progress line (it is in the log file too)."""


def _write_station(base: Path, url: str) -> Path:
    config = base / "station.yaml"
    (base / "drop").mkdir()
    config.write_text(
        "station: {name: DEMO-STATION, location: Demo line, purpose: Demo}\n"
        f"server: {{url: '{url}', token: {DEFAULT_TOKEN}, timeout_s: 10, connect_timeout_s: 2}}\n"
        "data_dir: ./data\n"
        "intake:\n"
        "  - {name: demo, watch: ./drop, patterns: ['*.json'], converter: wsjf, settle_ms: 200, after: archive}\n"
        "upload: {concurrency: 4, rate_per_s: 200, retry: {initial_s: 0.2, max_s: 2, offline_after: 3}}\n"
        "shutdown: {grace_s: 10}\n"
        "logging: {level: WARNING}\n"
    )
    return config


def _drop_files(folder: Path, total: int, per_s: float) -> dict[str, str]:
    """Write reports as test equipment would: to a temporary name, then renamed into place."""
    generated: dict[str, str] = {}
    started = time.monotonic()
    for i in range(total):
        size = 50_000 if i % 10 == 0 else 1_200
        raw = make_report_bytes(i, approx_bytes=size, station="DEMO-STATION")
        name = f"uut-{i:04d}"
        generated[json.loads(raw)["id"]] = name
        tmp = folder / f".{name}.part"
        tmp.write_bytes(raw)
        os.replace(tmp, folder / f"{name}.json")
        delay = started + (i + 1) / per_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return generated


def _serve(service: Service, drop: Path, emulator: Emulator, total: int, outage_s: float, timeout_s: float,
           progress: Progress) -> tuple[dict[str, str], float, float]:
    """Run the service, drop the files, take the server down when a third is sent, stop when all are."""
    outage = {"start": 0.0, "end": 0.0}
    generated: dict[str, str] = {}
    started = time.monotonic()

    def line() -> str:
        spool = service.spool
        c = spool.counts() if spool is not None else {}
        waiting = sum(1 for _ in drop.glob("*.json"))
        mode = service.uploader.mode if service.uploader is not None else "starting"
        server = "DOWN" if not emulator.is_up else mode
        elapsed = time.monotonic() - started
        return (f"in folder {waiting:>4}  pending {c.get('pending', 0):>4}  retry_wait {c.get('retry_wait', 0):>3}  "
                f"sent {c.get('sent', 0):>4}/{total}  failed {c.get('failed', 0)}  server {server:<8}"
                f"{c.get('sent', 0) / elapsed if elapsed else 0:6.0f}/s")

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            with anyio.fail_after(timeout_s):
                while service.state != "running":
                    await anyio.sleep(0.05)
                dropper = anyio.to_thread.run_sync(_drop_files, drop, total, 150.0)
                tg.start_soon(_collect, dropper, generated)
                while True:
                    sent = service.spool.counts()["sent"] if service.spool is not None else 0
                    if sent >= total:
                        break
                    if not outage["start"] and sent >= total // 3 and outage_s > 0:
                        outage["start"] = time.monotonic()
                        emulator.go_down()
                        progress.show(line() + "  <- server taken down", force=True)
                    elif outage["start"] and not outage["end"] and time.monotonic() - outage["start"] >= outage_s:
                        outage["end"] = time.monotonic()
                        emulator.come_back()
                        progress.show(line() + "  <- server back", force=True)
                    progress.show(line())
                    await anyio.sleep(0.1)
            progress.show(line(), force=True)
            service.request_stop("demo finished")

    anyio.run(main)
    progress.done()
    return generated, time.monotonic() - started, (outage["end"] - outage["start"]) if outage["end"] else 0.0


async def _collect(dropper: Any, generated: dict[str, str]) -> None:
    generated.update(await dropper)


def _summary(r: DemoResult, out: Callable[[str], object]) -> None:
    out("\nsummary\n")
    out(f"  files dropped            {r.generated}\n")
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
