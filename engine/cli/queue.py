"""``submit``, ``queue list|show|retry`` and ``status``: the spool from the command line.

With the service running, ``status`` and ``queue …`` go through its control protocol (the
service owns the spool). Without it they still work: reading commands open the spool read-only
and say that they did, ``queue retry`` takes the spool's lock itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..control.client import ControlClient, ControlError
from ..errors import IllegalTransition, InvalidInput, ServiceNotRunning, StationflowError
from ..station import load_station, open_spool, spool_in_use
from ...schemas.config import StationConfig

_BUILTIN_SUBMIT_CONVERTERS = ("wsjf", "wsxf", "csv", "atml", "wstf")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("submit", help="convert files (wsjf, wsxf, csv, atml, wstf, custom) and accept the reports into the spool (no service needed)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--converter", default="wsjf", help="converter for the files (default: wsjf)")
    p.add_argument("--dry-run", action="store_true",
                   help="convert and validate only: print the WSJF reports that would be accepted (one JSON "
                        "document per line) and change nothing")
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
    """Convert the files (in worker processes, like the intake) and accept their reports.

    ``--converter`` is a built-in, a custom ``file.py:Class`` / ``module:Class``, or the name of
    an intake in the config (its converter and arguments are used). The files are not touched.
    """
    import anyio

    from ..intake import submit_files

    _, cfg = load_station(args.config)
    spec, arguments, timeout = args.converter, {}, 60.0
    by_name = {intake.name: intake for intake in cfg.intake}
    if spec in by_name:
        intake = by_name[spec]
        spec, arguments, timeout = intake.converter, dict(intake.arguments), intake.timeout_s
    elif spec not in _BUILTIN_SUBMIT_CONVERTERS and ":" not in spec:
        raise InvalidInput(f"converter {args.converter!r} is not available for submit",
                           hint=f"use one of {', '.join(_BUILTIN_SUBMIT_CONVERTERS)}, 'file.py:Class', "
                                f"'module:Class' or an intake name ({', '.join(by_name) or 'none configured'})")
    if args.dry_run:
        return _dry_run(args, cfg, spec, arguments, timeout)
    failures = 0
    if spool_in_use(cfg):  # the service owns the spool: it converts and accepts the files itself
        from ..control.client import ControlClient
        from ..intake import Submitted

        answer = ControlClient(Path(cfg.data_dir), timeout=max(60.0, timeout * len(args.files))).call(
            "submit", paths=[str(Path(f).resolve()) for f in args.files], converter=args.converter)
        results = [Submitted(r["path"], [tuple(t) for t in r["accepted"]], r["error"], r["detail"])
                   for r in answer["results"]]
        print("(submitted through the running service)", file=sys.stderr)
    else:
        with open_spool(cfg) as spool:
            results = anyio.run(lambda: submit_files([Path(f) for f in args.files], spool, cfg.station,
                                                     converter=spec, arguments=arguments, timeout_s=timeout))
    for result in results:
        for key, state, already in result.accepted:
            what = f"already in the spool ({state})" if already else "accepted"
            print(f"{what}: {key} from {result.path}")
        if result.error:
            failures += 1
            print(f"stationflow: error: {result.path}: {result.error}", file=sys.stderr)
            if result.detail:
                print(f"  detail: {result.detail}", file=sys.stderr)
    if failures:
        print(f"stationflow: {failures} of {len(args.files)} file(s) refused; only the reports listed as "
              "accepted are in the spool", file=sys.stderr)
        return InvalidInput.exit_code
    return 0


def _dry_run(args: argparse.Namespace, cfg: StationConfig, spec: str, arguments: dict[str, Any],
             timeout: float) -> int:
    """``submit --dry-run``: the reports go to stdout (one per line, as the spool would store them)."""
    import anyio

    from ...schemas.wsjf import parse_header
    from ..convert.preview import preview_files

    results = anyio.run(lambda: preview_files([Path(f) for f in args.files], cfg.station, converter=spec,
                                              arguments=arguments, timeout_s=timeout))
    failures = 0
    out = sys.stdout.buffer
    for result in results:
        for raw in result.reports:
            out.write(raw + b"\n")
            print(f"would accept: {parse_header(raw).key} from {result.path}", file=sys.stderr)
        if result.error:
            failures += 1
            print(f"stationflow: error: {result.path}: {result.error}", file=sys.stderr)
            if result.detail:
                print(f"  detail: {result.detail}", file=sys.stderr)
    out.flush()
    print(f"dry run: nothing was accepted ({len(args.files) - failures} of {len(args.files)} file(s) would be)",
          file=sys.stderr)
    return InvalidInput.exit_code if failures else 0


_TRANSPORT_CODES = {"timeout", "connection", "busy", "protocol", "too_large", "protocol_version", "unauthorized"}
_PAGE = 5000


def _ask_service(cfg: StationConfig, command: str, **args: Any) -> tuple[Any, str | None]:
    """``(result, None)`` from the running service, or ``(None, why)`` when it cannot be asked.

    Only "cannot reach it" falls back to the disk; a refusal from the service (no such report)
    is raised as it is.
    """
    try:
        return ControlClient(cfg.data_dir).call(command, **args), None
    except ServiceNotRunning:
        return None, "service not running"
    except ControlError as exc:
        if exc.code in _TRANSPORT_CODES:
            return None, f"service not answering on its control port ({exc.message})"
        raise


def _fallback_note(why: str) -> str:
    return f"{why} — read from the spool on disk"


def cmd_status(args: argparse.Namespace) -> int:
    _, cfg = load_station(args.config)
    live, why = _ask_service(cfg, "status")
    if live is not None:
        if args.json:
            print(json.dumps(live, indent=2, default=str))
        else:
            _print_live_status(cfg, live)
        return 0
    assert why is not None
    running = spool_in_use(cfg)
    spool = open_spool(cfg, readonly=True)
    counts = spool.counts()
    problems = [info.as_dict() for state in ("failed", "quarantined") if state in counts
                for info in list(spool.iter_info(state))[:5]]
    status: dict[str, Any] = {
        "service": {"state": "running" if running else "stopped", "note": _fallback_note(why)},
        "reports": counts,
        "queued_bytes": spool.total_bytes(),
        "data_dir": str(cfg.data_dir),
        "recent_problems": problems,
    }
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"service: {'running' if running else 'stopped'} ({_fallback_note(why)})")
    print(f"data dir: {cfg.data_dir}")
    print("reports: " + ", ".join(f"{state} {n}" for state, n in counts.items()))
    for p in problems:
        print(f"  {p['state']}: {p['id']} — {p['last_error']}")
    return 0


def _scalars(section: Any, skip: tuple[str, ...] = ()) -> str:
    """``key=value`` for the plain values of a status section (nested ones are shown elsewhere)."""
    if not isinstance(section, dict):
        return str(section)
    return "  ".join(f"{k}={v}" for k, v in section.items()
                     if k not in skip and v is not None and not isinstance(v, (dict, list)))


def _print_live_status(cfg: StationConfig, status: dict[str, Any]) -> None:
    service = status.get("service") or {}
    state = service.get("state", "?") if isinstance(service, dict) else service
    extra = _scalars(service, skip=("state", "data_dir"))
    print(f"service: {state}" + (f"  ({extra})" if extra else ""))
    print(f"data dir: {cfg.data_dir}")
    for note in (service.get("file_notes") or []) if isinstance(service, dict) else []:
        print(f"note: {note}")
    reports = status.get("reports") or {}
    if isinstance(reports, dict):
        print("reports: " + ", ".join(f"{s} {n}" for s, n in reports.items()))
    for name in ("uploader", "intake"):
        if status.get(name) is not None:
            print(f"{name}: {_scalars(status[name])}")
    tasks = status.get("tasks") or {}
    rows = tasks.items() if isinstance(tasks, dict) else ((t.get("name", "?"), t) for t in tasks if isinstance(t, dict))
    for name, task in rows:
        if isinstance(task, dict):
            error = task.get("last_error") or task.get("reason")
            print(f"  task {name}: {task.get('state', '?')}" + (f" — {error}" if error else ""))
        else:
            print(f"  task {name}: {task}")
    for state in ("failed", "quarantined"):
        if isinstance(reports, dict) and reports.get(state):
            page, _ = _ask_service(cfg, "queue.list", state=state, limit=5)
            for r in (page or {}).get("reports", []):
                print(f"  {r['state']}: {r['id']} — {r['last_error']}")


def _live_rows(cfg: StationConfig, state: str | None) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Every report through the service, a page at a time; ``(None, why)`` when it cannot be asked."""
    rows: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        page, why = _ask_service(cfg, "queue.list", state=state, offset=offset, limit=_PAGE)
        if page is None:
            if offset == 0:
                return None, why
            raise ServiceNotRunning(f"the service stopped answering while listing reports: {why}",
                                    hint="run the command again")
        for row in page["reports"]:
            rows.setdefault(row["id"], row)
        offset += len(page["reports"])
        if not page["reports"] or offset >= page["total"]:
            return list(rows.values()), None


