"""What a reload changed, in words: one line per setting that differs (the token never shown).

The lifecycles are not among the settings a reload applies: the machines in force stay for the
whole run (see ``lifecycle.site.restart_note``, which says which files wait for a restart).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["diff_settings", "flatten_settings", "secret_of", "short_value"]


def secret_of(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def log_secrets(config: Any) -> list[str]:
    """What the log must never show: the token, and a password written in the server URL
    (``http://admin:pw@host``; the URL itself is printed masked, but an exception's text is not)."""
    found = [secret_of(config.server.token) or ""]
    try:
        found.append(unquote(urlsplit(str(config.server.url)).password or ""))
    except ValueError:
        pass
    return [s for s in found if s]


def flatten_settings(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from flatten_settings(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, data


def short_value(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def diff_settings(old: dict[str, Any], new: dict[str, Any]) -> Iterator[str]:
    """``upload.rate_per_s: 100.0 → 5.0`` for every setting that differs (the token is masked
    on both sides, so it never shows here; the caller compares it separately)."""
    before, after = dict(flatten_settings(old)), dict(flatten_settings(new))
    for key in [*before, *(k for k in after if k not in before)]:
        if before.get(key) != after.get(key):
            if key == "intake":
                yield f"intake: {len(before.get(key) or [])} → {len(after.get(key) or [])} watched folder(s), changed"
            else:
                yield f"{key}: {short_value(before.get(key))} → {short_value(after.get(key))}"
