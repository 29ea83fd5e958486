"""The step-load plan (pure; no Locust): users added in equal steps over time.

Configured by environment variables, so that the plan is the same in ``run.py`` and in a
hand-started ``locust`` process:

* ``RAFTLOG_LOAD_SHAPE=step`` turns the step shape on (``loadtests.shapes``);
* ``RAFTLOG_STEP_USERS`` users added per step (default 4);
* ``RAFTLOG_STEP_SECONDS`` seconds per step (default 10);
* ``RAFTLOG_STEP_MAX_USERS`` the ceiling (default 32);
* ``RAFTLOG_STEP_TIME_S`` the whole run, after which the shape stops it (default 60).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["SHAPE_ENV", "StepPlan"]

SHAPE_ENV = "RAFTLOG_LOAD_SHAPE"


@dataclass(frozen=True)
class StepPlan:
    step_users: int = 4
    step_seconds: float = 10.0
    max_users: int = 32
    total_seconds: float = 60.0

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> StepPlan:
        default = cls()

        def number(name: str, fallback: float) -> float:
            text = environ.get(name, "")
            value = float(text) if text else fallback
            if value <= 0:
                raise ValueError(f"{name} must be positive (got {text!r})")
            return value

        return cls(
            step_users=int(number("RAFTLOG_STEP_USERS", default.step_users)),
            step_seconds=number("RAFTLOG_STEP_SECONDS", default.step_seconds),
            max_users=int(number("RAFTLOG_STEP_MAX_USERS", default.max_users)),
            total_seconds=number("RAFTLOG_STEP_TIME_S", default.total_seconds),
        )

    def target(self, run_time: float) -> tuple[int, float] | None:
        """(users, spawn rate) at ``run_time`` seconds into the run; None once it is over.
        Step k (from 0) runs (k + 1) * step_users users, capped at max_users; each step's
        users are spawned within its first second."""
        if run_time >= self.total_seconds:
            return None
        step = int(run_time // self.step_seconds)
        return min(self.max_users, (step + 1) * self.step_users), float(self.step_users)
