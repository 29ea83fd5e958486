"""The readers/exclusive gate over one LMDB environment (see ``Gate``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Gate"]


class Gate:
    """Readers/exclusive gate over one LMDB environment.

    Shared holders are threads with a live LMDB transaction (reads, the apply write
    txn, an open snapshot source). Exclusive holders need no transaction alive in the
    process: map growth (``set_mapsize``), restore, close. Once an exclusive request is
    pending, new shared requests wait, so a stream of readers cannot starve it.

    Not reentrant: a thread holding a shared slot must not ask for another one, nor for
    the exclusive one (it would deadlock); it may ``upgrade`` its slot instead.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._pending_exclusive = 0

    def acquire_shared(self) -> None:
        """Blocks while an exclusive holder runs or is pending."""
        with self._cond:
            while self._exclusive or self._pending_exclusive:
                self._cond.wait()
            self._shared += 1

    def release_shared(self) -> None:
        with self._cond:
            self._shared -= 1
            if self._shared <= 1:  # 0 frees acquire_exclusive, 1 an upgrade
                self._cond.notify_all()

    def acquire_exclusive(self) -> None:
        """Blocks until every shared slot is released and no other exclusive holder runs."""
        with self._cond:
            self._pending_exclusive += 1
            acquired = False
            try:
                while self._exclusive or self._shared:
                    self._cond.wait()
                self._exclusive = acquired = True
            finally:
                self._pending_exclusive -= 1
                if not acquired:  # interrupted: readers blocked on our request may go
                    self._cond.notify_all()

    def upgrade(self) -> None:
        """Turn the caller's shared slot into the exclusive hold (release_exclusive ends it).

        Waits for every other shared holder to leave; new shared requests wait. Only one
        thread may upgrade at a time (the apply thread): two would wait for each other.
        """
        with self._cond:
            self._pending_exclusive += 1
            upgraded = False
            try:
                while self._exclusive or self._shared > 1:
                    self._cond.wait()
                self._shared -= 1
                self._exclusive = upgraded = True
            finally:
                self._pending_exclusive -= 1
                if not upgraded:  # interrupted: we still hold our shared slot
                    self._cond.notify_all()

    def release_exclusive(self) -> None:
        with self._cond:
            self._exclusive = False
            self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        self.acquire_shared()
        try:
            yield
        finally:
            self.release_shared()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        self.acquire_exclusive()
        try:
            yield
        finally:
            self.release_exclusive()
