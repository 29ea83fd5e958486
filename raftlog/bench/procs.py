"""Every child process of a benchmark run, so that all of them can be stopped.

Contract: ``Spawner.spawn`` starts a process in a new session (its own process group:
a Ctrl-C in the terminal reaches the benchmark only) and records it before returning,
so no started process can escape ``stop_all``. ``stop_all`` sends SIGTERM to the
group of every recorded process still running, waits up to ``grace_s``, then SIGKILLs
what is left, and reaps them all; it never signals anything it did not start. Called
from the main thread only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

__all__ = ["Spawner"]


class Spawner:
    """Starts child processes and remembers each one (PIDs kept for the report)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []
        self.pids: list[int] = []
        # While > 0 a signal handler must not raise (see runner): it records the signal
        # in ``pending`` and ``spawn`` re-raises it through ``on_pending`` once the new
        # process is recorded, so none escapes ``stop_all``.
        self.deferring = 0
        self.pending: int | None = None
        self.on_pending: Callable[[int], None] | None = None

    def spawn(
        self,
        argv: Sequence[str],
        *,
        log_path: Path | None = None,
        capture: bool = False,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv``; its output goes to ``log_path`` (appended), or to a pipe with
        ``capture`` (the caller reads it), else is discarded."""
        out: IO[bytes] | int
        opened: IO[bytes] | None = None
        if capture:
            out = subprocess.PIPE
        elif log_path is not None:
            opened = open(log_path, "ab")  # noqa: SIM115 - closed below, the child keeps it
            out = opened
        else:
            out = subprocess.DEVNULL
        self.deferring += 1
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=out,
                stderr=subprocess.STDOUT if not capture else subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
            self._procs.append(proc)
            self.pids.append(proc.pid)
        finally:
            self.deferring -= 1
            if opened is not None:
                opened.close()
        if self.pending is not None and self.on_pending is not None:
            signum, self.pending = self.pending, None
            self.on_pending(signum)
        return proc

    @staticmethod
    def signal(proc: subprocess.Popen[bytes], sig: int) -> None:
        """Send ``sig`` to the process group of ``proc`` if it is still running."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)

    def kill9(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the group of ``proc`` and reap it."""
        self.signal(proc, signal.SIGKILL)
        proc.wait()

    def stop_all(self, grace_s: float = 10.0) -> None:
        """SIGTERM every running child, SIGKILL after ``grace_s``; returns with none left."""
        running = [p for p in self._procs if p.poll() is None]
        for proc in running:
            self.signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self._procs:
            self.kill9(proc)
            # a group may hold grandchildren; its leader's SIGKILL above reached them too
