"""Locust users for raftlog: writers at each ``ack``, readers at each ``consistency``,
tail followers. Loaded by ``locustfile.py``; importing this module imports Locust (and
so gevent's monkey-patching).

Every user runs in a Locust greenlet, in a closed loop (no think time), and sends each
request to a node picked at random from ``--raftlog-url`` (any node serves any request;
followers forward writes and linearizable reads to the leader, or answer 307 with
``--raftlog-redirect``, which the user follows once). Requests go through the user's
own ``requests.Session`` and each is reported to Locust by hand, so one answer is one
event under a name that says what it meant:

* ``POST append ack=<ack>``: 201 (202 for ``ack=leader``); a definite refusal (4xx,
  503, 507) is a failure there; a 5xx other than 504, an undocumented status or a broken
  connection is a failure too (outcome unknown).
* ``APPEND outcome_unknown``: 504 ``outcome_unknown``, not a failure: the contract's
  "maybe written"; the presence check allows it once or not at all.
* ``APPEND not_fully_replicated``: ``ack=all`` answered 504 with ``committed`` and the
  offsets: acknowledged (the presence check requires it), not a failure.
* ``GET read consistency=<c>`` / ``GET head consistency=<c>`` / ``GET tail wait=<s>``;
  ``GET read consistency=any stale``: an ``any`` read of an acknowledged offset the
  answering node has not applied yet (404), allowed, not a failure.
"""

from __future__ import annotations

import itertools
import os
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar

import requests
from locust import User, constant, events, task
from locust.env import Environment

from loadtests.outcomes import (
    AppendOutcome,
    ReadVerdict,
    classify_append,
    classify_head,
    classify_read,
)
from loadtests.records import OpRecorder

__all__ = [
    "ReaderAny",
    "ReaderLeader",
    "ReaderQuorum",
    "TailFollower",
    "WriterAckAll",
    "WriterAckLeader",
    "WriterAckQuorum",
]

RECENT_ACKS = 10_000  # acknowledged (log, offset, value) kept for readers to pick from
HEAD_READ_SHARE = 0.2  # readers read the log's head this often, else an acknowledged offset
TAIL_LIMIT = 1000


class RequestFailure(Exception):
    """What Locust records as a request's failure (the message names the cause)."""


@dataclass
class Settings:
    """The run's settings, from the command line (``locustfile.add_arguments``)."""

    nodes: list[str]
    logs: list[str]
    run_id: str
    pad: str
    timeout_s: float
    tail_wait_s: float
    redirect: bool
    recorder: OpRecorder | None

    @classmethod
    def from_options(cls, options: Any, host: str | None) -> Settings:
        nodes = [u.strip().rstrip("/") for u in str(options.raftlog_url or "").split(",")]
        nodes = [u for u in nodes if u] or ([host.rstrip("/")] if host else [])
        if not nodes:
            raise SystemExit("raftlog load test: give the nodes with --raftlog-url or --host")
        run_id = (
            options.raftlog_run_id or time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        )
        record = options.raftlog_record
        return cls(
            nodes=nodes,
            logs=[f"load-{run_id}-{i}" for i in range(max(1, int(options.raftlog_logs)))],
            run_id=run_id,
            pad="x" * max(0, int(options.raftlog_pad_bytes)),
            timeout_s=float(options.raftlog_timeout),
            tail_wait_s=float(options.raftlog_tail_wait),
            redirect=bool(options.raftlog_redirect),
            recorder=OpRecorder(record) if record else None,
        )


@dataclass(frozen=True)
class Acked:
    log: str
    offset: int
    value: str


