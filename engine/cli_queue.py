"""``submit``, ``queue list|show|retry`` and ``status``: the spool from the command line.

These work without a running service: reading commands open the spool read-only, writing
commands take the spool's lock (and say so plainly when a service holds it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from engine.errors import IllegalTransition, InvalidInput, StationflowError
from engine.station import load_station, open_spool, spool_in_use

_BUILTIN_SUBMIT_CONVERTERS = ("wsjf",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="accept WSJF report files into the spool (no service needed)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--converter", default="wsjf", help="converter for the files (default: wsjf)")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="service state and report counts per state")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_status)

    q = sub.add_parser("queue", help="inspect the spool and retry reports").add_subparsers(
        dest="queue_command", metavar="ACTION", required=True)
    p = q.add_parser("list", help="one line per report")
    p.add_argument("--state", help="only reports in this state")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(func=cmd_queue_list)
    p = q.add_parser("show", help="everything about one report")
    p.add_argument("id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_queue_show)
    p = q.add_parser("retry", help="send failed or quarantined reports again")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all-failed", action="store_true", help="every report in the failed state")
    p.set_defaults(func=cmd_queue_retry)


def cmd_submit(args: argparse.Namespace) -> int:
    if args.converter not in _BUILTIN_SUBMIT_CONVERTERS:
        raise InvalidInput(f"converter {args.converter!r} is not available for submit",
                           hint=f"available: {', '.join(_BUILTIN_SUBMIT_CONVERTERS)}")
    _, cfg = load_station(args.config)
    failures = 0
    with open_spool(cfg) as spool:
        for name in args.files:
            path = Path(name)
            try:
                raw = path.read_bytes()
            except OSError as exc:
                print(f"stationflow: error: {path}: cannot read: {exc.strerror}", file=sys.stderr)
                failures += 1
                continue
            try:
                result = spool.accept(raw, source=str(path.resolve()))
            except InvalidInput as exc:
                print(f"stationflow: error: {path}: {exc}", file=sys.stderr)
                if exc.detail:
                    print(f"  detail: {exc.detail}", file=sys.stderr)
                failures += 1
                continue
            what = f"already in the spool ({result.state})" if result.already_present else "accepted"
            print(f"{what}: {result.key} from {path}")
    if failures:
        print(f"stationflow: {failures} of {len(args.files)} file(s) refused; nothing stored was changed",
              file=sys.stderr)
        return InvalidInput.exit_code
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    _, cfg = load_station(args.config)
    running = spool_in_use(cfg)
    spool = open_spool(cfg, readonly=True)
    counts = spool.counts()
    problems = [info.as_dict() for state in ("failed", "quarantined") if state in counts
                for info in list(spool.iter_info(state))[:5]]
    status = {
        "service": {"state": "running" if running else "stopped",
                    "note": "read from the spool on disk"},
        "reports": counts,
        "queued_bytes": spool.total_bytes(),
        "data_dir": str(cfg.data_dir),
        "recent_problems": problems,
    }
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"service: {status['service']['state']} (read from the spool on disk)")
    print(f"data dir: {cfg.data_dir}")
    print("reports: " + ", ".join(f"{state} {n}" for state, n in counts.items()))
    for p in problems:
        print(f"  {p['state']}: {p['id']} — {p['last_error']}")
    return 0


def cmd_queue_list(args: argparse.Namespace) -> int:
    _, cfg = load_station(args.config)
    spool = open_spool(cfg, readonly=True)
    if args.state and args.state not in spool.lifecycle.states:
        raise InvalidInput(f"unknown state {args.state!r}", hint=f"one of {', '.join(spool.lifecycle.states)}")
    rows = [info.as_dict() for info in spool.iter_info(args.state)]
    if args.json:
        print(json.dumps([{k: r[k] for k in ("id", "state", "attempts", "last_error", "source", "next_attempt")}
                          for r in rows], indent=1))
        return 0
    for r in rows:
        error = f"  {r['last_error']}" if r["last_error"] else ""
        print(f"{r['id']}  {r['state']:<12} attempts={r['attempts']}{error}")
    print(f"{len(rows)} report(s)", file=sys.stderr)
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    _, cfg = load_station(args.config)
    info = open_spool(cfg, readonly=True).info(args.id)
    data = {**info.as_dict(), "history": info.history}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for k in ("id", "state", "attempts", "last_error", "next_attempt", "source", "size", "path"):
        print(f"{k:>12}: {data[k]}")
    print("     history:")
    for h in info.history:
        print(f"    {h.get('at')}  {h.get('from')} -> {h.get('to')} ({h.get('trigger')})"
              + (f"  {h['note']}" if h.get("note") else ""))
    return 0


def cmd_queue_retry(args: argparse.Namespace) -> int:
    if not args.ids and not args.all_failed:
        raise InvalidInput("name the reports to retry, or give --all-failed")
    _, cfg = load_station(args.config)
    failures = 0
    with open_spool(cfg) as spool:
        ids = list(args.ids) + (spool.keys("failed") if args.all_failed else [])
        for key in ids:
            try:
                state = spool.fire(key, "retry", note="retried by an operator")
                print(f"{key}: {state}")
            except (IllegalTransition, StationflowError) as exc:
                print(f"stationflow: error: {key}: {exc}", file=sys.stderr)
                failures += 1
    return 4 if failures else 0
