"""The raftlog Python client: ``Client`` (sync) and ``AsyncClient`` over the v1 HTTP API.

::

    from raftlog.client import Client, OutcomeUnknown

    with Client(["http://127.0.0.1:8001", "http://127.0.0.1:8002"]) as c:
        r = c.append("orders", {"id": 42})           # AppendResult
        e = c.get("orders", r.offset, consistency="any", min_index=r.index)
        for entry in c.tail("orders", max_entries=10):
            print(entry.offset, entry.value)

Behaviour (both clients):

* **Nodes.** ``urls`` (a list, or one comma-separated string; ``None`` reads ``RAFTLOG_URL``,
  else ``http://127.0.0.1:8001``). A call starts at the node that last answered, unless that
  node is in backoff (below); a failure moves it on to another node.
* **Attempt timeouts.** Each attempt on one node has its own timeouts, much shorter than
  the call's: ``connect_timeout`` (default 0.5 s) to open the connection (and to get one
  from the pool), ``read_timeout`` (default 2 s) for the node's answer once the request is
  sent. A request that asks the server to wait gets that wait on top of ``read_timeout``:
  a long poll its ``wait``, a ``min_index`` read and an ``ack=all`` write the call's
  ``timeout`` (the server answers 504 by then). Choose ``read_timeout`` above the cluster's
  usual commit latency and near its ``election_timeout_max_ms`` (server default 2000 ms):
  by the time an attempt on a frozen leader is given up, a new leader is usually known.
* **Node backoff.** A node that could not be reached or did not answer in time (connection
  refused or reset, connect/read timeout) is put in backoff for ``node_backoff`` seconds
  (default 1 s), doubling on each further failure up to ``node_backoff_max`` (default 30 s),
  reset by its next answer. Calls go to nodes outside backoff; a node in backoff is tried
  only when no other node is left in the current round and no node answered in that round
  (when all are in backoff, the one that failed longest ago goes first). So after a
  timeout, even one that raised ``OutcomeUnknown``, the next call goes elsewhere.
* **Leader.** On a 503 from one node, the client tries the node named in that answer's
  ``X-Raftlog-Leader`` (its URL learned from ``GET /v1/cluster``; skipped while in
  backoff), else the next URL. 307 and 308 redirects are followed here (not by httpx,
  which would drop ``Authorization`` when the leader is another origin), re-sending the
  same method, body and headers.
* **Retries.** Only failures that certainly changed nothing are retried: a request that
  was never sent (connection refused, connect or pool timeout), 429 (waiting at least
  ``Retry-After``, capped at ``RETRY_AFTER_CAP``), 503 (its ``Retry-After`` is not awaited:
  during an election another node may answer at once); reads (GET) also after a timeout,
  a connection broken mid-way and a 502. Moving on to a node not yet tried in the current
  round is immediate; once the round is over, the client sleeps (exponential ``backoff``
  with jitter, capped at ``MAX_BACKOFF``) and starts a new round, at most ``retries``
  times, and never once the call's deadline (``timeout`` + ``wait`` + ``GRACE`` seconds
  from its start) has passed; a call thus lasts at most its deadline plus one attempt.
* **Unknown outcomes are never retried.** A write answered 504 ``outcome_unknown``, a write
  that timed out or whose connection broke after it was sent, or one given an undocumented
  answer raises ``OutcomeUnknown`` (see ``raftlog.client.errors`` for the whole exception
  tree).
* **Timeouts on the server.** ``timeout`` (or a call's ``timeout=``) is sent as the
  server's ``timeout`` parameter.
* **Missing logs.** ``get`` on a log that does not exist raises ``LogNotFound`` (the server
  answers a missing log like an empty one, so a 404 ``offset_not_found`` at offset 0 is
  checked with one ``GET /v1/logs/{log}``).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar, overload
from urllib.parse import quote, urlsplit

import httpx

from raftlog import __version__
from raftlog.client.errors import (
    DEFINITE_STATUSES,
    BatchTooLarge,
    Conflict,
    ConnectionFailed,
    EntryTooLarge,
    Forbidden,
    IdempotencyKeyReused,
    InsufficientStorage,
    InvalidRequest,
    LogNotFound,
    MembershipChangeInProgress,
    NoLeader,
    NoQuorum,
    NotFound,
    NotFullyReplicated,
    OffsetMismatch,
    OffsetNotFound,
    OutcomeUnknown,
    Overloaded,
    RaftlogClientError,
    RequestTooLarge,
    Timeout,
    TooLarge,
    TooStale,
    Trimmed,
    Unauthorized,
    Unavailable,
    UnexpectedResponse,
    UnexpectedWriteResponse,
    error_class,
)
from raftlog.client.models import (
    Accepted,
    Ack,
    AppendResult,
    ClusterNodeStatus,
    ClusterStatus,
    Consistency,
    EntriesPage,
    Entry,
    LogInfo,
    LogsPage,
    ResponseMeta,
)

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "Accepted",
    "Ack",
    "AppendResult",
    "AsyncClient",
    "BatchTooLarge",
    "Client",
    "ClusterNodeStatus",
    "ClusterStatus",
    "Conflict",
    "ConnectionFailed",
    "Consistency",
    "EntriesPage",
    "Entry",
    "EntryTooLarge",
    "Forbidden",
    "IdempotencyKeyReused",
    "InsufficientStorage",
    "InvalidRequest",
    "LogInfo",
    "LogNotFound",
    "LogsPage",
    "MembershipChangeInProgress",
    "NoLeader",
    "NoQuorum",
    "NotFound",
    "NotFullyReplicated",
    "OffsetMismatch",
    "OffsetNotFound",
    "OutcomeUnknown",
    "Overloaded",
    "RaftlogClientError",
    "RequestTooLarge",
    "ResponseMeta",
    "Timeout",
    "TooLarge",
    "TooStale",
    "Trimmed",
    "Unauthorized",
    "Unavailable",
    "UnexpectedResponse",
    "UnexpectedWriteResponse",
    "resolve_urls",
]

ENV_URL = "RAFTLOG_URL"
DEFAULT_URL = "http://127.0.0.1:8001"

BatchItem = Any  # a value, or a (value, key) tuple
T = TypeVar("T")


def resolve_urls(urls: str | Sequence[str] | None = None) -> list[str]:
    """Normalize node URLs: ``None`` reads ``RAFTLOG_URL`` (comma-separated), else the
    default; ``host:port`` gets ``http://``; duplicates and trailing slashes go."""
    if urls is None:
        urls = os.environ.get(ENV_URL, "").strip() or DEFAULT_URL
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url:
            continue
        if "://" not in url:
            url = f"http://{url}"
        try:
            parsed = urlsplit(url)
            parsed.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"invalid raftlog URL {item!r}: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"invalid raftlog URL {item!r}: expected http(s)://host:port")
        if url not in out:
            out.append(url)
    if not out:
        raise ValueError("no raftlog URL given")
    return out


