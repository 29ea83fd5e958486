"""The sans-IO core of both clients: every decision of a call, written once.

A call is a *plan*: a generator that yields steps and is sent back what each step gave.

* ``Request``: perform this HTTP request (no redirects followed, with the step's timeouts)
  and send back the response (``wire.Response``: an ``httpx.Response`` or the client's own
  ``http11.Answer``), or the exception raised when it is one of ``TRANSPORT_ERRORS`` (any
  other exception: let it propagate).
* ``Sleep``: sleep that many seconds (``time.sleep`` / ``asyncio.sleep``), send back None.
* ``Emit``: (only ``tail``) hand the entry to the caller, send back None.

The plan ends (``StopIteration.value``) with the call's result, or raises the call's
classified error: ``definitely_not_applied`` True means nothing changed and the caller may
retry; ``OutcomeUnknown`` means a write may or may not have been applied. Node selection,
leader following, redirects, retries, backoff and the deadline all live here; the drivers
(``raftlog.client.sync``, ``raftlog.client.aio``) only perform steps. Time is read from
``_Core.nodes.clock`` (injectable), so a plan is deterministic given its replies and the
jitter of ``random``.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from raftlog import __version__
from raftlog.client.errors import (
    ConnectionFailed,
    OffsetNotFound,
    Overloaded,
    RaftlogClientError,
)
from raftlog.client.http11 import Answer
from raftlog.client.models import (
    Accepted,
    Ack,
    AppendResult,
    ClusterStatus,
    Consistency,
    EntriesPage,
    Entry,
    LogInfo,
    LogsPage,
)
from raftlog.client.nodes import _Nodes, resolve_urls
from raftlog.client.wire import (
    TRANSPORT_ERRORS,
    BatchItem,
    Response,
    _Call,
    _transport_error,
    _Wire,
)

__all__ = ["MAX_REDIRECTS", "TRANSPORT_ERRORS", "Emit", "Plan", "Reply", "Request", "Sleep", "Step"]

T = TypeVar("T")

MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Request:
    """Perform one HTTP request; may block up to ``timeout`` (per connect/read/write)."""

    method: str
    url: httpx.URL | str
    params: dict[str, str] | None
    body: bytes | None
    headers: dict[str, str]
    timeout: httpx.Timeout

    def kwargs(self) -> dict[str, Any]:
        """The arguments of ``httpx.(Async)Client.request`` for this step."""
        return {
            "method": self.method,
            "url": self.url,
            "params": self.params,
            "content": self.body,
            "headers": self.headers,
            "timeout": self.timeout,
        }


@dataclass(frozen=True)
class Sleep:
    """Wait ``seconds`` before the next step (a retry backoff)."""

    seconds: float


@dataclass(frozen=True)
class Emit:
    """Give ``entry`` to the caller of ``tail`` (which may stop iterating there)."""

    entry: Entry


Step = Request | Sleep | Emit
Reply = Response | BaseException | None
Plan = Generator[Step, Reply, T]


class _Route:
    """The routing of one call: which node next, whether to look the leader up, how long to
    wait, when to give up. Shared by both clients; does no I/O and never sleeps.

    A client's loop makes one attempt on ``url``, reports it with ``failed`` (no HTTP answer)
    or ``answered``, does the cluster look-up when ``wants_leader_lookup`` says so, then
    calls ``advance`` and sleeps for what it returns. ``failed``, ``answered`` and ``advance``
    raise the error the caller must see when it must not be retried, or when the retries
    or the deadline have run out."""

    def __init__(self, core: _Core, call: _Call) -> None:
        self._core = core
        self._call = call
        nodes = core.nodes
        self._deadline = nodes.now() + call.budget
        # An ``any`` read goes to a node drawn by the read spread (see raftlog.client.nodes);
        # when no node may take it, it is routed like every other call.
        self._spread = core.spread_reads and call.is_any_read
        drawn = nodes.pick_read(set()) if self._spread else None
        self._drawn = drawn is not None  # ``url`` came from the spread: probe it if due
        self.url = drawn or nodes.pick(set(), None, allow_backoff=True) or nodes.preferred()
        self._tried = {self.url}
        self._answered = False  # some node gave an HTTP answer in this round
        self._rounds = 0
        self._looked_up = False
        self._error: RaftlogClientError | None = None
        self._hint: str | None = None  # the leader id named by the last answer

    def failed(self, error: RaftlogClientError) -> None:
        """The attempt on ``url`` raised ``error`` (a transport failure, or too many
        redirects). A node that gave no HTTP answer goes into backoff, even when the
        error is then raised (``OutcomeUnknown``), so the next call goes elsewhere."""
        core = self._core
        if core.unreachable(error):
            core.nodes.failed(self.url)
        else:
            core.nodes.alive(self.url)
            self._answered = True
        self._hint = None
        if not core.retryable(self._call, error):
            raise error
        self._error = error

    def answered(self, response: Response, elapsed: float) -> bool:
        """The node at ``url`` answered after ``elapsed`` seconds: True when the answer is
        the result; raises an error answer that must not be retried; False when the call
        should go on. A spread read's answer feeds that node's latency (or, a 503, puts it
        in read backoff) and leaves the preferred node alone."""
        core = self._core
        nodes = core.nodes
        nodes.alive(self.url)
        self._answered = True
        error = core.error(self._call, response)
        if error is None or not core.retryable(self._call, error):
            if self._spread:
                waited = self._call.asks_server_to_wait
                nodes.served_read(self.url, None if waited else elapsed)
            else:
                nodes.worked(self.url)
            if error is None:
                return True
            raise error
        if self._spread and error.status == 503:
            nodes.refused_read(self.url)
        self._error = error
        self._hint = core.leader_hint(error)
        return False

    def needs_probe(self) -> bool:
        """True when the spread drew ``url`` as it comes back from a backoff: the loop must
        then check ``GET /readyz`` on it and report with ``probed`` before the attempt."""
        return self._drawn and self._core.nodes.needs_probe(self.url)

    def probed(self, ready: bool) -> None:
        """The ``/readyz`` check of ``url``: when it failed, ``url`` goes back into read
        backoff and the read moves to another node (drawn again, else routed as usual)."""
        nodes = self._core.nodes
        nodes.probed(self.url, ready)
        if ready:
            return
        drawn = nodes.pick_read(self._tried)
        self._drawn = drawn is not None
        if drawn is None:
            drawn = nodes.pick(self._tried, nodes.after(self.url), allow_backoff=True)
        if drawn is not None:
            self.url = drawn
            self._tried.add(drawn)

    def wants_leader_lookup(self) -> bool:
        """True (once per call) when the last answer named a leader whose URL is unknown:
        the loop should then fetch ``GET /v1/cluster`` from ``url`` before ``advance``."""
        if self._hint is None or self._looked_up:
            return False
        if self._core.nodes.url_of(self._hint) is not None:
            return False
        self._looked_up = True
        return True

    def advance(self) -> float:
        """Move ``url`` on to the next attempt; return the delay before it (0 within a
        round). Raises the last error when the retries or the call's deadline ran out."""
        error = self._error
        if error is None:
            raise RuntimeError("advance() before a retryable failure")
        nodes = self._core.nodes
        leader_url = None if self._hint is None else nodes.url_of(self._hint)
        if leader_url is not None and nodes.backing_off(leader_url):
            leader_url = None  # it just failed us: a stale view names it, go elsewhere
        if isinstance(error, Overloaded):  # the node asked us to come back later
            start = self.url
        else:
            drawn = nodes.pick_read(self._tried) if self._spread else None
            self._drawn = drawn is not None
            if drawn is not None:
                return self._go(drawn, error)
            if leader_url is not None and leader_url not in self._tried:
                return self._go(leader_url, error)
            # A node in backoff is tried only when no node answered in this round.
            candidate = nodes.pick(
                self._tried, nodes.after(self.url), allow_backoff=not self._answered
            )
            if candidate is not None:
                return self._go(candidate, error)
            start = leader_url if leader_url is not None else nodes.after(self.url)
        # The round is over: wait, then start a new one.
        if self._rounds >= self._core.retries:
            raise error
        delay = self._core.delay(self._rounds + 1, error)
        if nodes.now() + delay >= self._deadline:
            raise error
        self._rounds += 1
        if isinstance(error, Overloaded):
            self.url = start
        else:
            drawn = nodes.pick_read(set()) if self._spread else None
            self._drawn = drawn is not None
            self.url = drawn or nodes.pick(set(), start, allow_backoff=True) or start
        self._tried = {self.url}
        self._answered = False
        return delay

    def _go(self, url: str, error: RaftlogClientError) -> float:
        if self._core.nodes.now() >= self._deadline:
            raise error
        self.url = url
        self._tried.add(url)
        return 0.0


