"""Short derived names, so that paths built from them stay under Windows' 260-character limit.

Archive and reject paths are built from a source file's name plus a prefix (a hash, an intake
name) inside a data dir that may itself be deep. A long test-equipment file name would then make
a path Windows cannot create (``MAX_PATH`` without the long-path opt-in). ``short_name`` keeps a
name as it is when it fits, and otherwise keeps its start and its extension and puts a hash of the
whole name in between, so two long names that share a start stay distinct and the same name
always gives the same short one.
"""

from __future__ import annotations

import hashlib

__all__ = ["short_name", "HASH_CHARS"]

#: Characters of the sha256 (hex) put into a shortened name: 48 bits, no collisions in practice
#: among the names of one folder.
HASH_CHARS = 12
_MAX_SUFFIX = 16  # an extension longer than this is not kept apart (it is not really one)


def short_name(name: str, limit: int = 80) -> str:
    """``name`` if it has at most ``limit`` characters, else ``<start>~<hash><.ext>`` of exactly ``limit``.

    The extension is kept so the file still opens with the right program and still matches the
    intake's patterns; the hash is of the whole original name (UTF-8), so the result is stable.
    """
    minimum = HASH_CHARS + 2
    if limit < minimum:
        raise ValueError(f"limit must be at least {minimum} characters, not {limit}")
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]
    dot = name.rfind(".")
    suffix = name[dot:] if 0 < dot and len(name) - dot <= _MAX_SUFFIX else ""
    if len(suffix) + HASH_CHARS + 2 > limit:
        suffix = ""
    keep = limit - len(suffix) - HASH_CHARS - 1
    stem = name[:len(name) - len(suffix)][:keep].rstrip(" .")  # Windows drops trailing dots and spaces
    return f"{stem}~{digest}{suffix}"[:limit] if stem else f"~{digest}{suffix}"