def cmd_queue_list(args: argparse.Namespace) -> int:
    _, cfg = load_station(args.config)
    rows, why = _live_rows(cfg, args.state)
    if rows is None:
        print(f"stationflow: {_fallback_note(why or 'service not running')}", file=sys.stderr)
        spool = open_spool(cfg, readonly=True)
        if args.state and args.state not in spool.lifecycle.states:
            raise InvalidInput(f"unknown state {args.state!r}", hint=f"one of {', '.join(spool.lifecycle.states)}")
        rows = [info.as_dict() for info in spool.iter_info(args.state)]
    if args.json:
        print(json.dumps([{k: r.get(k) for k in ("id", "state", "attempts", "last_error", "source", "next_attempt")}
                          for r in rows], indent=1))
        return 0
    for r in rows:
        error = f"  {r['last_error']}" if r["last_error"] else ""
        print(f"{r['id']}  {r['state']:<12} attempts={r['attempts']}{error}")
    print(f"{len(rows)} report(s)", file=sys.stderr)
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    _, cfg = load_station(args.config)
    data, why = _ask_service(cfg, "queue.show", id=args.id)
    if data is None:
        print(f"stationflow: {_fallback_note(why or 'service not running')}", file=sys.stderr)
        info = open_spool(cfg, readonly=True).info(args.id)
        data = {**info.as_dict(), "history": info.history}
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    for k in ("id", "state", "attempts", "last_error", "next_attempt", "source", "size", "path"):
        print(f"{k:>12}: {data.get(k)}")
    print("     history:")
    for h in data.get("history") or []:
        print(f"    {h.get('at')}  {h.get('from')} -> {h.get('to')} ({h.get('trigger')})"
              + (f"  {h['note']}" if h.get("note") else ""))
    return 0


def cmd_queue_retry(args: argparse.Namespace) -> int:
    if not args.ids and not args.all_failed:
        raise InvalidInput("name the reports to retry, or give --all-failed")
    _, cfg = load_station(args.config)
    client = ControlClient(cfg.data_dir)
    try:
        results: list[dict[str, Any]] = []
        if args.ids:
            results += client.call("queue.retry", ids=list(args.ids))["results"]
        if args.all_failed:
            results += client.call("queue.retry_failed")["results"]
    except ServiceNotRunning:
        return _retry_on_disk(cfg, args)
    failures = 0
    for r in results:
        if r["ok"]:
            print(f"{r['id']}: {r['state']}")
        else:
            print(f"stationflow: error: {r['id']}: {r['error']}", file=sys.stderr)
            failures += 1
    return 4 if failures else 0


def _retry_on_disk(cfg: StationConfig, args: argparse.Namespace) -> int:
    """No service: take the spool's lock and move the reports ourselves."""
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
