"""The step-load shape: a ``LoadTestShape`` following ``loadtests.steps.StepPlan``.

Locust runs a shape whenever the locustfile holds a non-abstract one, ignoring ``-u``,
``-r`` and ``-t``; so this class is abstract (invisible to Locust) unless
``RAFTLOG_LOAD_SHAPE=step`` is set when the locustfile is loaded.
"""

from __future__ import annotations

import os

from locust import LoadTestShape

from loadtests.steps import SHAPE_ENV, StepPlan

__all__ = ["StepLoadShape"]


class StepLoadShape(LoadTestShape):
    abstract = os.environ.get(SHAPE_ENV, "") != "step"

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.plan = StepPlan.from_environ()

    def tick(self) -> tuple[int, float] | None:
        return self.plan.target(self.get_run_time())  # type: ignore[no-untyped-call]
