"""One answer to "is this station all right?", in words, from the status dict.

``status --json``, ``healthcheck`` and the configurator's banner all ask the same question, and
used to answer it three ways (the banner was green while the server refused every upload). Here
it is answered once: :func:`health_of` reads a status dict — the running service's, or the one
the station access builds from the disk when the service is down — and returns

    {"state": "ok" | "warning" | "error", "summary": "...", "reasons": [
        {"level": "error", "field": "server.token", "page": "Connection",
         "text": "the server refuses the token (401) since 10:45 — 30 reports safe in the spool, waiting"},
    ]}

Each reason names the config field it concerns (``field``; None when no setting is at fault,
e.g. reports refused by the server) so the window can open it, and says what to do. ``error``
means nothing reaches the server, or something will not be picked up; ``warning`` means it
works, but something waits for a person. The function is pure: no I/O, so it answers the same
from a live status and from the disk.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

OK, WARNING, ERROR = "ok", "warning", "error"
_RANK = {OK: 0, WARNING: 1, ERROR: 2}


def health_of(status: dict[str, Any]) -> dict[str, Any]:
    """The health of a station from its status dict (see the module docstring for the shape)."""
    reasons: list[dict[str, Any]] = []
    reasons += _service(status)
    reasons += _uploader(status)
    reasons += _intake(status)
    reasons += _reports(status)
    reasons.sort(key=lambda r: -_RANK[r["level"]])
    state = max((r["level"] for r in reasons), key=_RANK.__getitem__, default=OK)
    if reasons:
        summary = reasons[0]["text"]
        if len(reasons) > 1:
            summary += f" (and {len(reasons) - 1} more)"
    else:
        summary = _all_well(status)
    return {"state": state, "summary": summary, "reasons": reasons}


def _reason(level: str, text: str, field: str | None = None, page: str | None = None) -> dict[str, Any]:
    return {"level": level, "field": field, "page": page or _page_of(field), "text": text}


def _page_of(field: str | None) -> str:
    """The configurator page of a field: every field a reason names is under ``server`` or ``intake``."""
    if field is None:
        return "Problems"
    if field.startswith("server"):
        return "Connection"
    return "Intake"


# ---------------------------------------------------------------------- the parts

def _service(status: dict[str, Any]) -> list[dict[str, Any]]:
    service = status.get("service") or {}
    state = service.get("state") if isinstance(service, dict) else None
    if state == "running":
        return []
    if state == "ended unexpectedly":
        pid = service.get("pid")
        return [_reason(ERROR, f"the service ended unexpectedly{f' (pid {pid})' if pid else ''} — nothing is "
                               "picked up or sent; start it again and see its log", page="Service")]
    if state == "not answering":
        return [_reason(ERROR, "a service holds this station's data folder but does not answer — see its log, "
                               "or stop that process", page="Service")]
    if state in (None, "stopped"):
        return [_reason(ERROR, "the service is not running — nothing is picked up or sent; start it on the "
                               "Service page or with the station's service manager", page="Service")]
    if state == "degraded":
        out = []
        because = service.get("degraded_because") or {}
        explained = isinstance(status.get("uploader"), dict) and status["uploader"].get("mode") in ("paused", "offline")
        named = set()
        for key, why in (because.items() if isinstance(because, dict) else []):
            if key == "uploader":  # paused uploads: the uploader's own reason says more (below)
                if not explained:
                    out.append(_reason(ERROR, f"the service is degraded: {why}", "server.url"))
                continue
            task = str(key).removeprefix("task:")
            named.add(task)
            out.append(_reason(ERROR, f"the service is degraded: {task} stopped after repeated failures ({why}) "
                                      "— see the log, fix the cause, then Reload", page="Service"))
        for name, info in _tasks(status):
            if info.get("state") == "given_up" and name not in named:
                out.append(_reason(ERROR, f"the service is degraded: {name} gave up "
                                          f"({info.get('given_up_reason') or info.get('last_error')}) — see the "
                                          "log, fix the cause, then Reload", page="Service"))
        return out if out or explained else [_reason(ERROR, "the service is degraded — see its log", page="Service")]
    if state in ("starting", "draining", "stopping"):
        return [_reason(WARNING, f"the service is {state}", page="Service")]
    reason = service.get("reason")
    return [_reason(ERROR, f"the service is {state}" + (f": {reason}" if reason else ""), page="Service")]


def _tasks(status: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    tasks = status.get("tasks") or {}
    if isinstance(tasks, dict):
        return [(str(k), v) for k, v in tasks.items() if isinstance(v, dict)]
    return []


def _uploader(status: dict[str, Any]) -> list[dict[str, Any]]:
    uploader = status.get("uploader")
    if not isinstance(uploader, dict):
        return []
    mode = uploader.get("mode")
    reason = str(uploader.get("reason") or uploader.get("last_error") or "")
    since = _clock(uploader.get("since"))
    when = f" since {since}" if since else ""
    waiting = _waiting(status)
    safe = f" — {waiting} report{'s' if waiting != 1 else ''} safe in the spool, waiting"
    if mode == "paused":
        code = next((c for c in ("401", "403", "404") if c in reason), None)
        if code == "401":
            return [_reason(ERROR, f"the server refuses the token (401){when}{safe}; set a valid token",
                            "server.token")]
        if code == "403":  # the reason says what the server said and how the pause ends
            return [_reason(ERROR, f"the server refuses reports with this token{when}{safe}: {reason}",
                            "server.token")]
        if code == "404":
            return [_reason(ERROR, f"the server does not know this address (404){when}{safe}; check the URL",
                            "server.url")]
        return [_reason(ERROR, f"uploads are paused{when}: {reason or 'no reason given'}{safe}", "server.url")]
    if mode == "offline":
        detail = f" ({reason})" if reason else ""
        return [_reason(ERROR, f"the server cannot be reached{when}{detail}{safe}; it is tried again by itself",
                        "server.url")]
    return []


def _intake(status: dict[str, Any]) -> list[dict[str, Any]]:
    intake = status.get("intake")
    out: list[dict[str, Any]] = []
    if not isinstance(intake, dict):
        return out
    if intake.get("error"):
        out.append(_reason(ERROR, f"intake cannot report its state: {intake['error']}", "intake", "Service"))
    if intake.get("paused"):
        why = intake.get("paused_reason")
        out.append(_reason(WARNING, "intake is paused" + (f" ({why})" if why else "")
                           + " — new files wait in the watch folders; Resume on the Service page",
                           "intake", "Service"))
    rejected = status.get("rejected_files") if isinstance(status.get("rejected_files"), dict) else None
    intakes = intake.get("intakes") or {}
    for index, (name, info) in enumerate(intakes.items() if isinstance(intakes, dict) else []):
        if not isinstance(info, dict):
            continue
        problem = info.get("problem")
        if problem:
            folder = "watch folder" in str(problem) or "does not exist" in str(problem)
            field = f"intake[{index}].watch" if folder else f"intake[{index}].converter"
            out.append(_reason(ERROR, f"intake {name}: {problem}", field))
        links = int(info.get("links_ignored") or 0)
        if links:  # files behind links are never taken: someone expects them to be, or the link is a mistake
            example = str(info.get("note") or "")
            start, end = example.find("(e.g. "), example.rfind("): ")  # status's note: "… (e.g. PATH): …"
            example = example[start:end + 1] if 0 <= start < end else ""
            out.append(_reason(WARNING, f"intake {name}: {links} symbolic link{'s' if links != 1 else ''} in the "
                                        f"watch folder {'are' if links != 1 else 'is'} ignored{' ' + example if example else ''}"
                                        " — put the files themselves there, or set Follow symbolic links to "
                                        "inside for links that stay inside the folder",
                               f"intake[{index}].follow_links"))
        if rejected is not None:
            count = int(rejected.get(name) or 0)
        else:
            counts = info.get("counts") or {}
            count = int(counts.get("rejected") or 0) if isinstance(counts, dict) else 0
        if count:
            out.append(_reason(WARNING, f"intake {name}: {count} file{'s' if count != 1 else ''} could not be "
                                        "converted — see Problems; fix the cause, then Reprocess",
                               f"intake[{index}]", "Problems"))
    return out


def _roles(status: dict[str, Any]) -> dict[str, Any]:
    """The report machine's roles as the status gives them (``report_roles``), else the shipped
    machine's: a site machine may call its states anything, and ``held`` reports wait for a person."""
    roles = status.get("report_roles")
    if isinstance(roles, dict) and isinstance(roles.get("refused"), str):
        return roles
    return {"refused": "failed", "quarantine": "quarantined", "person": ["failed"], "final": ["sent"]}


