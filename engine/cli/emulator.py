"""``stationflow emulator``: run the WATS emulator in the foreground until Ctrl+C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ..devtools.emulator import DEFAULT_TOKEN, Emulator, Faults, is_loopback_host
from ..errors import StationflowError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "emulator",
        help="a WATS-compatible server on loopback, with fault injection",
        description="Run a WATS-compatible server (POST /api/Report/WSJF, GET /api/App/Version, "
                    "GET /api/internal/Client/Ping) with optional faults. Faults can also be changed "
                    "while it runs: POST /_emulator/faults with a JSON object; GET /_emulator/stats.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = any free port)")
    parser.add_argument("--token", default=DEFAULT_TOKEN,
                        help=f"the token clients must send as 'Basic <token>' (default {DEFAULT_TOKEN})")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without a token")
    parser.add_argument("--store", metavar="DIR", type=Path, help="also write each report received to DIR/<id>.json")
    parser.add_argument("--error-rate", type=float, default=0.0, metavar="R",
                        help="answer --error-status to this fraction of report posts (0 to 1)")
    parser.add_argument("--error-status", type=int, default=503, metavar="S", help="status for injected errors")
    parser.add_argument("--retry-after", type=float, default=None, metavar="S",
                        help="send Retry-After: S with injected errors")
    parser.add_argument("--latency-ms", type=float, default=0.0, metavar="MS", help="added to every API answer")
    parser.add_argument("--drop-before", type=float, default=0.0, metavar="R",
                        help="close this fraction of report connections before reading them")
    parser.add_argument("--drop-after", type=float, default=0.0, metavar="R",
                        help="store, then close without answering, this fraction of reports (lost ack)")
    parser.add_argument("--reject-rate", type=float, default=0.0, metavar="R",
                        help="answer 400 to this fraction of valid reports")
    parser.add_argument("--seed", type=int, default=None, help="seed for the fault dice (repeatable runs)")
    parser.add_argument("--stats-every", type=float, default=5.0, metavar="S",
                        help="print a stats line every S seconds (default 5; 0 = only at the end)")
    parser.add_argument("--allow-remote", action="store_true",
                        help="allow a --host other than loopback (the emulator has no TLS and a test token)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not is_loopback_host(args.host) and not args.allow_remote:
        raise StationflowError(
            f"refusing to listen on {args.host}: the emulator is a test server without TLS, "
            "and anyone who can reach it can change its faults",
            hint="use --host 127.0.0.1, or add --allow-remote if you really mean it")
    try:
        faults = Faults(error_rate=args.error_rate, error_status=args.error_status, retry_after=args.retry_after,
                        latency_s=args.latency_ms / 1000.0, drop_before_rate=args.drop_before,
                        drop_after_rate=args.drop_after, reject_rate=args.reject_rate)
    except ValueError as exc:
        raise StationflowError(f"emulator: {exc}", hint="fix the option and run again") from None
    emulator = Emulator(args.host, args.port, token=None if args.no_auth else args.token, store_dir=args.store,
                        faults=faults, seed=args.seed, keep_in_memory=False)
    try:
        emulator.start()
    except OSError as exc:
        raise StationflowError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
                               hint="choose another --port, or stop the program that uses it") from None

    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    token = "none (--no-auth)" if args.no_auth else f"Basic {args.token}"
    print(f"WATS emulator listening on {emulator.url}  token: {token}", flush=True)
    print(f"faults: {_describe(faults)}; change them with POST {emulator.url}/_emulator/faults", flush=True)
    started = time.monotonic()
    last_posts = 0
    try:
        while not stop.wait(args.stats_every if args.stats_every > 0 else 3600):
            stats = emulator.stats()
            rate = (stats.posts - last_posts) / args.stats_every
            last_posts = stats.posts
            print(f"{stats.line()} ({rate:.0f} posts/s)", flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        emulator.stop()
    stats = emulator.stats()
    print(f"stopped after {time.monotonic() - started:.0f} s: {stats.line()}", flush=True)
    return 0


def _describe(faults: Faults) -> str:
    default = Faults()
    changed = [f"{name}={value}" for name, value in faults.as_dict().items() if getattr(default, name) != value]
    return ", ".join(changed) or "none"
