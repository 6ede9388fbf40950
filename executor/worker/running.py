"""What the worker's components share of its tasks: those running, and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import trio

from ..queue.broker import Delivery

LookedUp = tuple[dict[str, Any] | None, bool]
"""A task's row (None if the database has none) and whether its cancel flag is set."""


@dataclass
class Running:
    """A task being handled: its stream entry, its row, and the scope that cancels it."""

    delivery: Delivery
    task: dict[str, Any]
    started: float  # monotonic
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    cancel_requested: bool = False


@dataclass
class Counters:
    done: int = 0
    failed: int = 0


@dataclass
class Finished:
    """A task its handler has finished, to be recorded done (see Outcomes.finish)."""

    delivery: Delivery
    task: dict[str, Any]
    fields: dict[str, Any]
    progress_msg: str