class _Core(_Wire):
    """Everything both clients share: building requests, reading answers, deciding retries,
    and the plan of every API call."""

    MAX_BACKOFF = 2.0
    RETRY_AFTER_CAP = 5.0
    TAIL_PAGE = 1000

    def __init__(
        self,
        urls: str | Sequence[str] | None,
        timeout: float,
        retries: int,
        backoff: float,
        token: str | None,
        *,
        connect_timeout: float,
        read_timeout: float,
        node_backoff: float,
        node_backoff_max: float,
        spread_reads: bool = True,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[float, float], float] = random.uniform,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """``spread_reads``: send ``consistency=any`` reads to nodes drawn by latency (see
        ``raftlog.client.nodes``) instead of the preferred node. ``clock``: monotonic
        seconds, for node backoff and the call deadline (the one source of time of a plan);
        ``jitter(a, b)``: a factor in [a, b] for retry sleeps; ``rand()``: a float in [0, 1)
        for the read spread's draws. All are replaceable (tests make plans deterministic)."""
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        if backoff < 0:
            raise ValueError("backoff must be >= 0")
        if connect_timeout <= 0:
            raise ValueError("connect_timeout must be > 0")
        if read_timeout <= 0:
            raise ValueError("read_timeout must be > 0")
        if node_backoff < 0:
            raise ValueError("node_backoff must be >= 0")
        if node_backoff_max < node_backoff:
            raise ValueError("node_backoff_max must be >= node_backoff")
        self.nodes = _Nodes(
            resolve_urls(urls), float(node_backoff), float(node_backoff_max), clock, rand
        )
        self.spread_reads = spread_reads
        self.jitter = jitter
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = backoff
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.headers = {"Accept": "application/json", "User-Agent": f"raftlog-client/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    def learn(self, response: Response, status: ClusterStatus) -> None:
        self.nodes.learn(status, response.url.scheme or "http")

    def try_learn(self, call: _Call, response: Response) -> None:
        if response.status_code == 200:
            with contextlib.suppress(RaftlogClientError):
                self.learn(response, self.parse(call, response, ClusterStatus.from_body))

    # -- retries ------------------------------------------------------------------------------

    def route(self, call: _Call) -> _Route:
        """The routing state of one call (see ``_Route``)."""
        return _Route(self, call)

    @staticmethod
    def unreachable(error: RaftlogClientError) -> bool:
        """True when an attempt's ``error`` came with no HTTP answer: the node could not
        be reached or did not answer in time (the node's fault, so it goes into backoff)."""
        return error.status is None

    def retryable(self, call: _Call, error: RaftlogClientError) -> bool:
        """Whether another attempt may follow ``error``: never after a write may have been
        sent; after a definite refusal (429, 503) or a failure to reach the node."""
        if isinstance(error, ConnectionFailed):
            return not (call.is_write and error.sent)
        if error.status in (429, 503):
            return True
        return not call.is_write and error.status == 502

    @staticmethod
    def leader_hint(error: RaftlogClientError) -> str | None:
        leader = error.meta.leader
        if error.status == 503 and leader and leader != error.meta.node:
            return leader
        return None

    def delay(self, round_: int, error: RaftlogClientError) -> float:
        cap = max(self.MAX_BACKOFF, self.backoff)
        delay = min(cap, self.backoff * 2.0 ** (round_ - 1)) * self.jitter(0.5, 1.0)
        if isinstance(error, Overloaded) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.RETRY_AFTER_CAP))
        return delay

    @staticmethod
    def redirect_target(call: _Call, response: Response) -> httpx.URL | None:
        location = response.headers.get("location")
        if response.status_code not in (307, 308) or not location:
            return None
        target = response.request.url.join(location)
        if not target.query:  # keep the parameters when Location names only the node
            target = target.copy_merge_params(call.params)
        return target

    # -- plans: one attempt, one call ---------------------------------------------------------

    def exchange(self, call: _Call, url: str) -> Plan[Response]:
        """One attempt on one node, following 307/308 redirects (same method, body and
        headers). Raises the transport failure as a client error (``_transport_error``)."""
        target: httpx.URL | str = url + call.path
        params: dict[str, str] | None = call.params
        for _ in range(MAX_REDIRECTS + 1):
            reply = yield Request(
                call.method, target, params, call.body, call.headers, call.timeout
            )
            if isinstance(reply, BaseException):
                raise _transport_error(call, str(target), reply) from reply
            response = _response(reply)
            next_target = self.redirect_target(call, response)
            if next_target is None:
                return response
            target, params = next_target, None
        raise self.unexpected(call, response, f"more than {MAX_REDIRECTS} redirects")

    def send(self, call: _Call) -> Plan[Response]:
        """The call's attempts, node after node, as ``_Route`` decides, with the retry
        sleeps between rounds. Ends with the answer; raises the call's error."""
        route = self.route(call)
        clock = self.nodes.clock
        while True:
            while route.needs_probe():
                route.probed((yield from self.ready_on(route.url)))
            started = clock()
            try:
                response = yield from self.exchange(call, route.url)
            except RaftlogClientError as exc:
                route.failed(exc)
            else:
                if route.answered(response, clock() - started):
                    return response
            if route.wants_leader_lookup():
                yield from self.look_up_cluster(route.url)
            delay = route.advance()
            if delay > 0:
                yield Sleep(delay)

    def look_up_cluster(self, url: str) -> Plan[None]:
        """``GET /v1/cluster`` on ``url`` to learn node URLs; any failure is ignored."""
        call = self.cluster_call(min(self.timeout, 2.0))
        with contextlib.suppress(RaftlogClientError):
            self.try_learn(call, (yield from self.exchange(call, url)))

    def ready_on(self, url: str) -> Plan[bool]:
        """``GET /readyz`` on ``url``: True on a 200; any failure is False (not raised)."""
        try:
            response = yield from self.exchange(self.probe_call("/readyz"), url)
        except RaftlogClientError:
            return False
        return response.status_code == 200

    def probe(self, path: str) -> Plan[bool]:
        """One attempt on the preferred node; True on a 200, no failover."""
        try:
            call = self.probe_call(path)
            response = yield from self.exchange(call, self.nodes.preferred())
        except RaftlogClientError:
            return False
        return response.status_code == 200

    # -- plans: the API (parameters as in ``Client``) -----------------------------------------

    def append(
        self,
        log: str,
        body: dict[str, Any],
        *,
        ack: Ack,
        expected_offset: int | None,
        timeout: float | None,
        idempotency_key: str | None,
    ) -> Plan[AppendResult | Accepted]:
        call = self.append_call(
            log,
            body,
            ack=ack,
            expected_offset=expected_offset,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
        return self.parse_append(call, (yield from self.send(call)))

    def append_one(
        self, log: str, value: Any, key: str | None, **kw: Any
    ) -> Plan[AppendResult | Accepted]:
        return self.append(log, self.single_body(value, key), **kw)

    def append_many(
        self, log: str, entries: Sequence[BatchItem], **kw: Any
    ) -> Plan[AppendResult | Accepted]:
        return self.append(log, self.batch_body(entries), **kw)

    def get(
        self,
        log: str,
        offset: int,
        *,
        consistency: Consistency,
        min_index: int | None,
        max_lag: int | None,
        max_staleness_ms: int | None,
        timeout: float | None,
    ) -> Plan[Entry]:
        call = self.get_call(
            log, offset, consistency, min_index, max_lag, max_staleness_ms, timeout
        )
        try:
            return self.parse(call, (yield from self.send(call)), Entry.from_body)
        except OffsetNotFound as exc:
            check = self.log_check_call(log, call, exc)
            if check is None:
                raise
            with self.log_check():
                yield from self.send(check)
            raise

    def read(
        self,
        log: str,
        start: int,
        limit: int,
        *,
        wait: float | None,
        consistency: Consistency,
        min_index: int | None = None,
        max_lag: int | None = None,
        max_staleness_ms: int | None = None,
        timeout: float | None,
    ) -> Plan[EntriesPage]:
        call = self.read_call(
            log, start, limit, wait, consistency, min_index, max_lag, max_staleness_ms, timeout
        )
        return self.parse(call, (yield from self.send(call)), EntriesPage.from_body)

    def tail(
        self,
        log: str,
        start: int,
        *,
        consistency: Consistency,
        poll_wait: float,
        stop: Callable[[], bool] | None,
        max_entries: int | None,
        timeout: float | None,
    ) -> Plan[None]:
        """Long-polling range reads from ``start``, each entry as an ``Emit`` step. Ends
        after ``max_entries``, or when ``stop()`` is True (checked before each poll and after
        each entry). Never skips: a trimmed ``start`` raises ``Trimmed``."""
        offset, seen = start, 0
        while max_entries is None or seen < max_entries:
            if stop is not None and stop():
                return
            limit = self.TAIL_PAGE
            if max_entries is not None:
                limit = min(limit, max_entries - seen)
            page = yield from self.read(
                log, offset, limit, wait=poll_wait, consistency=consistency, timeout=timeout
            )
            for entry in page.entries:
                yield Emit(entry)
                seen += 1
                if max_entries is not None and seen >= max_entries:
                    return
                if stop is not None and stop():
                    return
            offset = max(offset, page.next_offset)

    def logs(
        self, after: str | None, limit: int, consistency: Consistency | None
    ) -> Plan[LogsPage]:
        call = self.logs_call(after, limit, consistency)
        return self.parse(call, (yield from self.send(call)), LogsPage.from_body)

    def log_info(self, log: str, consistency: Consistency | None) -> Plan[LogInfo]:
        call = self.log_info_call(log, consistency)
        return self.parse(call, (yield from self.send(call)), LogInfo.from_body)

    def cluster(self) -> Plan[ClusterStatus]:
        call = self.cluster_call()
        response = yield from self.send(call)
        status = self.parse(call, response, ClusterStatus.from_body)
        self.learn(response, status)
        return status


def _response(reply: Reply) -> Response:
    """What a driver sent back for a ``Request`` step, once exceptions are handled."""
    if not isinstance(reply, httpx.Response | Answer):
        raise RuntimeError(f"a Request step was answered with {reply!r}")
    return reply
