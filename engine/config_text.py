"""Change values in a block-style YAML config file without losing its comments or its layout.

pyyaml reads and writes data, not text: a file saved through it loses every comment, the order a
person chose and the way numbers were written (``30`` came back as ``30.0``). ruamel, which
round-trips, is not a dependency. So a save edits the text itself, line by line, for the keys
that changed — the block style ``config init`` writes and people write by hand::

    server:
      url: http://wats:8080   # the comment stays
      # token: PASTE-TOKEN-HERE    ← a commented-out key becomes the value line when it is set

:func:`edit_config_text` is careful rather than clever: it indexes ``key: value`` lines by their
indentation, replaces a scalar value on its line (keeping the comment after it), replaces a key's
whole block when its value is a list or has lines below it, fills a commented-out placeholder or
appends a key to its section, and refuses (``NotEditable``) whatever it does not understand —
flow mappings, anchors, multi-line strings. The caller checks the result by loading it back and
falls back to the commented ``config init`` format when it is refused or differs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

Path_ = tuple[str, ...]

_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)[ \t]*:(?:[ \t]+(?P<rest>.*)|[ \t]*)$")
_DASH = re.compile(r"^(?P<indent> *)-(?:[ \t]|$)")


class NotEditable(Exception):
    """The file's shape is not one this editor changes safely; write the whole file instead."""


@dataclass
class _Entry:
    path: Path_
    line: int  # index of the ``key:`` line
    indent: int
    inline: str  # the value written on the key's line ("" when the value is below it)
    comment: str  # "  # ..." after the value, kept when the value changes
    end: int = 0  # one past the last line of the key's block (content lines only, not trailing comments)
    lead: str = ""  # what precedes the key on its line: spaces, or ``  - `` for an item's first key
    item: bool = False  # a list item of mappings (path ends in ``#<index>``), not a key


def flatten(data: Any, prefix: Path_ = (), items: set[Path_] | None = None) -> dict[Path_, Any]:
    """Mapping leaves by path; lists and empty mappings are leaves (edited as a whole) — except
    the lists named in ``items``, whose mappings are walked item by item (``#0``, ``#1``, …)."""
    if isinstance(data, dict) and data:
        out: dict[Path_, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, (*prefix, str(key)), items))
        return out
    if items and prefix in items and isinstance(data, list):
        out = {}
        for i, value in enumerate(data):
            out.update(flatten(value, (*prefix, f"#{i}"), items))
        return out
    return {prefix: data}


def _item_lists(old: Any, new: Any, prefix: Path_ = ()) -> set[Path_]:
    """Lists of mappings with as many items before as after: edited key by key inside each item
    (the person's comments between the items stay); a list that grew or shrank is one value."""
    out: set[Path_] = set()
    if isinstance(old, dict) and isinstance(new, dict):
        for key in old.keys() & new.keys():
            out |= _item_lists(old[key], new[key], (*prefix, str(key)))
    elif isinstance(old, list) and isinstance(new, list) and old and len(old) == len(new) \
            and all(isinstance(v, dict) and v for v in (*old, *new)):
        out.add(prefix)
        for i, (a, b) in enumerate(zip(old, new)):
            out |= _item_lists(a, b, (*prefix, f"#{i}"))
    return out


def changed_paths(old: dict[str, Any], new: dict[str, Any], items: set[Path_] | None = None) -> list[Path_]:
    """Leaf paths whose value differs (``30`` and ``30.0`` are the same value), in ``new``'s order."""
    before, after = flatten(old, items=items), flatten(new, items=items)
    out = [p for p, v in after.items() if p not in before or not _same(before[p], v)]
    out += [p for p in before if p not in after and not any(_under(p, q) for q in after)]
    return out