# -- the nodes a client knows ----------------------------------------------------------------


class _Health:
    """One node's failure record: in backoff until ``until`` (monotonic seconds)."""

    __slots__ = ("failed_at", "failures", "until")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0
        self.failed_at = 0.0


class _Nodes:
    """Candidate URLs, the one that last answered, each node's backoff, and node id -> URL
    from ``/v1/cluster``. Thread-safe; does no I/O; never blocks beyond its own lock.

    Only the client's routing (``_Route``) decides with it; ``clock`` is replaceable for
    tests."""

    def __init__(
        self,
        urls: list[str],
        backoff: float,
        backoff_max: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._urls = urls
        self._preferred = 0
        self._by_id: dict[str, str] = {}
        self._health: dict[str, _Health] = {}
        self._backoff = backoff
        self._backoff_max = backoff_max
        self.clock = clock
        self._lock = threading.Lock()

    @property
    def urls(self) -> list[str]:
        with self._lock:
            return list(self._urls)

    def now(self) -> float:
        return self.clock()

    def preferred(self) -> str:
        """The node that last answered (the first URL before any answer)."""
        with self._lock:
            return self._urls[self._preferred]

    def after(self, url: str) -> str:
        """The URL following ``url`` in the list (the preferred one for a URL not listed)."""
        with self._lock:
            return self._after(url)

    def _after(self, url: str) -> str:
        if url in self._urls:
            return self._urls[(self._urls.index(url) + 1) % len(self._urls)]
        return self._urls[self._preferred]

    def worked(self, url: str) -> None:
        """``url`` gave the call its answer: it becomes preferred (and leaves backoff)."""
        with self._lock:
            if url not in self._urls:  # a leader learned from /v1/cluster
                self._urls.append(url)
            self._preferred = self._urls.index(url)
            self._health.pop(url, None)

    def alive(self, url: str) -> None:
        """``url`` gave an HTTP answer (a 503 included): it is not frozen, end its backoff."""
        with self._lock:
            self._health.pop(url, None)

    def failed(self, url: str) -> float:
        """``url`` could not be reached or did not answer in time: put it in backoff (or
        lengthen it, doubling per consecutive failure up to the maximum). Returns the
        backoff in seconds."""
        with self._lock:
            health = self._health.setdefault(url, _Health())
            health.failures += 1
            now = self.clock()
            period = min(self._backoff_max, self._backoff * 2.0 ** (health.failures - 1))
            health.failed_at = now
            health.until = now + period
            return period

    def backing_off(self, url: str) -> bool:
        with self._lock:
            return self._backing_off(url, self.clock())

    def _backing_off(self, url: str, now: float) -> bool:
        health = self._health.get(url)
        return health is not None and now < health.until

    def pick(self, tried: set[str], start: str | None, *, allow_backoff: bool) -> str | None:
        """The next node to try: the first URL not in ``tried`` and not in backoff, going
        round the list from ``start`` (the preferred node when None or not listed); else,
        when ``allow_backoff``, the untried node in backoff that failed longest ago; else
        None."""
        with self._lock:
            now = self.clock()
            first = self._urls.index(start) if start in self._urls else self._preferred
            order = self._urls[first:] + self._urls[:first]
            untried = [url for url in order if url not in tried]
            for url in untried:
                if not self._backing_off(url, now):
                    return url
            if allow_backoff and untried:
                return min(untried, key=lambda url: self._health[url].failed_at)
            return None

    def url_of(self, node_id: str) -> str | None:
        with self._lock:
            return self._by_id.get(node_id)

    def learn(self, status: ClusterStatus, scheme: str) -> None:
        with self._lock:
            for node in status.nodes:
                if node.http:
                    url = node.http if "://" in node.http else f"{scheme}://{node.http}"
                    self._by_id[node.id] = url.rstrip("/")


# -- one request, and the one boundary where httpx exceptions become client errors ----------


@dataclass(frozen=True)
class _Call:
    """One request of a call. ``timeout`` bounds each attempt on one node; ``budget`` is
    the call's deadline in seconds from its start (no retry starts after it)."""

    method: str
    path: str
    params: dict[str, str]
    timeout: httpx.Timeout
    budget: float
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def is_write(self) -> bool:
        return self.method != "GET"


# Raised before a byte of the request left: the request was certainly not processed.
_NEVER_SENT: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.InvalidURL,
)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _transport_errors(call: _Call, url: str) -> Iterator[None]:
    """Translate httpx exceptions raised inside the block. The only such place."""
    try:
        yield
    except _NEVER_SENT as exc:
        raise ConnectionFailed(
            f"could not connect to {url}: {_describe(exc)}", sent=False, definitely_not_applied=True
        ) from exc
    except httpx.HTTPError as exc:  # read/write errors and timeouts, a dropped connection
        if call.is_write:
            raise OutcomeUnknown(
                f"no answer from {url} after the write was sent ({_describe(exc)}): "
                "the write may or may not have been applied",
                code="connection_lost",
            ) from exc
        raise ConnectionFailed(
            f"the connection to {url} broke: {_describe(exc)}",
            sent=True,
            definitely_not_applied=True,
        ) from exc


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or an HTTP date); None when absent/bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _num(value: float) -> str:
    return f"{value:g}"


