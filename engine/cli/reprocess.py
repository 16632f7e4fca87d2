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
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from .. import durable
from ..layout import DataDir
from ..errors import InvalidInput
from ..intake.intake import (
    ERROR_SUFFIX,
    Intake,
    archived_name,
)
from ..station import load_station, open_spool, spool_in_use
from ...schemas.config import IntakeSection, StationConfig


def register(sub: argparse._SubParsersAction) -> None:
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


@dataclass
class Staged:
    intake: str
    origin: str  # "archive" or "rejected"
    source: Path
    staged: Path | None = None


def select(cfg: StationConfig, intakes: list[IntakeSection], since: date | None, until: date | None,
           rejected: bool) -> list[Staged]:
    """The archived files (by archive day) and rejected files (by rejection day) to take again."""
    data_dir = Path(cfg.data_dir)
    names = {i.name for i in intakes}
    found: list[Staged] = []
    archive = DataDir(data_dir).archive
    if since is not None and archive.is_dir():
        for day_dir in sorted(archive.iterdir()):
            try:
                day = date.fromisoformat(day_dir.name)
            except ValueError:
                continue
            if day < since or (until is not None and day > until):
                continue
            for intake_dir in sorted(p for p in day_dir.iterdir() if p.is_dir() and p.name in names):
                found += [Staged(intake_dir.name, "archive", f) for f in sorted(intake_dir.iterdir()) if f.is_file()]
    if rejected:
        for name in sorted(names):
            folder = DataDir(data_dir).rejected(name)
            if not folder.is_dir():
                continue
            for f in sorted(folder.iterdir()):
                if not f.is_file() or f.name.endswith(ERROR_SUFFIX) or f.name.startswith("."):
                    continue
                note = f.with_name(f.name + ERROR_SUFFIX)
                when = date.fromtimestamp((note if note.exists() else f).stat().st_mtime)
                if since is not None and when < since or until is not None and when > until:
                    continue
                found.append(Staged(name, "rejected", f))
    return found


def stage(cfg: StationConfig, items: list[Staged]) -> None:
    """Put each file where its intake takes it: ``intake/<name>/reprocess/<origin>/<original name>``."""
    for item in items:
        folder = DataDir.of(cfg.data_dir).reprocess_inbox(item.intake, item.origin)
        folder.mkdir(parents=True, exist_ok=True)
        name = archived_name(item.source) if item.origin == "archive" else item.source.name
        target = _free(folder / name)
        if item.origin == "archive":
            tmp = folder / f".{target.name}.tmp"
            try:
                os.link(item.source, tmp)  # the archived file is never changed: a link is enough
            except OSError:
                with open(item.source, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1024 * 1024)
                    dst.flush()
                    os.fsync(dst.fileno())
            durable.replace(tmp, target)
        else:
            durable.replace(item.source, target)
            note = item.source.with_name(item.source.name + ERROR_SUFFIX)
            try:
                os.unlink(note)
            except FileNotFoundError:
                pass
        durable.fsync_dir(folder)
        item.staged = target


def _free(target: Path) -> Path:
    candidate, n = target, 0
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.stem}~{n}{target.suffix}")
    return candidate


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

        outcomes = anyio.run(_convert_staged, cfg, intakes, spool)
    finally:
        spool.close()
    return _print(items, outcomes)


async def _convert_staged(cfg: StationConfig, intakes: list[IntakeSection], spool: object) -> list:
    intake = Intake(intakes, spool, Path(cfg.data_dir), cfg.station)  # type: ignore[arg-type]
    try:
        while await intake.scan_once(only_reprocess=True):
            pass
        waiting = intake.paused_reason
    finally:
        await intake.aclose()
    if waiting:
        print(f"stationflow: {waiting}; the remaining files wait in {DataDir.of(cfg.data_dir).intake_root}/<intake>/"
              "reprocess/ and are taken when there is room", file=sys.stderr)
    return list(intake.outcomes)


def _print(items: list[Staged], outcomes: list) -> int:
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
