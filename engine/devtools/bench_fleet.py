"""A fleet of stations after a server outage: does it come back as a stampede?

Many stations point at one WATS server. When it has been down, every station holds a backlog; when
it returns, they must not all hit it in the same second (and keep hitting it while it answers "busy").
This runs ``stations`` uploaders in one process, each with its own spool of ``reports`` reports,
against one emulator that is down for ``down_s`` seconds and answers 503 with Retry-After above
``server_rps`` API requests a second. It prints, after the return: the mean drain rate (reports
acknowledged per second), the busiest second (every API request: posts, busy answers, probes) and
their ratio, which the fleet keeps under 2 (jittered probes, Retry-After honoured by the whole
station, one post at a time until one is acknowledged).

    python -m stationflow.engine.devtools.bench_fleet                  # 50 stations × 200 reports, 60 s down
    python -m stationflow.engine.devtools.bench_fleet --stations 10 --reports 20 --down 3

The emulator runs in the same process (threads): on a small machine its share of the CPU bounds
the drain rate, not the behaviour measured.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from pydantic import SecretStr

from ..spool.store import Spool
from ..upload.uploader import Uploader, skip_sniffio_lookups
from ...schemas.config import RetrySection, ServerSection, UploadSection
from .emulator import DEFAULT_TOKEN, Emulator, Faults
from .samples import make_report_bytes


@dataclass
class FleetResult:
    """What the server saw after it came back, and what the stations' spools say."""

    stations: int
    reports: int
    delivered: int        # distinct fleet report ids the server stored
    accepted: int         # reports the spools hold as sent
    duplicates: int       # reports stored twice (only a lost acknowledgement may cause one)
    lost: int             # ids a spool accepted that the server never got
    stuck: int            # reports not sent when the run ended
    overloaded: int       # 503 "busy" answers
    back_at: float        # time.monotonic() when the server came back
    found_s: float        # from the return to the first report stored (the stations' probes found it)
    drain_s: float        # from the first report stored after the return to the last
    mean_drain_rps: float
    peak_rps: int         # the busiest whole second of API requests after the return
    per_second: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.stations} stations × {self.reports} reports: delivered {self.delivered}, duplicates "
                f"{self.duplicates}, lost {self.lost}, stuck {self.stuck}; first report {self.found_s:.1f} s after the "
                f"return, drained in {self.drain_s:.1f} s, mean {self.mean_drain_rps:.0f} reports/s; busiest second {self.peak_rps} requests "
                f"({self.peak_rps / max(self.mean_drain_rps, 1e-9):.2f}× the mean); busy answers {self.overloaded}; "
                f"requests per second: {self.per_second}")


async def run_fleet(root: Path, *, stations: int = 50, reports: int = 200, down_s: float = 60.0,
                    server_rps: float = 300.0, retry_after_s: float = 1.0, concurrency: int = 4,
                    initial_s: float | None = None, max_s: float | None = None,
                    timeout_s: float = 900.0) -> FleetResult:
    """Fill the spools, take the server down, start every station, bring the server back after
    ``down_s``; return when every report is sent (or ``timeout_s`` has passed)."""
    initial = initial_s if initial_s is not None else min(1.0, down_s / 15)
    longest = max_s if max_s is not None else max(2.0, min(30.0, down_s / 2))
    retry = RetrySection(initial_s=initial, max_s=max(longest, initial), offline_after=3)
    upload = UploadSection(concurrency=concurrency, retry=retry)
    faults = Faults(overload_rps=server_rps, overload_retry_after=retry_after_s)
    spools: list[Spool] = []
    ids: set[str] = set()
    with Emulator(port=0, faults=faults, keep_in_memory=False) as emulator:
        try:
            for n in range(stations):
                spool = Spool(root / f"station-{n:03d}")
                spools.append(spool)
                for i in range(reports):
                    ids.add(spool.accept(make_report_bytes(n * reports + i, seed=15)).key)
            server = ServerSection(url=emulator.url, token=SecretStr(DEFAULT_TOKEN), timeout_s=30, connect_timeout_s=5)
            uploaders = [Uploader(spool, server, upload) for spool in spools]
            emulator.go_down()
            back_at = 0.0
            async with anyio.create_task_group() as tg:
                for uploader in uploaders:
                    tg.start_soon(uploader.run)
                await anyio.sleep(down_s)  # the outage itself
                emulator.come_back()
                back_at = time.monotonic()
                with anyio.move_on_after(timeout_s):
                    while sum(s.counts()["sent"] for s in spools) < len(ids):
                        await anyio.sleep(0.1)
                for uploader in uploaders:
                    uploader.drain()
            stats = emulator.stats()
            received = emulator.received_ids()
            stored = [t for t in emulator.first_stored.values() if t >= back_at]
            first, last = min(stored, default=back_at), max(stored, default=back_at)
            rates = emulator.requests_per_second()
            per_second = [rates.get(s, 0) for s in range(int(first), int(last) + 1)]
            drain_s = max(last - first, 1e-3)
            return FleetResult(
                stations=stations, reports=reports, delivered=len(received & ids),
                accepted=sum(s.counts()["sent"] for s in spools), duplicates=stats.duplicates,
                lost=len(ids - received), stuck=sum(sum(s.counts().values()) - s.counts()["sent"] for s in spools),
                overloaded=stats.overloaded, back_at=back_at, found_s=first - back_at, drain_s=drain_s,
                mean_drain_rps=len(received & ids) / drain_s, peak_rps=max(per_second, default=0),
                per_second=per_second)
        finally:
            for spool in spools:
                spool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stationflow.engine.devtools.bench_fleet",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument("--reports", type=int, default=200, help="reports in each station's spool")
    parser.add_argument("--down", type=float, default=60.0, help="seconds the server is down")
    parser.add_argument("--server-rps", type=float, default=300.0,
                        help="API requests per second above which the server answers 503 with Retry-After")
    parser.add_argument("--retry-after", type=float, default=1.0, help="the Retry-After of those answers")
    parser.add_argument("--concurrency", type=int, default=4, help="upload workers per station")
    args = parser.parse_args(argv)
    skip_sniffio_lookups()
    logging.basicConfig(level=logging.ERROR)  # each station's mode changes are not the figures
    sys.setswitchinterval(0.001)
    with tempfile.TemporaryDirectory(prefix="stationflow-fleet-") as tmp:
        result = anyio.run(lambda: run_fleet(Path(tmp), stations=args.stations, reports=args.reports,
                                             down_s=args.down, server_rps=args.server_rps,
                                             retry_after_s=args.retry_after, concurrency=args.concurrency))
    print(result.summary())
    ok = result.lost == 0 and result.stuck == 0 and result.peak_rps < 2 * result.mean_drain_rps
    print("PASS" if ok else "FAIL: see the figures above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
