"""The operation history a fault run records, one Op per client operation.

Times are ``time.monotonic()`` seconds taken by the client threads of one test process,
so every op's ``invoke``/``complete`` are on the same clock and comparable. An op whose
outcome is unknown (timeout, connection dropped after sending) records as ``complete``
the time the client gave up; the checker treats such an append as possibly taking
effect at any time after ``invoke``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Kind = Literal["append", "read"]
Outcome = Literal["ok", "fail", "unknown"]

KINDS: tuple[Kind, ...] = ("append", "read")
OUTCOMES: tuple[Outcome, ...] = ("ok", "fail", "unknown")


@dataclass
class Op:
    """One client operation.

    ``value``: the (unique) appended value, appends only. ``offset``: the offset an ok
    append returned. ``read_values``: an ok read's values from offset 0, in order.
    ``consistency``: reads only, "quorum" | "leader" | "any". ``node``: the node the
    client talked to. ``error``: a short description of a failure or unknown outcome.
    """

    process: int
    kind: Kind
    value: str | None
    invoke: float
    complete: float
    outcome: Outcome
    offset: int | None = None
    read_values: list[str] | None = None
    consistency: str | None = None
    node: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Op:
        if data.get("kind") not in KINDS:
            raise ValueError(f"bad op kind: {data.get('kind')!r}")
        if data.get("outcome") not in OUTCOMES:
            raise ValueError(f"bad op outcome: {data.get('outcome')!r}")
        read_values = data.get("read_values")
        return cls(
            process=int(data["process"]),
            kind=data["kind"],
            value=data.get("value"),
            invoke=float(data["invoke"]),
            complete=float(data["complete"]),
            outcome=data["outcome"],
            offset=None if data.get("offset") is None else int(data["offset"]),
            read_values=None if read_values is None else list(read_values),
            consistency=data.get("consistency"),
            node=data.get("node"),
            error=data.get("error"),
        )


class History:
    """A thread-safe, append-only list of Ops (``ops``), in the order they were added."""

    def __init__(self, ops: list[Op] | None = None) -> None:
        self._lock = threading.Lock()
        self.ops: list[Op] = list(ops) if ops is not None else []

    def add(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def snapshot(self) -> list[Op]:
        """A copy of the ops recorded so far (safe while workers are still adding)."""
        with self._lock:
            return list(self.ops)

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[Op]:
        return iter(self.snapshot())

    def to_jsonl(self, path: str | Path) -> None:
        """Write one JSON object per line (the Op's fields)."""
        lines = [json.dumps(op.to_dict(), separators=(",", ":")) for op in self.snapshot()]
        Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    @classmethod
    def from_jsonl(cls, path: str | Path) -> History:
        ops: list[Op] = []
        text = Path(path).read_text(encoding="utf-8")
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                ops.append(Op.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{lineno}: bad op line: {exc}") from exc
        return cls(ops)

    def summary(self) -> dict[str, Any]:
        """Counts per kind and outcome.

        ``{"total": N, "append": {"ok": a, "fail": b, "unknown": c, "total": a+b+c},
        "read": {...}}``; every kind and outcome is present, zero if absent.
        """
        counts: dict[str, Any] = {"total": 0}
        for kind in KINDS:
            counts[kind] = {**dict.fromkeys(OUTCOMES, 0), "total": 0}
        for op in self.snapshot():
            counts["total"] += 1
            per_kind = counts[op.kind]
            per_kind[op.outcome] += 1
            per_kind["total"] += 1
        return counts
