"""
64-bit, time-ordered ids that carry their logical shard.

Layout, high bit first: 1 zero bit, 41 bits of milliseconds since ``EPOCH_MS``, 13 bits of
logical shard, 10 bits of a per-shard sequence. Each shard's ``next_id()`` SQL function
(see ``comments.db.migrations``) builds ids this way on the shard itself, so nodes never
coordinate, and ``shard_of`` routes any id without a lookup.
"""

from __future__ import annotations

__all__ = [
    "EPOCH_MS", "SEQUENCE_BITS", "SHARD_BITS", "InvalidId", "compose_id", "parse_id", "shard_of", "timestamp_ms_of",
]

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z; 41 bits of milliseconds last until 2093
SHARD_BITS = 13
SEQUENCE_BITS = 10
_MAX_ID = (1 << 63) - 1


class InvalidId(ValueError):
    """A string is not a valid thread or post id."""


def parse_id(text: str) -> int:
    """Parse an id from its decimal string form, raising InvalidId for anything else."""
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 19:
        raise InvalidId(f"{text!r} is not an id; ids are decimal strings such as \"7391042816000001024\"")
    value = int(text)
    if value == 0:
        raise InvalidId(f"{text!r} is not an id; ids are positive")
    if value > _MAX_ID:
        raise InvalidId(f"{text!r} is out of the 64-bit id range")
    return value


def shard_of(item_id: int) -> int:
    """Return the logical shard number carried by ``item_id``."""
    return (item_id >> SEQUENCE_BITS) & ((1 << SHARD_BITS) - 1)


def timestamp_ms_of(item_id: int) -> int:
    """Return the Unix time in milliseconds at which ``item_id`` was generated."""
    return (item_id >> (SHARD_BITS + SEQUENCE_BITS)) + EPOCH_MS


def compose_id(*, timestamp_ms: int, shard: int, sequence: int) -> int:
    """Build an id from its parts; the SQL ``next_id()`` function does the same on the shard."""
    return (
        ((timestamp_ms - EPOCH_MS) << (SHARD_BITS + SEQUENCE_BITS))
        | (shard << SEQUENCE_BITS)
        | (sequence % (1 << SEQUENCE_BITS))
    )
