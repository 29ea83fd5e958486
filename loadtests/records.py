"""The record of every append a load run sent: written by the Locust process, read by
``run.py``'s presence check.

Each Locust process appends JSON lines to its own file ``ops-<pid>.jsonl`` in the record
directory: an ``invoke`` line *before* the request is sent, a ``done`` line once its
outcome is known. An append with no ``done`` line (the run stopped while it was in
flight, or the process died) has an unknown outcome: it may or may not be in the log.
A torn last line (a process killed mid-write) is skipped.

Times are ``time.monotonic()`` of the writing process; they order the ops of one run
(every file of a run comes from one machine).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

__all__ = ["AppendRecord", "OpRecorder", "load_records"]

Outcome = Literal["ok", "fail", "unknown"]


@dataclass
class AppendRecord:
    """One append. ``value``: its unique id (the ``w`` field of the entry's value);
    ``ack``: the ack level it asked for; ``user``: the sending user's number."""

    value: str
    log: str
    node: str
    ack: str
    user: int
    invoke: float
    complete: float
    outcome: Outcome = "unknown"
    offset: int | None = None
    error: str | None = None
    finished: bool = False


class OpRecorder:
    """Appends the lines of one process. Safe from any greenlet or thread (one lock);
    each call writes and flushes one line, so a crash loses at most a line in flight."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.path = path / f"ops-{os.getpid()}.jsonl"
        self._lock = threading.Lock()
        self._file: IO[str] | None = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def _write(self, line: dict[str, Any]) -> None:
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self._lock:
            if self._file is not None:
                self._file.write(text)
                self._file.flush()

    def invoke(self, value: str, log: str, node: str, ack: str, user: int, t: float) -> None:
        """Call before sending the append."""
        self._write(
            {"e": "invoke", "v": value, "log": log, "node": node, "ack": ack, "user": user, "t": t}
        )

    def done(
        self, value: str, outcome: Outcome, t: float, offset: int | None, error: str | None
    ) -> None:
        """Call once the outcome is known (``unknown`` included)."""
        self._write({"e": "done", "v": value, "o": outcome, "t": t, "off": offset, "err": error})

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def _parse(line: str) -> dict[str, Any] | None:
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and obj.get("e") in ("invoke", "done") else None


def load_records(directory: str | os.PathLike[str]) -> list[AppendRecord]:
    """Every append recorded in ``directory``, in invoke order. An invoke without a done
    line stays ``unknown`` (``complete`` = its invoke time)."""
    records: dict[str, AppendRecord] = {}
    for path in sorted(Path(directory).glob("ops-*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            obj = _parse(line)
            if obj is None:
                continue
            value = str(obj["v"])
            if obj["e"] == "invoke":
                t = float(obj["t"])
                records[value] = AppendRecord(
                    value,
                    str(obj["log"]),
                    str(obj["node"]),
                    str(obj["ack"]),
                    int(obj["user"]),
                    t,
                    t,
                )
            elif value in records:
                rec = records[value]
                rec.outcome = obj["o"] if obj["o"] in ("ok", "fail", "unknown") else "unknown"
                rec.complete = float(obj["t"])
                rec.offset = None if obj.get("off") is None else int(obj["off"])
                rec.error = obj.get("err")
                rec.finished = True
    return sorted(records.values(), key=lambda r: r.invoke)
