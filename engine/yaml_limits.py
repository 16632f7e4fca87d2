"""Bounds on YAML a person or a site hands us, checked before PyYAML builds anything.

PyYAML composes nested nodes recursively and expands aliases in full: a file nested 100,000
levels deep hits RecursionError (the config watcher crashed on one), and a "billion laughs" file
of aliases takes minutes or all memory. A station config or a lifecycle is small and shallow, so
the text is walked once as a stream of events (iteratively, cheaply) and refused when it is too
large, too deep, has too many nodes or aliases — or, for a lifecycle, any anchor at all.

One implementation serves every caller: each passes its own :class:`YamlBounds` and turns the
:class:`YamlTooComplex` it may get (which bound, at which line, the limit) into its own words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import yaml

__all__ = ["CONFIG_BOUNDS", "MAX_ALIASES", "MAX_BYTES", "MAX_DEPTH", "MAX_EVENTS", "YamlBounds",
           "YamlTooComplex", "check_yaml_limits"]

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64
MAX_ALIASES = 100
MAX_EVENTS = 200_000

#: libyaml's parser when PyYAML has it (wheels for Linux and Windows do): ~100x faster events.
_EVENT_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
#: Quoted scalars and comments, whose brackets are text, not structure.
_NOT_STRUCTURE = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\n]|\'\')*\'|(?:^|(?<=\s))#[^\n]*', re.M)
_BRACKET = re.compile(r"[\[\]{}]")
_NODE_EVENTS = (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent, yaml.AliasEvent)

Bound = Literal["bytes", "depth", "nodes", "aliases", "anchors"]


@dataclass(frozen=True)
class YamlBounds:
    """What one kind of file may be: bytes, nesting, nodes (scalars, sequences, mappings, aliases)
    and aliases; ``anchors=False`` refuses every ``&name``/``*name`` (a lifecycle never needs them)."""

    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_nodes: int = MAX_EVENTS
    max_aliases: int = MAX_ALIASES
    anchors: bool = True


CONFIG_BOUNDS = YamlBounds()


class YamlTooComplex(ValueError):
    """The text breaks one of the bounds: ``bound`` says which, ``line`` where (1-based, when
    known), ``limit`` the bound and ``found`` the size (bytes) when it is the size; the message is
    the config's wording."""

    def __init__(self, message: str, *, bound: Bound, limit: int, line: int | None = None,
                 found: int = 0) -> None:
        super().__init__(message)
        self.bound: Bound = bound
        self.limit = limit
        self.line = line
        self.found = found


def _flow_depth(text: str, limit: int) -> int | None:
    """The line where flow brackets first nest deeper than ``limit`` (None when they do not), found
    with regular expressions only (no recursion, no per-character Python loop): PyYAML's scanner
    keeps a possible simple key per open flow level and walks them all for every character, so
    30,000 brackets cost it seconds before any depth check on its events could run."""
    depth = 0
    cleaned = _NOT_STRUCTURE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)  # lines kept
    for match in _BRACKET.finditer(cleaned):
        if match.group() in "[{":
            depth += 1
            if depth > limit:
                return cleaned.count("\n", 0, match.start()) + 1
        else:
            depth = max(0, depth - 1)
    return None


def _line(event: yaml.Event) -> int | None:
    return event.start_mark.line + 1 if event.start_mark else None


def check_yaml_limits(text: str, bounds: YamlBounds = CONFIG_BOUNDS) -> None:
    """Raise ``YamlTooComplex`` when ``text`` is larger, deeper, bigger or more aliased than a real
    file of ours could be. Syntax errors are left for the real parse to report (with their line)."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > bounds.max_bytes:
        raise YamlTooComplex(f"the file is {size} bytes; at most {bounds.max_bytes} are read",
                             bound="bytes", limit=bounds.max_bytes, found=size)
    deep_at = _flow_depth(text, bounds.max_depth)
    if deep_at is not None:
        raise YamlTooComplex(f"brackets nested more than {bounds.max_depth} levels deep", bound="depth",
                             limit=bounds.max_depth, line=deep_at)
    depth = aliases = nodes = 0
    try:
        for event in yaml.parse(text, Loader=_EVENT_LOADER):
            if not isinstance(event, _NODE_EVENTS):
                if isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                    depth -= 1
                continue
            nodes += 1
            if nodes > bounds.max_nodes:
                raise YamlTooComplex(f"the file has more than {bounds.max_nodes} YAML nodes", bound="nodes",
                                     limit=bounds.max_nodes, line=_line(event))
            if not bounds.anchors and (isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None)):
                raise YamlTooComplex("anchors and aliases (&name / *name) are not allowed", bound="anchors",
                                     limit=0, line=_line(event))
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > bounds.max_depth:
                    line = _line(event)
                    raise YamlTooComplex(f"line {line or '?'}: nested more than {bounds.max_depth} levels deep",
                                         bound="depth", limit=bounds.max_depth, line=line)
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > bounds.max_aliases:
                    raise YamlTooComplex(f"the file uses more than {bounds.max_aliases} aliases (*name)",
                                         bound="aliases", limit=bounds.max_aliases, line=_line(event))
    except yaml.YAMLError:
        return  # the real parse reports it, with its line and column
    except RecursionError:
        raise YamlTooComplex(f"nested more than {bounds.max_depth} levels deep", bound="depth",
                             limit=bounds.max_depth) from None
