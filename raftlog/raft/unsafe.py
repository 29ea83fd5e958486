"""UNSAFE switches of the Raft layer, for the fault suite's negative controls only.

Each one turns a safety rule back into the old, wrong behaviour, so a test can show that
the fault suite notices the loss the rule prevents. ``raftlog serve`` sets them from
``RAFTLOG_UNSAFE_*`` environment variables and logs a warning; nothing else sets them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UnsafeSwitches"]


@dataclass(frozen=True)
class UnsafeSwitches:
    # RAFTLOG_UNSAFE_TORN_TAIL_ANY: the journal cuts at its first bad record, whatever
    # follows and whatever raft.meta vouched for.
    torn_tail_any: bool = False
    # RAFTLOG_UNSAFE_VOTE_WITH_EMPTY_DATA: a node starting on an empty data dir votes at
    # once, as if it could never have lost a log it had vouched for.
    vote_with_empty_data: bool = False