class RunState:
    """What the users of one Locust process share: the settings, the recorder, and the
    recent acknowledged writes (readers pick from them). Greenlets of one process only."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.recent: deque[Acked] = deque(maxlen=RECENT_ACKS)
        self.highest: dict[str, int] = {}  # log -> highest acknowledged offset
        self.users = itertools.count(1)

    def acknowledged(self, log: str, offset: int, value: str) -> None:
        self.recent.append(Acked(log, offset, value))
        self.highest[log] = max(self.highest.get(log, -1), offset)


_state: RunState | None = None


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _on_test_start(environment: Environment, **_kwargs: Any) -> None:
    global _state
    if _state is None:
        _state = RunState(Settings.from_options(environment.parsed_options, environment.host))


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _on_quitting(environment: Environment, **_kwargs: Any) -> None:
    if _state is not None and _state.settings.recorder is not None:
        _state.settings.recorder.close()


def run_state() -> RunState:
    if _state is None:
        raise RuntimeError("the raftlog load test has not started (no test_start event)")
    return _state


@dataclass
class Answer:
    status: int | None
    body: Any
    length: int
    elapsed_ms: float
    transport_error: str | None = None


class RaftlogUser(User):
    """Base of the users: a session, a node picker, hand-reported requests."""

    abstract = True
    wait_time = constant(0)

    def on_start(self) -> None:
        self.state = run_state()
        self.settings = self.state.settings
        self.number = next(self.state.users)
        self.session = requests.Session()
        self.session.trust_env = False  # talk to the given nodes, never through a proxy

    def on_stop(self) -> None:
        self.session.close()

    def node(self) -> str:
        return random.choice(self.settings.nodes)

    def send(self, method: str, url: str, *, extra_wait_s: float = 0.0, **kwargs: Any) -> Answer:
        """One request (and one 307 hop if the node answers one); never raises for an
        HTTP or transport failure. Blocks this greenlet for at most the server timeout
        plus ``extra_wait_s`` plus 5 s per hop."""
        limit = (2.0, self.settings.timeout_s + extra_wait_s + 5.0)
        started = time.perf_counter()
        try:
            resp = self.session.request(method, url, timeout=limit, allow_redirects=False, **kwargs)
            if resp.status_code == 307 and "location" in resp.headers:
                kwargs.pop("params", None)  # the Location carries the query
                location = resp.headers["location"]
                resp = self.session.request(
                    method, location, timeout=limit, allow_redirects=False, **kwargs
                )
        except requests.RequestException as exc:
            elapsed = (time.perf_counter() - started) * 1000
            return Answer(None, None, 0, elapsed, f"{type(exc).__name__}: {exc}")
        elapsed = (time.perf_counter() - started) * 1000
        try:
            body = resp.json()
        except ValueError:
            body = None
        return Answer(resp.status_code, body, len(resp.content), elapsed)

    def report(self, request_type: str, name: str, answer: Answer, failure: str | None) -> None:
        self.environment.events.request.fire(
            request_type=request_type,
            name=name,
            response_time=answer.elapsed_ms,
            response_length=answer.length,
            exception=RequestFailure(failure) if failure else None,
            context={},
        )


class Writer(RaftlogUser):
    """Appends unique values ``{"w": "<run>-<pid>-<user>-<seq>", "pad": "x..."}`` to a
    random log of the run at ``ack``, and records each (``loadtests.records``)."""

    abstract = True
    ack: ClassVar[str] = "quorum"

    def on_start(self) -> None:
        super().on_start()
        self.seq = itertools.count()
        self.prefix = f"{self.settings.run_id}-{os.getpid()}-{self.number}"

    @task
    def append(self) -> None:
        value = f"{self.prefix}-{next(self.seq)}"
        log = random.choice(self.settings.logs)
        node = self.node()
        params: dict[str, str] = {"ack": self.ack, "timeout": f"{self.settings.timeout_s:g}"}
        if self.settings.redirect:
            params["redirect"] = "true"
        recorder = self.settings.recorder
        if recorder is not None:
            recorder.invoke(value, log, node, self.ack, self.number, time.monotonic())
        # If this greenlet is killed mid-request (the run ends), the invoke line stays
        # without a done line: the presence check treats the append as maybe written.
        answer = self.send(
            "POST",
            f"{node}/v1/logs/{log}/entries",
            params=params,
            json={"value": {"w": value, "pad": self.settings.pad}},
        )
        outcome = classify_append(answer.status, answer.body, answer.transport_error)
        if recorder is not None:
            recorder.done(value, outcome.history, time.monotonic(), outcome.offset, outcome.failure)
        if outcome.history == "ok" and outcome.offset is not None:
            self.state.acknowledged(log, outcome.offset, value)
        self._report(answer, outcome)

    def _report(self, answer: Answer, outcome: AppendOutcome) -> None:
        if outcome.event is not None:
            self.report("APPEND", outcome.event, answer, outcome.failure)
        else:
            self.report("POST", f"append ack={self.ack}", answer, outcome.failure)


class WriterAckLeader(Writer):
    """``ack=leader``: 202 before commit, no offset (recorded as maybe written)."""

    ack = "leader"
    weight = 1


class WriterAckQuorum(Writer):
    """``ack=quorum`` (the default): 201 once committed by a majority."""

    ack = "quorum"
    weight = 2


class WriterAckAll(Writer):
    """``ack=all``: 201 once every member has it."""

    ack = "all"
    weight = 1


class Reader(RaftlogUser):
    """Reads an offset some writer of this process was acknowledged at (and checks its
    value) or, one time in five and until there is one, the head of a log
    (``GET /v1/logs/<log>``, checking linearizable reads see every acknowledged offset)."""

    abstract = True
    consistency: ClassVar[str] = "quorum"

    @task
    def read(self) -> None:
        recent = self.state.recent
        params = {"consistency": self.consistency}
        node = self.node()
        if recent and random.random() >= HEAD_READ_SHARE:
            acked = recent[random.randrange(len(recent))]
            url = f"{node}/v1/logs/{acked.log}/entries/{acked.offset}"
            answer = self.send("GET", url, params=params)
            verdict = classify_read(answer.status, answer.body, acked.value, self.consistency)
            self._report(f"read consistency={self.consistency}", answer, verdict)
        else:
            log = random.choice(self.settings.logs)
            acked_before = self.state.highest.get(log)
            answer = self.send("GET", f"{node}/v1/logs/{log}", params=params)
            verdict = classify_head(answer.status, answer.body, acked_before, self.consistency)
            self._report(f"head consistency={self.consistency}", answer, verdict)

    def _report(self, name: str, answer: Answer, verdict: ReadVerdict) -> None:
        self.report("GET", verdict.event or name, answer, verdict.failure)


class ReaderLeader(Reader):
    consistency = "leader"
    weight = 1


class ReaderQuorum(Reader):
    consistency = "quorum"
    weight = 1


class ReaderAny(Reader):
    consistency = "any"
    weight = 1


class TailFollower(RaftlogUser):
    """Follows one log of the run from offset 0 with long polls
    (``GET /v1/logs/<log>/entries?from=N&wait=S``, quorum reads), checking that every
    page starts at N, is dense, and that ``next_offset`` is the offset after it."""

    weight = 1

    def on_start(self) -> None:
        super().on_start()
        logs = self.settings.logs
        self.log = logs[self.number % len(logs)]
        self.next_offset = 0

    @task
    def poll(self) -> None:
        wait = self.settings.tail_wait_s
        params = {"from": str(self.next_offset), "limit": str(TAIL_LIMIT), "wait": f"{wait:g}"}
        url = f"{self.node()}/v1/logs/{self.log}/entries"
        answer = self.send("GET", url, params=params, extra_wait_s=wait)
        failure = self._check_page(answer)
        self.report("GET", f"tail wait={wait:g}s", answer, failure)

    def _check_page(self, answer: Answer) -> str | None:
        if answer.status != 200 or not isinstance(answer.body, dict):
            return f"{answer.status} {answer.transport_error or answer.body}"
        entries = answer.body.get("entries")
        if not isinstance(entries, list):
            return "page without entries"
        offsets = [e.get("offset") if isinstance(e, dict) else None for e in entries]
        expected = list(range(self.next_offset, self.next_offset + len(entries)))
        if offsets != expected:
            return f"tail page from {self.next_offset} is not dense: offsets {offsets[:5]}..."
        if answer.body.get("next_offset") != self.next_offset + len(entries):
            return f"next_offset {answer.body.get('next_offset')} after {len(entries)} entries"
        self.next_offset += len(entries)
        return None