def edit_config_text(text: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """``text`` (which loads as ``old``) changed so that it loads as ``new``; raises ``NotEditable``.

    Lists of mappings (``intake:``) are edited key by key inside their items when they kept their
    length; where that meets a shape it does not edit, the list is written whole instead."""
    items = _item_lists(old, new)
    if items:
        try:
            return _edit(text, old, new, items)
        except NotEditable:
            pass
    return _edit(text, old, new, set())


def _edit(text: str, old: dict[str, Any], new: dict[str, Any], items: set[Path_]) -> str:
    lines = text.splitlines()
    before = flatten(old, items=items)
    for path in changed_paths(old, new, items):
        value = _lookup(new, path)
        entries = _index(lines)
        if any(p[-1].startswith("#") for p in (path[:i] for i in range(1, len(path))) if p) and \
                _deepest(entries, path[:-1]) != path[:-1]:
            raise NotEditable(f"{'.'.join(path)}: its list item is not written as a block mapping")
        if path in entries:
            _replace(lines, entries[path], value, before.get(path))
        elif value is _MISSING:
            continue
        else:
            _insert(lines, entries, path, value)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------- reading the lines

def _index(lines: list[str]) -> dict[Path_, _Entry]:
    """Every ``key:`` line reachable through block mappings, with its block's extent; the items of
    a list of mappings written ``- key: value`` are entries too (``#0``, ``#1``, …) and so are
    their keys."""
    entries: dict[Path_, _Entry] = {}
    stack: list[_Entry] = []
    in_sequence: int | None = None  # indent of a ``- `` item whose lines are not indexed
    items_seen: dict[Path_, int] = {}
    for number, raw in enumerate(lines):
        line = raw.rstrip()
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith(("---", "...", "%", "&", "*", "!", "?", "{", "[")) and not stack:
            raise NotEditable(f"line {number + 1}: document markers and flow collections are not edited")
        indent = len(line) - len(stripped)
        dash = _DASH.match(line)
        while stack and (stack[-1].indent > indent or (stack[-1].indent == indent and (not dash or stack[-1].item))):
            stack.pop()
        if in_sequence is not None and (indent > in_sequence or (dash and indent == in_sequence)):
            for entry in stack:
                entry.end = number + 1
            continue
        in_sequence = None
        lead = " " * indent
        if dash:
            if not stack or stack[-1].inline:
                raise NotEditable(f"line {number + 1}: a list item outside a key")
            for entry in stack:
                entry.end = number + 1
            after = line[dash.end():]
            match = _KEY.match(" " * dash.end() + after) if after.strip() else None
            if match is None or stack[-1].item:
                in_sequence = indent  # a list of values (edited whole), or an item's shape not edited
                continue
            owner = stack[-1]
            count = items_seen[owner.path] = items_seen.get(owner.path, -1) + 1
            item = _Entry((*owner.path, f"#{count}"), number, indent, "", "", number + 1, item=True)
            entries[item.path] = item
            stack.append(item)
            indent = match.start("key")
            lead = line[:indent]
        else:
            match = _KEY.match(line)
        if match is None:
            if stack and stack[-1].inline == "" and indent > stack[-1].indent:
                raise NotEditable(f"line {number + 1} is not a `key: value` line")
            if stack:  # a continuation of a value: part of the block above
                for entry in stack:
                    entry.end = number + 1
                continue
            raise NotEditable(f"line {number + 1} is not a `key: value` line")
        value, comment = _split_comment(match.group("rest") or "")
        if value.startswith(("|", ">", "&", "*", "!")):
            raise NotEditable(f"line {number + 1}: block scalars, anchors and tags are not edited")
        parent: Path_ = stack[-1].path if stack else ()
        entry = _Entry((*parent, match.group("key")), number, indent, value, comment, number + 1, lead)
        if entry.path in entries:
            raise NotEditable(f"line {number + 1}: {'.'.join(entry.path)} is written twice")
        for outer in stack:
            outer.end = number + 1
        entries[entry.path] = entry
        stack.append(entry)
    return entries


def _split_comment(rest: str) -> tuple[str, str]:
    """``value   # comment`` → ("value", "   # comment"), quotes respected."""
    quote: str | None = None
    for i, ch in enumerate(rest):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or rest[i - 1] in " [,{:"):
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1] in " \t"):
            j = i
            while j > 0 and rest[j - 1] in " \t":
                j -= 1
            return rest[:j].rstrip(), rest[j:]
    return rest.rstrip(), ""


# ---------------------------------------------------------------------- writing values

_MISSING = object()


def _lookup(data: Any, path: Path_) -> Any:
    for key in path:
        if key.startswith("#") and isinstance(data, list):
            index = int(key[1:])
            if index >= len(data):
                return _MISSING
            data = data[index]
            continue
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _replace(lines: list[str], entry: _Entry, value: Any, before: Any) -> None:
    if value is _MISSING:  # the key went away: its whole block goes
        if entry.lead.strip():
            raise NotEditable(f"{'.'.join(entry.path)} starts its list item; the item is written whole")
        del lines[entry.line:entry.end]
        return
    pad = entry.lead or " " * entry.indent
    key = entry.path[-1]
    one_line = _is_scalar(value) or (isinstance(value, (list, dict)) and not value) or \
        (isinstance(value, list) and all(_is_scalar(v) for v in value) and entry.inline)
    if one_line:
        column = len(lines[entry.line].rstrip()) - len(entry.comment.lstrip())
        lines[entry.line:entry.end] = [_with_comment(f"{pad}{key}: {scalar(value, before)}", entry.comment, column)]
        return
    block = _block(key, value, entry.indent, entry.comment)
    block[0] = pad + block[0][entry.indent:]  # an item's first key keeps its ``- ``
    lines[entry.line:entry.end] = block


