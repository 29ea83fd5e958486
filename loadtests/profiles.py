"""Named sets of user classes (``run.py --profile``), without importing Locust.

Each profile lists class names of ``loadtests.users``; Locust picks users among them by
each class's ``weight``. The weights of ``mixed`` add up to 8, so 8 users get one of each
class and a second ``quorum`` writer.
"""

from __future__ import annotations

WRITERS = ("WriterAckLeader", "WriterAckQuorum", "WriterAckAll")
READERS = ("ReaderLeader", "ReaderQuorum", "ReaderAny")
TAILS = ("TailFollower",)

PROFILES: dict[str, tuple[str, ...]] = {
    "mixed": (*WRITERS, *READERS, *TAILS),
    "writers": WRITERS,
    # Readers and tails need something to read: one quorum writer class comes along.
    "readers": ("WriterAckQuorum", *READERS),
    "tail": ("WriterAckQuorum", *TAILS),
    "ack-leader": ("WriterAckLeader",),
    "ack-quorum": ("WriterAckQuorum",),
    "ack-all": ("WriterAckAll",),
}

__all__ = ["PROFILES", "READERS", "TAILS", "WRITERS"]
