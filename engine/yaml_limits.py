"""Bounds on YAML a person or a site hands us, checked before PyYAML builds anything.

PyYAML composes nested nodes recursively and expands aliases in full: a file nested 100,000
levels deep hits RecursionError (the config watcher crashed on one), and a "billion laughs" file
of aliases takes minutes or all memory. A station config or a lifecycle is small and shallow, so
the text is walked once as a stream of events (iteratively, cheaply) and refused with one line
when it is too large, too deep or uses too many aliases.
"""

from __future__ import annotations

import re

import yaml

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_EVENTS = 200_000


#: libyaml's parser when PyYAML has it (wheels for Linux and Windows do): ~100x faster events.
_EVENT_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Quoted scalars and comments, whose brackets are text, not structure.
_NOT_STRUCTURE = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'|(?:^|(?<=\s))#[^\n]*', re.M)
_BRACKET = re.compile(r"[\[\]{}]")


def _flow_depth(text: str) -> int:
    """The deepest nesting of flow brackets, found with regular expressions only (no recursion,
    no per-character Python loop over the rest): PyYAML's pure-Python scanner needs about a second
    just to start on 100,000 nested brackets."""
    depth = deepest = 0
    for match in _BRACKET.finditer(_NOT_STRUCTURE.sub("", text)):
        if match.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


class YamlTooComplex(ValueError):
    """The text breaks one of the bounds; the message says which and by how much."""


def check_yaml_limits(text: str, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH,
                      max_aliases: int = MAX_ALIASES, max_events: int = MAX_EVENTS) -> None:
    """Raise ``YamlTooComplex`` when ``text`` is larger, deeper or more aliased than a real file
    of ours could be. Syntax errors are left for the real parse to report (with their line)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise YamlTooComplex(f"the file is {size} bytes; at most {max_bytes} are read")
    flow = _flow_depth(text)
    if flow > max_depth:
        raise YamlTooComplex(f"brackets nested more than {max_depth} levels deep")
    depth = aliases = events = 0
    try:
        for event in yaml.parse(text, Loader=_EVENT_LOADER):
            events += 1
            if events > max_events:
                raise YamlTooComplex(f"the file has more than {max_events} YAML nodes")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > max_depth:
                    line = event.start_mark.line + 1 if event.start_mark else "?"
                    raise YamlTooComplex(f"line {line}: nested more than {max_depth} levels deep")
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > max_aliases:
                    raise YamlTooComplex(f"the file uses more than {max_aliases} aliases (*name)")
    except yaml.YAMLError:
        return  # the real parse reports it, with its line and column
    except RecursionError:
        raise YamlTooComplex(f"nested more than {max_depth} levels deep") from None
