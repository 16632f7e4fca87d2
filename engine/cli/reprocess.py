"""``stationflow reprocess``: convert archived (or rejected) source files again.

Why: a converter was fixed or changed, reports were lost on the server's side, or a rejected
file was corrected. The files are staged into ``<data_dir>/intake/<name>/reprocess/`` — a
hard link (or a copy) of an archived file, or the rejected file itself — and the intake takes
them from there like new files. A running service picks them up within its poll interval; with
the service stopped, this command converts them itself.

Report ids derived by stationflow are deterministic (the source's sha256, the converter, the
report's position), so reprocessing gives the same ids: a report still in the spool with the
same content is "already present", and the server replaces the others instead of duplicating.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date, timedelta

from ..errors import InvalidInput
from ..intake import FileOutcome
from ..intake.reprocess import Staged, convert_staged, select, stage
from ..station import load_station, open_spool, spool_in_use


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reprocess", help="convert archived or rejected source files again",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--since", metavar="DATE", help="archived on or after this day (YYYY-MM-DD, 'today', 'yesterday')")
    p.add_argument("--until", metavar="DATE", help="archived on or before this day (default: today)")
    p.add_argument("--intake", action="append", metavar="NAME", help="only this intake (may be repeated)")
    p.add_argument("--rejected", action="store_true",
                   help="take the files in the error folder again (all of them, or those rejected since --since)")
    p.add_argument("--dry-run", action="store_true", help="list the files, change nothing")
    p.set_defaults(func=cmd_reprocess)


def parse_day(text: str, option: str) -> date:
    lowered = text.strip().lower()
    if lowered == "today":
        return date.today()
    if lowered == "yesterday":
        return date.today() - timedelta(days=1)
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{option} {text!r} is not a date", hint="write it as YYYY-MM-DD, e.g. 2026-01-30") from None


def cmd_reprocess(args: argparse.Namespace) -> int:
    if not args.since and not args.rejected:
        raise InvalidInput("say which files: --since DATE for archived files, and/or --rejected",
                           hint="e.g. stationflow reprocess --since 2026-01-30 --intake ict-json")
    since = parse_day(args.since, "--since") if args.since else None
    until = parse_day(args.until, "--until") if args.until else None
    _, cfg = load_station(args.config)
    by_name = {i.name: i for i in cfg.intake}
    if args.intake:
        unknown = [n for n in args.intake if n not in by_name]
        if unknown:
            raise InvalidInput(f"no intake named {', '.join(unknown)} in the config",
                               hint=f"intakes: {', '.join(by_name) or 'none configured'}")
        intakes = [by_name[n] for n in args.intake]
    else:
        intakes = list(cfg.intake)
    if not intakes:
        raise InvalidInput("the config has no intake to reprocess files for")
    items = select(cfg, intakes, since, until, args.rejected)
    if not items:
        print("nothing to reprocess: no archived or rejected file matches", file=sys.stderr)
        return 0
    if args.dry_run:
        for item in items:
            print(f"{item.intake}: {item.origin}: {item.source}")
        print(f"{len(items)} file(s) would be reprocessed", file=sys.stderr)
        return 0
    if spool_in_use(cfg):
        stage(cfg, items)
        print(f"staged {len(items)} file(s); the running service takes them within its poll interval "
              "(see `stationflow status`)")
        return 0
    spool = open_spool(cfg)
    try:
        stage(cfg, items)
        import anyio

        outcomes = anyio.run(convert_staged, cfg, intakes, spool)
    finally:
        spool.close()
    return _print(items, outcomes)


def _print(items: list[Staged], outcomes: list[FileOutcome]) -> int:
    by_source = {o.source: o for o in outcomes}
    failed = 0
    for item in items:
        outcome = by_source.get(str(item.staged))
        name = item.staged.name if item.staged else item.source.name
        if outcome is None:
            print(f"{item.intake}: {name}: waiting in {item.staged}")
            failed += 1
        elif outcome.reason:
            print(f"{item.intake}: {name}: rejected again: {outcome.reason} (see {outcome.error_file})")
            failed += 1
        else:
            new = len(outcome.reports) - outcome.already_present
            print(f"{item.intake}: {name}: {len(outcome.reports)} report(s), {new} new, "
                  f"{outcome.already_present} already in the spool")
    return 4 if failed else 0
