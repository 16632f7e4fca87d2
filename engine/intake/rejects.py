"""Files that cannot be converted: moved to ``<data_dir>/rejected/<intake>/`` with a reason.

Nothing is deleted: the file (or, for ``after: keep``, a copy) goes to the error folder with
``<name>.error.txt`` beside it (converter, time, reason, the first lines of the traceback), and
``stationflow reprocess --rejected`` takes it again once the cause is fixed.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from .. import durable
from ..clock import now_iso
from ..durable import retry_held
from ..names import short_name
from .model import ERROR_SUFFIX, TrackedFile
from .post_actions import after_action, copy_whole, drop_copy, free_name, remove_source, source_unchanged, sync


#: Characters of a source's name kept in the error folder: with .error.txt and a ~N, at most
#: 255 bytes even for names of 3-byte UTF-8 characters (a longer name could not be rejected at all).
REJECTED_NAME_CHARS = 72


def move_to_rejected(file: TrackedFile, kind: str, reason: str, detail: str | None,
                     traceback_text: str | None, converter: str | None, *, fsync: bool) -> str:
    watch = file.watch
    watch.rejected_dir.mkdir(parents=True, exist_ok=True)
    keep_source = after_action(file) == "keep"
    # A long name is shortened (with a hash) so that the name plus .error.txt still fits 255 bytes.
    target = free_name(watch.rejected_dir / short_name(file.path.name, REJECTED_NAME_CHARS), also=ERROR_SUFFIX)
    lines = [
        f"file:      {file.path}",
        f"intake:    {watch.name}",
        f"converter: {converter or watch.section.converter}",
        f"time:      {now_iso()}",
        f"kind:      {kind}",
        f"reason:    {reason}",
    ]
    if detail:
        lines.append(f"detail:    {detail}")
    if file.sha256:
        lines.append(f"sha256:    {file.sha256}")
    if file.reports:
        lines.append(f"accepted before the refusal (they stay in the spool): {', '.join(file.reports)}")
    if keep_source:
        lines.append("the source was left in place (after: keep); this is a copy")
    if traceback_text:
        lines += ["", "traceback (last lines):", traceback_text]
    lines += ["", "Fix the cause, then: stationflow reprocess --rejected --intake " + watch.name,
              f"(or move {target.name} back into {watch.root})"]
    error_path = target.with_name(target.name + ERROR_SUFFIX)
    if file.copy is not None and file.copy.exists():
        durable.replace(file.copy, target)
        drop_copy(file, moved=True)
    elif not keep_source:
        move_into(file.path, target, fsync=fsync)
    else:
        target = None  # type: ignore[assignment]
    # surrogateescape: a file name that is not UTF-8 is written as the very bytes it has on disk.
    durable.atomic_write(error_path, ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape"), tmp_dir=watch.tmp,
                         sync=fsync)
    sync(watch.rejected_dir, fsync=fsync)
    if not keep_source and source_unchanged(file):
        for folder, best_effort in remove_source(file):
            sync(folder, fsync=fsync, best_effort=best_effort)
    return str(error_path)


def move_into(source: Path, target: Path, *, fsync: bool) -> None:
    """Move a file into the data folder: a rename, or a whole fsynced copy and then removal."""
    try:
        retry_held("rename", source, lambda: os.replace(source, target))
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    copy_whole(source, target, fsync=fsync)
    retry_held("delete", source, lambda: os.unlink(source))
