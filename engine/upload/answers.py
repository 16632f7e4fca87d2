"""What a server's answer says, in words a person can act on.

One reading of a WATS (or proxy) answer for every caller: the uploader's error notes and the
configurator's connection test say the same thing about the same answer.
"""

from __future__ import annotations

import httpx

#: Keys under which WATS and common proxies put a human-readable message in a JSON body.
_MESSAGE_KEYS = ("message", "Message", "error", "detail", "title")


def server_message(response: httpx.Response, limit: int = 500) -> str:
    """The server's own message: a JSON body's message field, else the start of the body text."""
    try:
        body = response.text.strip()
    except (UnicodeDecodeError, httpx.ResponseNotRead):
        return ""
    try:
        data = response.json()
    except ValueError:
        return body[:limit]
    if isinstance(data, dict):
        for key in _MESSAGE_KEYS:
            value = data.get(key)
            if isinstance(value, str):
                return value[:limit]
    return body[:limit]