def _segment(log: str) -> str:
    return quote(log, safe="")


def _encode(body: Any) -> bytes:
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"the value is not JSON: {exc}", definitely_not_applied=True) from exc
    return text.encode("utf-8")


def _entry_object(value: Any, key: str | None) -> dict[str, Any]:
    if key is not None and not isinstance(key, str):
        raise InvalidRequest(f"key must be a string or None, not {type(key).__name__}")
    return {"value": value} if key is None else {"value": value, "key": key}


def _batch_object(item: BatchItem) -> dict[str, Any]:
    if isinstance(item, tuple):
        if len(item) != 2:
            raise InvalidRequest("a batch item tuple must be (value, key)")
        return _entry_object(item[0], item[1])
    return _entry_object(item, None)


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
        self.url = nodes.pick(set(), None, allow_backoff=True) or nodes.preferred()
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

    def answered(self, response: httpx.Response) -> bool:
        """The node at ``url`` answered: True when the answer is the result; raises an
        error answer that must not be retried; False when the call should go on."""
        core = self._core
        core.nodes.alive(self.url)
        self._answered = True
        error = core.error(self._call, response)
        if error is None or not core.retryable(self._call, error):
            core.nodes.worked(self.url)
            if error is None:
                return True
            raise error
        self._error = error
        self._hint = core.leader_hint(error)
        return False

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
            self.url = nodes.pick(set(), start, allow_backoff=True) or start
        self._tried = {self.url}
        self._answered = False
        return delay

    def _go(self, url: str, error: RaftlogClientError) -> float:
        if self._core.nodes.now() >= self._deadline:
            raise error
        self.url = url
        self._tried.add(url)
        return 0.0


