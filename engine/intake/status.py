"""What ``Intake.status()`` reports: JSON-able, per intake (the service's ``status`` and health read it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .model import Watch

if TYPE_CHECKING:
    from .intake import Intake
    from .notify import Notifier


def intake_status(intake: Intake, watches: list[Watch], notifier: Notifier | None, *, draining: bool,
                  in_flight: int) -> dict[str, Any]:
    """Paused reason, counts per conversion state, last error, per intake."""
    return {
        "paused": intake.paused_reason is not None,
        "paused_reason": intake.paused_reason,
        "draining": draining,
        "in_flight": in_flight,
        "workers": {"size": intake.workers, "started": intake.pool.started, "recycled": intake.pool.recycled},
        "intakes": {
            w.name: {
                "watch": str(w.root),
                "converter": w.converter_name,
                "patterns": w.patterns,
                "after": w.section.after,
                "counts": w.counts(),
                "reports_accepted": w.reports,
                "problem": w.problem or w.folder_problem,
                "last_error": w.last_error,
                "waiting": [{"file": str(f.path), "state": f.state, "note": f.note}
                            for f in list(w.files.values()) if f.note][:10],
                "error_folder": str(w.rejected_dir),
                "links_ignored": len(w.links_ignored),
                "notifications": notifier.watching.get(str(w.root), "polling") if notifier is not None else "polling",
                "note": (f"{len(w.links_ignored)} symbolic link(s) in the watch folder are ignored (e.g. "
                         f"{w.links_ignored[0]}): put the files themselves there") if w.links_ignored else None,
            }
            for w in watches
        },
    }