def _insert(lines: list[str], entries: dict[Path_, _Entry], path: Path_, value: Any) -> None:
    parent = path[:-1]
    key = path[-1]
    if parent and parent not in entries:
        # The section is missing: write it whole (its value is the new leaf, nested).
        nested: Any = value
        for part in reversed(path[len(_deepest(entries, parent)):][1:]):
            nested = {part: nested}
        top = path[:len(_deepest(entries, parent)) + 1]
        _insert(lines, entries, top, nested)
        return
    if parent:
        owner = entries[parent]
        if owner.inline:
            raise NotEditable(f"{'.'.join(parent)} is written on one line; its keys are not edited")
        children = [e for p, e in entries.items() if p[:-1] == parent]
        indent = children[0].indent if children else owner.indent + 2
        first, last = owner.line + 1, _section_end(lines, owner)
    else:
        indent, first, last = 0, 0, len(lines)
    new_lines = _block(key, value, indent, "") if not (_is_scalar(value) or not value) else \
        [f"{' ' * indent}{key}: {scalar(value, None)}"]
    placeholder = re.compile(rf"^ {{{indent}}}#\s?{re.escape(key)}:(?P<rest>.*)$")
    for number in range(first, last):
        match = placeholder.match(lines[number])
        if match:
            _, comment = _split_comment(match.group("rest"))
            if len(new_lines) == 1 and comment:
                column = len(lines[number].rstrip()) - len(comment.lstrip())
                new_lines[0] = _with_comment(new_lines[0], comment, column)
            lines[number:number + 1] = new_lines
            return
    at = entries[parent].end if parent else len(lines)
    if not parent:
        while at > 0 and not lines[at - 1].strip():
            at -= 1
        if at and lines[at - 1].strip():
            new_lines = ([""] if indent == 0 and not _is_scalar(value) else []) + new_lines
    lines[at:at] = new_lines


def _deepest(entries: dict[Path_, _Entry], path: Path_) -> Path_:
    while path and path not in entries:
        path = path[:-1]
    return path


def _section_end(lines: list[str], owner: _Entry) -> int:
    """Where the owner's section ends, its indented comment lines included (placeholders live there)."""
    number = owner.line + 1
    while number < len(lines):
        stripped = lines[number].lstrip(" ")
        if stripped and len(lines[number]) - len(stripped) <= owner.indent:
            break
        number += 1
    return number


def _with_comment(line: str, comment: str, column: int) -> str:
    """``line`` with the old comment, at its old column when the new value leaves room."""
    if not comment:
        return line
    return line + " " * max(2 if len(line) >= column else column - len(line), 1) + comment.lstrip()


class _IndentedDumper(yaml.SafeDumper):
    """Block lists indented under their key (``  - name: x``), as people write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _block(key: str, value: Any, indent: int, comment: str) -> list[str]:
    dumped = yaml.dump({key: _plain(value)}, Dumper=_IndentedDumper, sort_keys=False, allow_unicode=True,
                       default_flow_style=False, width=100, indent=2)
    out = [" " * indent + line for line in dumped.splitlines()]
    out[0] += comment
    return out


def scalar(value: Any, before: Any = None) -> str:
    """One value as YAML on one line; a whole float is written as an int unless the file had a float."""
    value = _plain(value, before)
    # Only YAML's own line breaks and spaces are stripped: str.strip() would also take a value's
    # trailing no-break space (U+00A0), which YAML keeps in a plain scalar.
    text = str(yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6)).strip(" \n")
    if text.endswith("\n..."):  # the document end PyYAML writes after a plain scalar, on its own line
        text = text[:-4].strip(" \n")
    if "\n" in text:
        raise NotEditable("a value spans several lines")
    return text


def _plain(value: Any, before: Any = None) -> Any:
    if isinstance(value, float) and value.is_integer() and not isinstance(before, float):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _under(path: Path_, other: Path_) -> bool:
    return len(other) < len(path) and path[:len(other)] == other


__all__ = ["NotEditable", "changed_paths", "edit_config_text", "flatten", "scalar"]
