"""Fault injection through the worker's seams: a store or broker handed to it that behaves
like the real one except for the methods a test names."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


class Faulty:
    """Wraps *target*; a call to a method named in *faults* goes to the fault, which gets
    the real method as its first argument (to fail, count, or pass the call on)."""

    def __init__(self, target: Any, **faults: Callable[..., Any]) -> None:
        self._target = target
        self._faults = faults

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._target, name)
        fault = self._faults.get(name)
        return real if fault is None else functools.partial(fault, real)
