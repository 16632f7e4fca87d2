"""The spool's on-disk format version, written in ``spool/format`` and checked at every open.

An older stationflow must not run on a spool a newer one wrote (it could misread sidecars or
miss states and strand reports); a newer one reads older formats. The file is written once,
durably, when a spool is created or first opened by a version that records it; a spool without
the file is format 1 (what every version before the marker wrote).
"""

from __future__ import annotations

from pathlib import Path

from .. import durable
from ... import __version__
from ..errors import IncompatibleSpool

#: The format this version writes and reads. Bump it when the layout or sidecars change
#: incompatibly, and teach the open path to read the previous one.
SPOOL_FORMAT = 1


def check_format(path: Path, *, record: bool = True) -> int:
    """The format of the spool whose marker file is ``path``; record ours if there is none yet
    (unless ``record`` is false: a read-only look). Refuses (``IncompatibleSpool``) a spool from a
    newer format, changing nothing."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        if record:
            durable.atomic_write(path, f"{SPOOL_FORMAT}\n".encode("ascii"))
        return SPOOL_FORMAT
    except (OSError, UnicodeDecodeError) as exc:
        raise IncompatibleSpool(f"cannot read the spool's format marker {path}: {exc}",
                                hint="restore the file (it holds one number, e.g. 1) from a backup") from None
    try:
        found = int(text.split()[0])
    except (ValueError, IndexError):
        raise IncompatibleSpool(f"the spool's format marker {path} does not hold a version number ({text[:40]!r})",
                                hint="restore the file (it holds one number, e.g. 1) from a backup") from None
    if found > SPOOL_FORMAT:
        raise IncompatibleSpool(
            f"the spool in {path.parent} has format {found}, written by a newer stationflow; this is "
            f"stationflow {__version__} (spool format {SPOOL_FORMAT})",
            hint="run the newer stationflow again (upgrade this station); nothing in the spool was changed")
    return found
