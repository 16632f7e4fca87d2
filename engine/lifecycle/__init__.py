"""Lifecycles as data: load a ``machines/*.yaml`` file, prove it loses nothing, build a machine.

A site may edit or override a lifecycle (add a hold-for-approval state, say). What keeps such an
edit from losing reports is the checker: the structural invariants (``invariants.py``: every
state reachable, no dead ends, actions and waits only by name from the engine's registry — never a
dotted import path, which ``transitions`` would import and run — a state that sends data entered
only from durable states, a timeout on every working state, every transition fired by something)
and the no-loss model check (``model.py``: under every sequence of outcomes, timeouts, crashes and
lost acknowledgements a report reaches a final state only through an acknowledged upload, and is
never stranded). ``load.py`` reads the file as hostile input; ``machine.py`` builds the
``transitions.Machine``; ``site.py`` finds the machines in force at a station (a site folder over
the shipped files); ``roles.py`` finds the conversion machine's steps for the intake.
"""

from __future__ import annotations

from .invariants import Violation
from .load import MAX_BYTES, MAX_DEPTH, MAX_NODES, Source, load_definition, resolve, shipped_names
from .machine import Lifecycle, check_invariants, load_lifecycle, violations
from .registry import DEFAULT_REGISTRY, ActionSpec, MachineRules, Registry
from .site import folder_problems, in_force, restart_note, site_lifecycle

__all__ = [
    "DEFAULT_REGISTRY",
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "ActionSpec",
    "Lifecycle",
    "MachineRules",
    "Registry",
    "Source",
    "Violation",
    "check_invariants",
    "folder_problems",
    "in_force",
    "load_definition",
    "load_lifecycle",
    "resolve",
    "restart_note",
    "shipped_names",
    "site_lifecycle",
    "violations",
]
