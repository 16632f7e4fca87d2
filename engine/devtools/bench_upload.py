"""Upload figures: raw non-durable httpx POSTs against stationflow's durable spool→server path.

Both are measured in the same run against the same emulator, which is started as a separate process so the
client and the server do not share a GIL. Also measured: the latency from ``accept`` returning to
the server's acknowledgement being recorded, at a steady 50 reports/s.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
from pydantic import SecretStr

from .emulator import DEFAULT_TOKEN
from ..spool.store import Spool
from ..upload.uploader import REPORT_PATH, SWITCH_INTERVAL_S, Uploader, skip_sniffio_lookups
from ...schemas.config import RetrySection, ServerSection, UploadSection

_SAMPLE = Path(__file__).resolve().parent / "data" / "uut-wsjf-export.json"  # shipped in the package


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_emulator_process() -> tuple[subprocess.Popen[bytes], str]:
    """``stationflow emulator`` in its own process; returns it and its URL once it answers."""
    port = _free_port()
    from ..children import child_env

    # -P: the current folder is not searched first (a checkout's stationflow/ must not shadow the
    # installed package the benchmark runs from).
    proc = subprocess.Popen([sys.executable, "-P", "-m", "stationflow", "emulator", "--port", str(port),
                             "--stats-every", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=child_env())
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30  # a busy station starts a Python process slowly
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            httpx.get(url + "/api/internal/Client/Ping", timeout=0.5)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    code = proc.wait()
    raise RuntimeError(f"the emulator did not start on port {port} "
                       + (f"(it exited with code {code})" if code >= 0 else "(no answer within 30 s)"))


def sample_reports(n: int, template: bytes | None = None) -> list[bytes]:
    """``n`` copies of the 50 KB sample report, each with its own id (as real reports have)."""
    doc = json.loads(template or _SAMPLE.read_bytes())
    old = doc["id"].encode()
    raw = template or _SAMPLE.read_bytes()
    return [raw.replace(old, str(uuid.uuid4()).encode(), 1) for _ in range(n)]


def raw_post_rate(url: str, reports: list[bytes], concurrency: int) -> float:
    """Plain httpx posts, nothing written to disk: the ceiling for this client and server."""

    async def main() -> float:
        headers = {"Authorization": f"Basic {DEFAULT_TOKEN}", "Content-Type": "application/json"}
        limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1)
        async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
            items = iter(reports)
            started = time.perf_counter()

            async def worker() -> None:
                for raw in items:
                    response = await client.post(REPORT_PATH, content=raw)
                    response.raise_for_status()

            async with anyio.create_task_group() as tg:
                for _ in range(concurrency):
                    tg.start_soon(worker)
            return len(reports) / (time.perf_counter() - started)

    return anyio.run(main)


def _uploader(spool: Spool, url: str, concurrency: int) -> Uploader:
    server = ServerSection(url=url, token=SecretStr(DEFAULT_TOKEN), timeout_s=30)
    upload = UploadSection(concurrency=concurrency, rate_per_s=None, retry=RetrySection(initial_s=0.1, max_s=1))
    return Uploader(spool, server, upload)


def spool_drain_rate(data_dir: Path, url: str, reports: list[bytes], concurrency: int) -> float:
    """Durable path: reports accepted (fsynced) first, then timed from spool to acknowledged ``sent``."""
    with Spool(data_dir, max_reports=len(reports) + 10) as spool:
        for raw in reports:
            spool.accept(raw)
        uploader = _uploader(spool, url, concurrency)
        total = len(reports)

        async def main() -> float:
            async with anyio.create_task_group() as tg:
                started = time.perf_counter()
                tg.start_soon(uploader.run)
                while spool.counts()["sent"] < total:
                    await anyio.sleep(0.002)
                elapsed = time.perf_counter() - started
                uploader.drain()
            return total / elapsed

        return anyio.run(main)


def steady_latency(data_dir: Path, url: str, reports: list[bytes], rate: float = 50.0) -> dict[str, float]:
    """accept → acknowledgement latency at a steady rate: p50/p95/p99/max in milliseconds."""
    accepted_at: dict[str, float] = {}
    acked_at: dict[str, float] = {}
    with Spool(data_dir, max_reports=len(reports) + 10) as spool:
        real_fire = spool.fire

        def fire(key: str, trigger: str, **kwargs: object) -> str:
            if trigger == "accepted":
                acked_at[key] = time.perf_counter()  # the server's 2xx has arrived
            return real_fire(key, trigger, **kwargs)  # type: ignore[arg-type]

        spool.fire = fire  # type: ignore[method-assign]
        uploader = _uploader(spool, url, 4)

        def feed() -> None:
            start = time.perf_counter()
            for i, raw in enumerate(reports):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                key = spool.accept(raw).key
                accepted_at[key] = time.perf_counter()

        async def main() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(uploader.run)
                feeder = threading.Thread(target=feed)
                feeder.start()
                while len(acked_at) < len(reports):
                    await anyio.sleep(0.01)
                feeder.join()
                uploader.drain()

        anyio.run(main)
    latencies = sorted(max(0.0, acked_at[k] - accepted_at[k]) * 1000 for k in accepted_at)
    pick: Callable[[float], float] = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {"p50": pick(0.5), "p95": pick(0.95), "p99": pick(0.99), "max": latencies[-1]}


def run(workdir: Path | None = None, *, n: int = 1000, concurrencies: tuple[int, ...] = (1, 4), rounds: int = 5,
        out: Callable[[str], None] = print) -> dict[str, float]:
    """Every upload figure in one run; returns them keyed for the README.

    Raw and durable are measured in alternating rounds (``rounds`` of ``n / rounds`` reports each)
    and their times summed, so a shared machine's slow moments fall on both sides alike.
    """
    figures: dict[str, float] = {}
    proc, url = start_emulator_process()
    per_round = max(1, n // rounds)
    try:
        with tempfile.TemporaryDirectory(prefix="stationflow-bench-upload-", dir=workdir) as tmp:
            base = Path(tmp)
            size = len(_SAMPLE.read_bytes())
            out(f"upload: the {size // 1000} KB sample report, {rounds} alternating rounds of {per_round} per figure; "
                f"emulator in its own process at {url}")
            for c in concurrencies:
                raw_t = durable_t = 0.0
                for r in range(rounds):
                    raw_t += per_round / raw_post_rate(url, sample_reports(per_round), c)
                    durable_t += per_round / spool_drain_rate(base / f"drain-{c}-{r}", url,
                                                              sample_reports(per_round), c)
                raw, drain = rounds * per_round / raw_t, rounds * per_round / durable_t
                figures[f"raw_{c}"], figures[f"drain_{c}"] = raw, drain
                out(f"  concurrency {c:>2}: raw httpx POSTs {raw:7.0f} /s | durable spool→server {drain:7.0f} /s "
                    f"= {drain / raw:.2f}× raw (target ≥ 0.85×)")
            lat = steady_latency(base / "latency", url, sample_reports(min(n, 500)))
            figures.update({f"latency_{k}_ms": v for k, v in lat.items()})
            out(f"  accept → server acknowledgement at a steady 50/s: p50 {lat['p50']:.1f} ms, "
                f"p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms (target p95 < 50 ms)")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
    return figures


if __name__ == "__main__":
    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as `stationflow run` sets it (engine/cli/service.py)
    skip_sniffio_lookups()
    run(n=int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
