"""What is left to do of one delivery when its settle starts: the continuation a group
hands over to a settle of its own (see Settler.settle, which runs one by its kind)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..progress import Progress
from .running import Finished, LookedUp


@dataclass(frozen=True)
class Process:
    """From the start: look the task up (unless *looked_up* by its batch), then run it."""

    looked_up: LookedUp | None = None


@dataclass(frozen=True)
class RunAlone:
    """Run the begun *task* by its type's handler (its group handler gave it back)."""

    task: dict[str, Any]


@dataclass(frozen=True)
class Fail:
    """Record the task failed with *error*."""

    progress: Progress
    error: Exception


@dataclass(frozen=True)
class EndCancelled:
    """Record the task cancelled (its flag came while its group ran)."""

    progress: Progress


@dataclass(frozen=True)
class FinishAlone:
    """Record the task done on its own (recording its group done together failed)."""

    finished: Finished


@dataclass(frozen=True)
class MeetError:
    """Meet the error (an outage) the delivery's group met, as if it were its own."""

    error: Exception


Step = Process | RunAlone | Fail | EndCancelled | FinishAlone | MeetError