class _Core:
    """Everything both clients share that does no I/O: building requests, reading answers,
    deciding retries."""

    GRACE = 5.0  # seconds a call's deadline exceeds the server-side timeout (+ wait)
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
    ) -> None:
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
        self.nodes = _Nodes(resolve_urls(urls), float(node_backoff), float(node_backoff_max))
        self.timeout = float(timeout)
        self.retries = retries
        self.backoff = backoff
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.headers = {"Accept": "application/json", "User-Agent": f"raftlog-client/{__version__}"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"

    # -- building requests --------------------------------------------------------------------

    def _op(self, timeout: float | None) -> float:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self.timeout if timeout is None else float(timeout)

    def attempt_timeout(self, server_wait: float = 0.0) -> httpx.Timeout:
        """The timeouts of one attempt on one node: ``connect_timeout`` to connect and to
        get a pooled connection; ``read_timeout`` plus the time the request asks the
        server to wait (``server_wait``) for each read or write on the connection."""
        io = self.read_timeout + server_wait
        return httpx.Timeout(
            connect=self.connect_timeout, read=io, write=io, pool=self.connect_timeout
        )

    def budget(self, op: float, wait: float = 0.0) -> float:
        """A call's deadline, in seconds from its start: no retry starts after it."""
        return op + wait + self.GRACE

    def append_call(
        self,
        log: str,
        body: dict[str, Any],
        *,
        ack: str,
        expected_offset: int | None,
        timeout: float | None,
        idempotency_key: str | None,
    ) -> _Call:
        op = self._op(timeout)
        params = {"ack": ack, "timeout": _num(op)}
        if expected_offset is not None:
            params["expected_offset"] = str(expected_offset)
        headers = {"Content-Type": "application/json"}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        # ack=all waits (up to the timeout) for every member: the server answers by then.
        server_wait = op if ack == "all" else 0.0
        return _Call(
            "POST",
            f"/v1/logs/{_segment(log)}/entries",
            params,
            self.attempt_timeout(server_wait),
            self.budget(op),
            _encode(body),
            headers,
        )

    @staticmethod
    def single_body(value: Any, key: str | None) -> dict[str, Any]:
        return _entry_object(value, key)

    @staticmethod
    def batch_body(entries: Sequence[BatchItem]) -> dict[str, Any]:
        if isinstance(entries, str | bytes):
            raise InvalidRequest("entries must be a sequence of values or (value, key) tuples")
        return {"entries": [_batch_object(item) for item in entries]}

    def read_params(
        self,
        consistency: str,
        min_index: int | None,
        max_lag: int | None,
        max_staleness_ms: int | None,
        op: float,
    ) -> dict[str, str]:
        params = {"consistency": consistency, "timeout": _num(op)}
        for name, value in (
            ("min_index", min_index),
            ("max_lag", max_lag),
            ("max_staleness_ms", max_staleness_ms),
        ):
            if value is not None:
                params[name] = str(value)
        return params

    def get_call(
        self,
        log: str,
        offset: int,
        consistency: str,
        min_index: int | None,
        max_lag: int | None,
        max_staleness_ms: int | None,
        timeout: float | None,
    ) -> _Call:
        op = self._op(timeout)
        params = self.read_params(consistency, min_index, max_lag, max_staleness_ms, op)
        path = f"/v1/logs/{_segment(log)}/entries/{int(offset)}"
        server_wait = op if min_index is not None else 0.0
        return _Call("GET", path, params, self.attempt_timeout(server_wait), self.budget(op))

    def read_call(
        self,
        log: str,
        start: int,
        limit: int,
        wait: float | None,
        consistency: str,
        min_index: int | None,
        max_lag: int | None,
        max_staleness_ms: int | None,
        timeout: float | None,
    ) -> _Call:
        op = self._op(timeout)
        params = self.read_params(consistency, min_index, max_lag, max_staleness_ms, op)
        params["from"] = str(int(start))
        params["limit"] = str(int(limit))
        if wait is not None:
            params["wait"] = _num(wait)
        long_poll = max(0.0, wait or 0.0)
        # min_index waits up to the timeout for the node to apply it, then the long poll.
        server_wait = long_poll + (op if min_index is not None else 0.0)
        return _Call(
            "GET",
            f"/v1/logs/{_segment(log)}/entries",
            params,
            self.attempt_timeout(server_wait),
            self.budget(op, long_poll),
        )

    def logs_call(self, after: str | None, limit: int, consistency: str | None) -> _Call:
        params = {"limit": str(int(limit))}
        if after is not None:
            params["after"] = after
        if consistency is not None:
            params["consistency"] = consistency
        return _Call("GET", "/v1/logs", params, self.attempt_timeout(), self.budget(self.timeout))

    def log_info_call(self, log: str, consistency: str | None) -> _Call:
        params = {} if consistency is None else {"consistency": consistency}
        return _Call(
            "GET",
            f"/v1/logs/{_segment(log)}",
            params,
            self.attempt_timeout(),
            self.budget(self.timeout),
        )

    def log_check_call(self, log: str, get: _Call, error: OffsetNotFound) -> _Call | None:
        """The follow-up that tells a missing log from an empty one after ``get`` (a
        single-entry read) raised ``error``: ``GET /v1/logs/{log}`` with the same read
        parameters, or None when ``error`` already shows the log exists (a next offset
        above 0). The server answers a missing log's entries like an empty log's."""
        if error.next_offset:
            return None
        return _Call("GET", f"/v1/logs/{_segment(log)}", dict(get.params), get.timeout, get.budget)

    @staticmethod
    @contextlib.contextmanager
    def log_check() -> Iterator[None]:
        """Around the follow-up of ``log_check_call``: its ``LogNotFound`` propagates (the
        caller's answer); any other failure of it is dropped, and the caller re-raises the
        original ``OffsetNotFound``."""
        try:
            yield
        except LogNotFound:
            raise
        except RaftlogClientError:
            pass

    def cluster_call(self, timeout: float | None = None) -> _Call:
        op = self._op(timeout)
        return _Call("GET", "/v1/cluster", {}, self.attempt_timeout(), self.budget(op))

    def probe_call(self, path: str) -> _Call:
        return _Call("GET", path, {}, self.attempt_timeout(), self.budget(self.timeout))

    # -- reading answers ----------------------------------------------------------------------

    def error(self, call: _Call, response: httpx.Response) -> RaftlogClientError | None:
        """None for a 2xx answer, else the error it means (not raised)."""
        status = response.status_code
        if 200 <= status < 300:
            return None
        meta = ResponseMeta.from_headers(response.headers)
        code: str | None = None
        message: str | None = None
        details: dict[str, Any] = {}
        try:
            body = response.json()
        except ValueError:
            body = None
        inner = body.get("error") if isinstance(body, dict) else None
        if isinstance(inner, dict):
            code = inner.get("code") if isinstance(inner.get("code"), str) else None
            message = inner.get("message") if isinstance(inner.get("message"), str) else None
            details = {k: v for k, v in inner.items() if k not in ("code", "message")}
        cls = error_class(status, code, is_write=call.is_write)
        if message is None:
            snippet = response.text[:200].strip()
            message = f"HTTP {status} {response.reason_phrase}" + (
                f": {snippet}" if snippet else ""
            )
        return cls(
            message,
            code=code or f"http_{status}",
            status=status,
            details=details,
            definitely_not_applied=(not call.is_write) or status in DEFINITE_STATUSES,
            retry_after=_retry_after(response.headers.get("retry-after")),
            meta=meta,
        )

    def unexpected(self, call: _Call, response: httpx.Response, why: str) -> RaftlogClientError:
        cls = UnexpectedWriteResponse if call.is_write else UnexpectedResponse
        return cls(
            f"unexpected answer (HTTP {response.status_code}) to {call.method} {call.path}: {why}",
            status=response.status_code,
            definitely_not_applied=not call.is_write,
            meta=ResponseMeta.from_headers(response.headers),
        )

    def parse(
        self, call: _Call, response: httpx.Response, build: Callable[[Any, ResponseMeta], T]
    ) -> T:
        try:
            return build(response.json(), ResponseMeta.from_headers(response.headers))
        except ValueError as exc:  # JSON or UTF-8 decoding, or a body off the contract
            raise self.unexpected(call, response, str(exc)) from exc

    def parse_append(self, call: _Call, response: httpx.Response) -> AppendResult | Accepted:
        if response.status_code == 202:
            return self.parse(call, response, Accepted.from_body)
        if response.status_code != 201:
            raise self.unexpected(call, response, "expected 201 or 202")
        return self.parse(call, response, AppendResult.from_body)

    def learn(self, response: httpx.Response, status: ClusterStatus) -> None:
        self.nodes.learn(status, response.url.scheme or "http")

    def try_learn(self, call: _Call, response: httpx.Response) -> None:
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
        delay = min(cap, self.backoff * 2.0 ** (round_ - 1)) * random.uniform(0.5, 1.0)
        if isinstance(error, Overloaded) and error.retry_after is not None:
            delay = max(delay, min(error.retry_after, self.RETRY_AFTER_CAP))
        return delay

    @staticmethod
    def redirect_target(call: _Call, response: httpx.Response) -> httpx.URL | None:
        location = response.headers.get("location")
        if response.status_code not in (307, 308) or not location:
            return None
        target = response.request.url.join(location)
        if not target.query:  # keep the parameters when Location names only the node
            target = target.copy_merge_params(call.params)
        return target


MAX_REDIRECTS = 5


# -- the synchronous client ------------------------------------------------------------------


class Client:
    """Synchronous raftlog client (thread-safe; one connection pool).

    ``urls``: the nodes (see ``resolve_urls``). ``timeout``: seconds, sent as the server's
    ``timeout``; a call's deadline is ``timeout`` (+ a long poll's ``wait``) + ``GRACE``,
    after which no retry starts. ``retries``: rounds over the nodes after the first, with
    ``backoff`` (seconds, doubling, jittered) between rounds. ``token``: bearer token.
    ``connect_timeout`` (0.5 s) and ``read_timeout`` (2 s): each attempt's limits for
    opening a connection and for the node's answer (plus the wait the request asks the
    server for). ``node_backoff`` (1 s, doubling per consecutive failure up to
    ``node_backoff_max``, 30 s): how long a node that did not answer is skipped.
    ``transport``: an httpx transport (tests).

    Every method blocks until the call ends: at most its deadline plus one attempt."""

    def __init__(
        self,
        urls: str | Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        connect_timeout: float = 0.5,
        read_timeout: float = 2.0,
        node_backoff: float = 1.0,
        node_backoff_max: float = 30.0,
    ) -> None:
        self._core = _Core(
            urls,
            timeout,
            retries,
            backoff,
            token,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            node_backoff=node_backoff,
            node_backoff_max=node_backoff_max,
        )
        self._http = httpx.Client(
            headers=self._core.headers, transport=transport, follow_redirects=False
        )
        self._sleep: Callable[[float], None] = time.sleep

    @property
    def urls(self) -> list[str]:
        """The node URLs this client knows (given ones, then leaders it learned)."""
        return self._core.nodes.urls

    @property
    def timeout(self) -> float:
        return self._core.timeout

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport ----------------------------------------------------------------------------

    def _exchange(self, call: _Call, url: str) -> httpx.Response:
        """One attempt on one node, following redirects."""
        target: httpx.URL | str = url + call.path
        params: dict[str, str] | None = call.params
        for _ in range(MAX_REDIRECTS + 1):
            with _transport_errors(call, str(target)):
                response = self._http.request(
                    call.method,
                    target,
                    params=params,
                    content=call.body,
                    headers=call.headers,
                    timeout=call.timeout,
                )
            next_target = self._core.redirect_target(call, response)
            if next_target is None:
                return response
            target, params = next_target, None
        raise self._core.unexpected(call, response, f"more than {MAX_REDIRECTS} redirects")

    def _send(self, call: _Call) -> httpx.Response:
        """The call's attempts, node after node, as ``_Route`` decides; blocks for each
        attempt (its own timeouts) and the retry sleeps. Raises the call's error."""
        route = self._core.route(call)
        while True:
            try:
                response = self._exchange(call, route.url)
            except RaftlogClientError as exc:
                route.failed(exc)
            else:
                if route.answered(response):
                    return response
            if route.wants_leader_lookup():
                self._look_up_cluster(route.url)
            delay = route.advance()
            if delay > 0:
                self._sleep(delay)

    def _look_up_cluster(self, url: str) -> None:
        call = self._core.cluster_call(min(self._core.timeout, 2.0))
        with contextlib.suppress(RaftlogClientError):
            self._core.try_learn(call, self._exchange(call, url))

    def _probe(self, path: str) -> bool:
        try:
            response = self._exchange(self._core.probe_call(path), self._core.nodes.preferred())
        except RaftlogClientError:
            return False
        return response.status_code == 200

    # -- the API ------------------------------------------------------------------------------

    @overload
    def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Literal["quorum", "all"] = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult: ...
    @overload
    def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Literal["leader"],
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> Accepted: ...
    @overload
    def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Ack = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult | Accepted: ...
    def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = None,
        ack: Ack = "quorum",
        expected_offset: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult | Accepted:
        """Append one entry. ``ack="leader"`` returns ``Accepted`` (no offsets)."""
        call = self._core.append_call(
            log,
            self._core.single_body(value, key),
            ack=ack,
            expected_offset=expected_offset,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
        return self._core.parse_append(call, self._send(call))

    @overload
    def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Literal["quorum", "all"] = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult: ...
    @overload
    def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Literal["leader"],
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> Accepted: ...
    @overload
    def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Ack = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult | Accepted: ...
    def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Ack = "quorum",
        expected_offset: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult | Accepted:
        """Append an atomic batch: each item is a value or a ``(value, key)`` tuple."""
        call = self._core.append_call(
            log,
            self._core.batch_body(entries),
            ack=ack,
            expected_offset=expected_offset,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
        return self._core.parse_append(call, self._send(call))

    def get(
        self,
        log: str,
        offset: int,
        *,
        consistency: Consistency = "quorum",
        min_index: int | None = None,
        max_lag: int | None = None,
        max_staleness_ms: int | None = None,
        timeout: float | None = None,
    ) -> Entry:
        """One entry; ``OffsetNotFound`` at or past the end, ``Trimmed`` below the start,
        ``LogNotFound`` when the log does not exist (checked with one more request)."""
        call = self._core.get_call(
            log, offset, consistency, min_index, max_lag, max_staleness_ms, timeout
        )
        try:
            return self._core.parse(call, self._send(call), Entry.from_body)
        except OffsetNotFound as exc:
            check = self._core.log_check_call(log, call, exc)
            if check is None:
                raise
            with self._core.log_check():
                self._send(check)
            raise

    def read(
        self,
        log: str,
        start: int = 0,
        limit: int = 100,
        *,
        wait: float | None = None,
        consistency: Consistency = "quorum",
        min_index: int | None = None,
        max_lag: int | None = None,
        max_staleness_ms: int | None = None,
        timeout: float | None = None,
    ) -> EntriesPage:
        """Up to ``limit`` entries from ``start``; ``wait`` long-polls for the first one."""
        call = self._core.read_call(
            log, start, limit, wait, consistency, min_index, max_lag, max_staleness_ms, timeout
        )
        return self._core.parse(call, self._send(call), EntriesPage.from_body)

    def tail(
        self,
        log: str,
        start: int = 0,
        *,
        consistency: Consistency = "any",
        poll_wait: float = 30,
        stop: Callable[[], bool] | None = None,
        max_entries: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[Entry]:
        """Entries from ``start`` as they are committed, by long-polling range reads.

        Ends after ``max_entries`` entries, or when ``stop()`` returns True (checked before
        each poll and after each entry); otherwise runs until the caller stops iterating.
        Never skips: a trimmed ``start`` raises ``Trimmed``."""
        offset, seen = start, 0
        while max_entries is None or seen < max_entries:
            if stop is not None and stop():
                return
            limit = self._core.TAIL_PAGE
            if max_entries is not None:
                limit = min(limit, max_entries - seen)
            page = self.read(
                log, offset, limit, wait=poll_wait, consistency=consistency, timeout=timeout
            )
            for entry in page.entries:
                yield entry
                seen += 1
                if max_entries is not None and seen >= max_entries:
                    return
                if stop is not None and stop():
                    return
            offset = max(offset, page.next_offset)

    def logs(
        self, after: str | None = None, limit: int = 100, *, consistency: Consistency | None = None
    ) -> LogsPage:
        """One page of logs in name order; pass ``next_after`` as ``after`` for the next."""
        call = self._core.logs_call(after, limit, consistency)
        return self._core.parse(call, self._send(call), LogsPage.from_body)

    def log_info(self, log: str, *, consistency: Consistency | None = None) -> LogInfo:
        """One log's metadata; ``LogNotFound`` before its first append."""
        call = self._core.log_info_call(log, consistency)
        return self._core.parse(call, self._send(call), LogInfo.from_body)

    def cluster(self) -> ClusterStatus:
        """The cluster as the leader sees it (also teaches the client node URLs)."""
        call = self._core.cluster_call()
        response = self._send(call)
        status = self._core.parse(call, response, ClusterStatus.from_body)
        self._core.learn(response, status)
        return status

    def health(self) -> bool:
        """``/healthz`` of the current node (the one that last worked); no failover."""
        return self._probe("/healthz")

    def ready(self) -> bool:
        """``/readyz`` of the current node (the one that last worked); no failover."""
        return self._probe("/readyz")


# -- the asynchronous client -----------------------------------------------------------------


class AsyncClient:
    """Asynchronous raftlog client: the same methods and parameters as ``Client``,
    awaitable. Use it from one event loop; the retry sleeps are ``asyncio.sleep``."""

    def __init__(
        self,
        urls: str | Sequence[str] | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.1,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        connect_timeout: float = 0.5,
        read_timeout: float = 2.0,
        node_backoff: float = 1.0,
        node_backoff_max: float = 30.0,
    ) -> None:
        self._core = _Core(
            urls,
            timeout,
            retries,
            backoff,
            token,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            node_backoff=node_backoff,
            node_backoff_max=node_backoff_max,
        )
        self._http = httpx.AsyncClient(
            headers=self._core.headers, transport=transport, follow_redirects=False
        )
        self._sleep: Callable[[float], Any] = asyncio.sleep

    @property
    def urls(self) -> list[str]:
        return self._core.nodes.urls

    @property
    def timeout(self) -> float:
        return self._core.timeout

    async def aclose(self) -> None:
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- transport ----------------------------------------------------------------------------

    async def _exchange(self, call: _Call, url: str) -> httpx.Response:
        target: httpx.URL | str = url + call.path
        params: dict[str, str] | None = call.params
        for _ in range(MAX_REDIRECTS + 1):
            with _transport_errors(call, str(target)):
                response = await self._http.request(
                    call.method,
                    target,
                    params=params,
                    content=call.body,
                    headers=call.headers,
                    timeout=call.timeout,
                )
            next_target = self._core.redirect_target(call, response)
            if next_target is None:
                return response
            target, params = next_target, None
        raise self._core.unexpected(call, response, f"more than {MAX_REDIRECTS} redirects")

    async def _send(self, call: _Call) -> httpx.Response:
        """The call's attempts, node after node, as ``_Route`` decides; awaits each
        attempt (its own timeouts) and the retry sleeps. Raises the call's error."""
        route = self._core.route(call)
        while True:
            try:
                response = await self._exchange(call, route.url)
            except RaftlogClientError as exc:
                route.failed(exc)
            else:
                if route.answered(response):
                    return response
            if route.wants_leader_lookup():
                await self._look_up_cluster(route.url)
            delay = route.advance()
            if delay > 0:
                await self._sleep(delay)

    async def _look_up_cluster(self, url: str) -> None:
        call = self._core.cluster_call(min(self._core.timeout, 2.0))
        with contextlib.suppress(RaftlogClientError):
            self._core.try_learn(call, await self._exchange(call, url))

    async def _probe(self, path: str) -> bool:
        try:
            call = self._core.probe_call(path)
            response = await self._exchange(call, self._core.nodes.preferred())
        except RaftlogClientError:
            return False
        return response.status_code == 200

    # -- the API ------------------------------------------------------------------------------

    @overload
    async def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Literal["quorum", "all"] = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult: ...
    @overload
    async def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Literal["leader"],
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> Accepted: ...
    @overload
    async def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = ...,
        ack: Ack = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult | Accepted: ...
    async def append(
        self,
        log: str,
        value: Any,
        *,
        key: str | None = None,
        ack: Ack = "quorum",
        expected_offset: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult | Accepted:
        call = self._core.append_call(
            log,
            self._core.single_body(value, key),
            ack=ack,
            expected_offset=expected_offset,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
        return self._core.parse_append(call, await self._send(call))

    @overload
    async def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Literal["quorum", "all"] = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult: ...
    @overload
    async def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Literal["leader"],
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> Accepted: ...
    @overload
    async def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Ack = ...,
        expected_offset: int | None = ...,
        timeout: float | None = ...,
        idempotency_key: str | None = ...,
    ) -> AppendResult | Accepted: ...
    async def append_batch(
        self,
        log: str,
        entries: Sequence[BatchItem],
        *,
        ack: Ack = "quorum",
        expected_offset: int | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult | Accepted:
        call = self._core.append_call(
            log,
            self._core.batch_body(entries),
            ack=ack,
            expected_offset=expected_offset,
            timeout=timeout,
            idempotency_key=idempotency_key,
        )
        return self._core.parse_append(call, await self._send(call))

    async def get(
        self,
        log: str,
        offset: int,
        *,
        consistency: Consistency = "quorum",
        min_index: int | None = None,
        max_lag: int | None = None,
        max_staleness_ms: int | None = None,
        timeout: float | None = None,
    ) -> Entry:
        call = self._core.get_call(
            log, offset, consistency, min_index, max_lag, max_staleness_ms, timeout
        )
        try:
            return self._core.parse(call, await self._send(call), Entry.from_body)
        except OffsetNotFound as exc:
            check = self._core.log_check_call(log, call, exc)
            if check is None:
                raise
            with self._core.log_check():
                await self._send(check)
            raise

    async def read(
        self,
        log: str,
        start: int = 0,
        limit: int = 100,
        *,
        wait: float | None = None,
        consistency: Consistency = "quorum",
        min_index: int | None = None,
        max_lag: int | None = None,
        max_staleness_ms: int | None = None,
        timeout: float | None = None,
    ) -> EntriesPage:
        call = self._core.read_call(
            log, start, limit, wait, consistency, min_index, max_lag, max_staleness_ms, timeout
        )
        return self._core.parse(call, await self._send(call), EntriesPage.from_body)

    async def tail(
        self,
        log: str,
        start: int = 0,
        *,
        consistency: Consistency = "any",
        poll_wait: float = 30,
        stop: Callable[[], bool] | None = None,
        max_entries: int | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[Entry]:
        """As ``Client.tail``, as an async iterator."""
        offset, seen = start, 0
        while max_entries is None or seen < max_entries:
            if stop is not None and stop():
                return
            limit = self._core.TAIL_PAGE
            if max_entries is not None:
                limit = min(limit, max_entries - seen)
            page = await self.read(
                log, offset, limit, wait=poll_wait, consistency=consistency, timeout=timeout
            )
            for entry in page.entries:
                yield entry
                seen += 1
                if max_entries is not None and seen >= max_entries:
                    return
                if stop is not None and stop():
                    return
            offset = max(offset, page.next_offset)

    async def logs(
        self, after: str | None = None, limit: int = 100, *, consistency: Consistency | None = None
    ) -> LogsPage:
        call = self._core.logs_call(after, limit, consistency)
        return self._core.parse(call, await self._send(call), LogsPage.from_body)

    async def log_info(self, log: str, *, consistency: Consistency | None = None) -> LogInfo:
        call = self._core.log_info_call(log, consistency)
        return self._core.parse(call, await self._send(call), LogInfo.from_body)

    async def cluster(self) -> ClusterStatus:
        call = self._core.cluster_call()
        response = await self._send(call)
        status = self._core.parse(call, response, ClusterStatus.from_body)
        self._core.learn(response, status)
        return status

    async def health(self) -> bool:
        return await self._probe("/healthz")

    async def ready(self) -> bool:
        return await self._probe("/readyz")
