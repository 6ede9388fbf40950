"""One ledger per stream entry the worker has fetched and not settled: its delivery, the
message decoded once at fetch, and what the worker knows of it beyond Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..errors import MalformedMessage
from ..queue import wire
from ..queue.broker import Delivery


@dataclass(eq=False)
class Ledger:
    """An entry's latest delivery and its message (or why it has none: malformed)."""

    delivery: Delivery
    message: dict[str, Any] | None = None
    malformed: MalformedMessage | None = None
    held: bool = False  # fetched and not settled nor let go: heartbeats keep it fresh
    alone: bool = False  # fetched to run alone (a suspect), not settled
    outage_deliveries: int = 0  # of its deliveries, those an outage cut short (this process)

    def __post_init__(self) -> None:
        self.decode()

    def decode(self) -> None:
        try:
            self.message, self.malformed = wire.decode_message(self.delivery.fields), None
        except MalformedMessage as exc:
            self.message, self.malformed = None, exc

    @property
    def entry_id(self) -> str:
        return self.delivery.entry_id

    @property
    def task_id(self) -> str | None:
        return None if self.message is None else self.message["id"]

    @property
    def task_type(self) -> str:
        return "" if self.message is None else self.message.get("task_type") or ""

    def outage_count(self) -> int:
        """How many of the entry's deliveries an outage cut short, as far as we know."""
        return max(self.delivery.outage_deliveries, self.outage_deliveries)

    def deliveries(self) -> int:
        """The entry's deliveries that count against max_deliveries (not an outage's)."""
        return self.delivery.deliveries - self.outage_count()


class Ledgers:
    """The worker's ledgers by entry id. A ledger lives from its entry's fetch until it
    settles, and past a let-go while the worker still has something to remember of the
    entry: deliveries an outage cut short, or that it is to run alone."""

    def __init__(self) -> None:
        self._by_entry: dict[str, Ledger] = {}
        self._in_read: tuple[Ledger, ...] = ()  # replaced whole: read by another thread

    @property
    def held(self) -> dict[str, Delivery]:
        """The held entries' deliveries, by entry id."""
        return {e: ledger.delivery for e, ledger in self._by_entry.items() if ledger.held}

    def held_ledgers(self) -> list[Ledger]:
        """The held ledgers, and those being looked up in the read's hop (see :meth:`reading`)."""
        return [ledger for ledger in self._by_entry.values() if ledger.held] + list(self._in_read)

    @contextmanager
    def reading(self, ledgers: list[Ledger]) -> Iterator[None]:
        """In the read's thread: while the tasks of *ledgers*, just read and not held yet,
        are looked up and begun there, the heartbeats keep their entries fresh and name
        their tasks as held ones' (a look-up can last as long as the database's timeouts;
        reclaim_idle may be shorter)."""
        self._in_read = tuple(ledgers)
        try:
            yield
        finally:
            self._in_read = ()

    def any_alone(self) -> bool:
        return any(ledger.alone for ledger in self._by_entry.values())

    def is_held(self, entry_id: str) -> bool:
        ledger = self._by_entry.get(entry_id)
        return ledger is not None and ledger.held

    def of(self, delivery: Delivery, made: Ledger | None = None) -> Ledger:
        """The ledger of *delivery*: its entry's, else *made* (a ledger made for this very
        delivery, its message decoded already), else a new one: its message decoded."""
        ledger = self._by_entry.get(delivery.entry_id)
        if ledger is None:
            return made if made is not None and made.delivery is delivery else Ledger(delivery)
        if ledger.delivery is not delivery:
            ledger.delivery = delivery
            ledger.decode()
        return ledger

    @contextmanager
    def holding(
        self, batch: list[Delivery], made: dict[str, Ledger] | None = None
    ) -> Iterator[list[Ledger]]:
        """Hold *batch* from its fetch until it settles: the heartbeats keep held entries
        fresh and name their tasks. A delivery can wait a long time for its slots (one
        to run alone waits for every running task to finish); without that, another
        worker would take its entry over meanwhile, and both would run it. A wait cut
        short (a stop) lets go of the batch, which is delivered again. *made*: ledgers
        the fetch made for some of them, by entry id (see :meth:`of`)."""
        made = made or {}
        ledgers = [self.of(delivery, made.get(delivery.entry_id)) for delivery in batch]
        for ledger in ledgers:
            ledger.held = True
            self._by_entry[ledger.entry_id] = ledger
        try:
            yield ledgers
        except BaseException:
            for ledger in ledgers:
                self.let_go(ledger)
            raise

    def let_go(self, ledger: Ledger) -> None:
        """No longer held (settled, or left pending)."""
        ledger.held = False
        if not (ledger.alone or ledger.outage_deliveries):
            self._by_entry.pop(ledger.entry_id, None)

    def forget(self, ledger: Ledger) -> None:
        """Settled: the entry is not left pending."""
        ledger.alone = False
        ledger.outage_deliveries = 0
        if not ledger.held:
            self._by_entry.pop(ledger.entry_id, None)

    def note_outage(self, ledger: Ledger) -> None:
        """The delivery met an outage: its next delivery is not the task's."""
        ledger.outage_deliveries = ledger.outage_count() + 1
        self._by_entry[ledger.entry_id] = ledger
