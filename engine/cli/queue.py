"""``submit``, ``queue list|show|retry`` and ``status``: the spool from the command line.

``status`` and ``queue …`` ask the station access (engine/station_access.py): the running
service through its control protocol (it owns the spool), else the disk — reading commands then
open the spool read-only and say so, ``queue retry`` takes the spool's lock itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..station import load_station, open_spool, spool_in_use
from ..station_access import StationAccess
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
    p = q.add_parser("fire", help="fire an operator trigger of the report lifecycle (e.g. approve) on reports",
                     description="Fire a trigger marked `by: operator` in the report lifecycle in force on "
                                 "each report named (through the service when it runs, on the spool "
                                 "otherwise). Exit 4 when the trigger is not an operator trigger from a "
                                 "report's state; the other reports are still moved.")
    p.add_argument("trigger", metavar="TRIGGER")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(func=cmd_queue_fire)
    p = q.add_parser("resume", help="lift a pause of the uploads (e.g. the token now may submit): probe, then send")
    p.set_defaults(func=cmd_queue_resume)


def cmd_queue_resume(args: argparse.Namespace) -> int:
    """``queue resume``: the running service's uploader probes the server now and sends if it answers."""
    from ..control.client import ControlClient

    _, cfg = load_station(args.config)
    answer = ControlClient(cfg.data_dir).call("upload.resume")
    if answer["resumed"]:
        print(f"uploads resumed: checking the server, then sending (mode now {answer['mode']})")
    else:
        print(f"uploads were not paused (mode {answer['mode']}); nothing to resume")
    return 0


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


def _access(cfg: StationConfig) -> StationAccess:
    return StationAccess(cfg)


def cmd_status(args: argparse.Namespace) -> int:
    _, cfg = load_station(args.config)
    answer = _access(cfg).status()
    status = answer.data
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    if answer.live:
        _print_live_status(status)
    else:
        print(f"service: {status['service']['state']} ({answer.note})")
        print("reports: " + ", ".join(f"{state} {n}" for state, n in status["reports"].items()))
    print(f"data dir: {cfg.data_dir}")
    _print_health(status.get("health") or {})
    problems = _access(cfg).problems(limit=5) if any(
        (status.get("reports") or {}).get(s) for s in _access(cfg).problem_states()) else None
    for r in problems.rows if problems else []:
        print(f"  {r['state']}: {r['id']} — {r['last_error']}")
    return 0


def _print_health(health: dict[str, Any]) -> None:
    print(f"health: {health.get('state', '?')}")
    for reason in health.get("reasons") or []:
        where = f" [{reason['field']}]" if reason.get("field") else ""
        print(f"  {reason['level']}: {reason['text']}{where}")


def _scalars(section: Any, skip: tuple[str, ...] = ()) -> str:
    """``key=value`` for the plain values of a status section (nested ones are shown elsewhere)."""
    if not isinstance(section, dict):
        return str(section)
    return "  ".join(f"{k}={v}" for k, v in section.items()
                     if k not in skip and v is not None and not isinstance(v, (dict, list)))


def _print_live_status(status: dict[str, Any]) -> None:
    service = status.get("service") or {}
    state = service.get("state", "?") if isinstance(service, dict) else service
    extra = _scalars(service, skip=("state", "data_dir"))
    print(f"service: {state}" + (f"  ({extra})" if extra else ""))
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


def cmd_queue_list(args: argparse.Namespace) -> int:
    _, cfg = load_station(args.config)
    page = _access(cfg).reports(args.state)
    if not page.source == "service":
        print(f"stationflow: {page.note}", file=sys.stderr)
    rows = page.rows
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
    answer = _access(cfg).show(args.id)
    if not answer.live:
        print(f"stationflow: {answer.note}", file=sys.stderr)
    data = answer.data
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
    answer = _access(cfg).retry(list(args.ids), all_failed=args.all_failed)
    failures = 0
    for r in answer.data:
        if r["ok"]:
            print(f"{r['id']}: {r['state']}")
        else:
            print(f"stationflow: error: {r['id']}: {r['error']}", file=sys.stderr)
            failures += 1
    return 4 if failures else 0


def cmd_queue_fire(args: argparse.Namespace) -> int:
    """``queue fire TRIGGER ID...``: through the service when it runs, else on the spool itself
    (the station access's one path, which the configurator's trigger buttons use too)."""
    _, cfg = load_station(args.config)
    answer = _access(cfg).fire(args.trigger, list(args.ids)).data
    failures = 0
    for r in answer["results"]:
        if r["ok"]:
            print(f"{r['id']}: {r['state']}")
        else:
            print(f"stationflow: error: {r['id']}: {r['error']}", file=sys.stderr)
            failures += 1
    return 4 if failures else 0
