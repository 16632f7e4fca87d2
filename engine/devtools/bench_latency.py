"""Latency from a file appearing in a watch folder to the server's acknowledgement, at a steady rate.

    python -m stationflow.engine.devtools.bench_latency [--rate 20] [--seconds 15] [--rounds 3]

A real service process (default intake settings: ``settle_ms`` 1000, notifications on) watches a
folder; this script writes 50 KB WSJF files into it the way equipment does (open, write, close) at
``--rate`` files a second, and the in-process WATS emulator records when each report id is first
stored (it answers 2xx right after). Two arms, alternating A B A B: ``close`` (the default: a file
its writer closed is taken at once) and ``stable`` (``settle_on_close: false``: the file must stay
unchanged for settle_ms). Prints p50/p95/p99 and max per arm (medians over rounds, with min–max).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..control.client import ControlClient
from .emulator import DEFAULT_TOKEN, Emulator
from .samples import make_report_bytes


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def one_round(root: Path, emulator: Emulator, *, settle_on_close: bool, rate: float, seconds: float,
              seed: int) -> list[float]:
    """Latencies (s) of the files of one round; a fresh station each time."""
    station = root / f"station-{seed}"
    drop = station / "drop"
    drop.mkdir(parents=True)
    config = station / "station.yaml"
    config.write_text(json.dumps({
        "station": {"name": "LATENCY-01"},
        "server": {"url": emulator.url, "token": DEFAULT_TOKEN},
        "data_dir": str(station / "data"),
        "intake": [{"name": "drop", "watch": str(drop), "converter": "wsjf", "after": "delete",
                    "settle_on_close": settle_on_close}],
    }))
    proc = subprocess.Popen([sys.executable, "-m", "stationflow", "-c", str(config), "run"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = ControlClient(station / "data", timeout=10.0)
        deadline = time.monotonic() + 60
        while True:
            if client.is_running():
                status = client.call("status")
                if (status.get("intake") or {}).get("workers", {}).get("started"):
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the service did not start")
            time.sleep(0.05)
        written: dict[str, float] = {}
        count = int(rate * seconds)
        started = time.monotonic()
        for i in range(count):
            raw = make_report_bytes(seed * 100_000 + i, seed=seed, approx_bytes=50_000)
            key = str(json.loads(raw)["id"]).lower()
            due = started + i / rate
            time.sleep(max(0.0, due - time.monotonic()))
            with open(drop / f"r{i:05d}.json", "wb") as fh:
                fh.write(raw)
            written[key] = time.monotonic()
        deadline = time.monotonic() + 60
        while any(k not in emulator.first_stored for k in written) and time.monotonic() < deadline:
            time.sleep(0.05)
        return [emulator.first_stored[k] - t for k, t in written.items() if k in emulator.first_stored]
    finally:
        proc.terminate()
        proc.wait(30)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name if __spec__ else __name__}",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=20.0, help="files a second (default 20)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per round (default 15)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per arm, alternating (default 3)")
    parser.add_argument("--dir", type=Path, default=None, help="folder for the stations (default: temp)")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {"close": [], "stable": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp, Emulator(port=0, seed=1, keep_in_memory=False) as emu:
        seed = 1
        for _ in range(args.rounds):
            for arm in ("close", "stable"):
                lat = one_round(Path(tmp), emu, settle_on_close=arm == "close", rate=args.rate,
                                seconds=args.seconds, seed=seed)
                seed += 1
                figures = {"n": float(len(lat)), "p50": _percentile(lat, 0.5), "p95": _percentile(lat, 0.95),
                           "p99": _percentile(lat, 0.99), "max": max(lat)}
                results[arm].append(figures)
                print(f"  {arm:6s} round: {len(lat)} files, p50 {figures['p50'] * 1000:.0f} ms, "
                      f"p95 {figures['p95'] * 1000:.0f} ms, p99 {figures['p99'] * 1000:.0f} ms", flush=True)
    print(f"file written → acknowledged, {args.rate:g} files/s, 50 KB, medians over {args.rounds} rounds (min–max):")
    for arm, rounds in results.items():
        parts = []
        for name in ("p50", "p95", "p99", "max"):
            values = [r[name] * 1000 for r in rounds]
            parts.append(f"{name} {statistics.median(values):.0f} ms ({min(values):.0f}–{max(values):.0f})")
        print(f"  {arm:6s}: " + ", ".join(parts))
    p95 = statistics.median(r["p95"] for r in results["close"]) * 1000
    print(f"target p95 < 300 ms with the default settings: {'met' if p95 < 300 else 'not met'} ({p95:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