def _reports(status: dict[str, Any]) -> list[dict[str, Any]]:
    reports = status.get("reports") or {}
    if not isinstance(reports, dict):
        return []
    roles = _roles(status)
    refused, quarantine = str(roles["refused"]), str(roles["quarantine"])
    out = []

    def count(state: str) -> int:
        n = reports.get(state)
        return n if isinstance(n, int) else 0

    failed = count(refused)
    quarantined = count(quarantine) if quarantine != refused else 0  # one state, said once
    if failed:
        out.append(_reason(WARNING, f"{failed} report{'s were' if failed != 1 else ' was'} refused by the server "
                                    "— see Problems; fix the cause, then Retry"))
    if quarantined:
        out.append(_reason(WARNING, f"{quarantined} report{'s are' if quarantined != 1 else ' is'} quarantined "
                                    "(unreadable or unexplained) — see Problems"))
    for state in roles.get("person") or []:
        n = count(str(state))
        if n and state not in (refused, quarantine):
            out.append(_reason(WARNING, f"{n} report{'s wait' if n != 1 else ' waits'} in '{state}' for a person "
                                        "(an operator trigger: stationflow queue fire, or the Problems page)"))
    return out


def _waiting(status: dict[str, Any]) -> int:
    """Reports the station will still send by itself: not done, not waiting for a person."""
    reports = status.get("reports") or {}
    if not isinstance(reports, dict):
        return 0
    roles = _roles(status)
    settled = {*map(str, roles.get("final") or []), *map(str, roles.get("person") or []),
               str(roles["refused"]), str(roles["quarantine"])}
    return sum(int(n) for state, n in reports.items() if state not in settled and isinstance(n, int))


def _all_well(status: dict[str, Any]) -> str:
    intakes = ((status.get("intake") or {}).get("intakes") or {}) if isinstance(status.get("intake"), dict) else {}
    n = len(intakes) if isinstance(intakes, dict) else 0
    return f"running; uploads flowing; {n} watch folder{'s' if n != 1 else ''} healthy"


def _clock(value: Any) -> str | None:
    """An ISO time as a person reads it: local ``10:45`` today, else ``2026-11-29 10:45``."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone()
    except ValueError:
        return value
    if moment.date() == datetime.now().astimezone().date():
        return moment.strftime("%H:%M")
    return moment.strftime("%Y-%m-%d %H:%M")


__all__ = ["ERROR", "OK", "WARNING", "health_of"]
