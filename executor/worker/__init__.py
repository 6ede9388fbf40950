"""The executor's worker (see docs/architecture.md, the worker): :class:`Worker` runs one
executor process; the other modules are its components, one role each."""

from ..errors import TaskNotInDatabase, is_outage
from .clock import SYSTEM_CLOCK, Clock
from .fetch import IDLE_BLOCK_MS
from .health import SET_ASIDE_STREAK
from .heartbeat import CANCEL_POLL_SECONDS
from .listen import metrics_port
from .slots import GATHER_SECONDS
from .worker import Worker

__all__ = [
    "CANCEL_POLL_SECONDS",
    "GATHER_SECONDS",
    "IDLE_BLOCK_MS",
    "SET_ASIDE_STREAK",
    "SYSTEM_CLOCK",
    "Clock",
    "TaskNotInDatabase",
    "Worker",
    "is_outage",
    "metrics_port",
]
