"""Stream entries as the broker hands them out: the Delivery, and Redis's replies read
into deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import wire

# XREADGROUP of each stream in priority order for what is still wanted, in one round
# trip (EVAL, not EVALSHA: the ACL of ragfleet's Redis user allows EVAL only).
READ_IN_ORDER = """
local want = tonumber(ARGV[3])
local out = {}
for _, key in ipairs(KEYS) do
  if want <= 0 then break end
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want,
                           'STREAMS', key, '>')
  if reply then
    want = want - #reply[1][2]
    table.insert(out, reply[1])
  end
end
return out
"""


@dataclass(frozen=True)
class Delivery:
    """One stream entry handed to this consumer."""

    queue: str
    entry_id: str
    fields: dict[bytes, bytes] | None
    deliveries: int = 1
    outage_deliveries: int = 0  # of those, cut short by an outage (see note_outage)

    @property
    def key(self) -> str:
        """The entry's field in wire.OUTAGE_DELIVERIES."""
        return f"{self.queue} {self.entry_id}"

    @property
    def priority(self) -> int:
        suffix = self.queue.removeprefix(wire.QUEUE)
        return int(suffix[1:]) if suffix else 0


def deliveries_of(reply: Any, deliveries: int) -> list[Delivery]:
    out = []
    for stream, entries in reply or []:
        for entry_id, fields in entries:
            out.append(Delivery(text(stream), text(entry_id), fields or None, deliveries))
    return out


def as_read_reply(reply: Any) -> list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]:
    """A script's XREADGROUP replies as redis-py gives XREADGROUP's own: a script returns
    each entry's fields as a flat list of names and values."""
    return [
        (
            stream,
            [
                (entry_id, dict(zip(flat[::2], flat[1::2], strict=True)) if flat else None)
                for entry_id, flat in entries
            ],
        )
        for stream, entries in reply or []
    ]


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
