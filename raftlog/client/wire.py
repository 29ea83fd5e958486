"""The wire format of the v1 API for the client: building one request (``_Call``), reading
one answer (an error class or a model), and turning an httpx transport exception into the
client error it means (definitely not applied vs outcome unknown).

Pure functions of their inputs: no I/O, no sleeping, no shared state.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpx

from raftlog.client.errors import (
    DEFINITE_STATUSES,
    ConnectionFailed,
    InvalidRequest,
    LogNotFound,
    OffsetNotFound,
    OutcomeUnknown,
    RaftlogClientError,
    UnexpectedResponse,
    UnexpectedWriteResponse,
    error_class,
)
from raftlog.client.models import Accepted, AppendResult, ResponseMeta

BatchItem = Any  # a value, or a (value, key) tuple


class Response(Protocol):
    """What the core reads of an HTTP answer: an ``httpx.Response``, or the client's own
    ``raftlog.client.http11.Answer``. ``headers`` is looked up by lower-case name."""

    @property
    def status_code(self) -> int: ...
    @property
    def reason_phrase(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    @property
    def url(self) -> httpx.URL: ...
    @property
    def request(self) -> httpx.Request: ...
    def json(self) -> Any: ...


T = TypeVar("T")


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

    @property
    def is_any_read(self) -> bool:
        """A ``consistency=any`` read: any node may serve it (the client spreads these)."""
        return self.method == "GET" and self.params.get("consistency") == "any"

    @property
    def asks_server_to_wait(self) -> bool:
        """A ``min_index`` read or a long poll: its latency is the wait, not the node's speed."""
        return "min_index" in self.params or self.params.get("wait", "0") not in ("0", "")


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


# Every exception an httpx request may raise for a transport reason: a driver hands these
# back to the core (``_transport_error``) instead of letting them propagate.
TRANSPORT_ERRORS: tuple[type[Exception], ...] = (httpx.HTTPError, httpx.InvalidURL)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _transport_error(call: _Call, url: str, exc: BaseException) -> BaseException:
    """The client error an httpx exception raised by an attempt at ``url`` means (the only
    place that decides it); anything else is returned as it is, to be re-raised.

    ``ConnectionFailed(definitely_not_applied=True)``: never sent, or a read that broke;
    ``OutcomeUnknown``: a write whose request may have reached the node."""
    if isinstance(exc, _NEVER_SENT):
        return ConnectionFailed(
            f"could not connect to {url}: {_describe(exc)}", sent=False, definitely_not_applied=True
        )
    if not isinstance(exc, httpx.HTTPError):
        return exc
    # read/write errors and timeouts, a dropped connection
    if call.is_write:
        return OutcomeUnknown(
            f"no answer from {url} after the write was sent ({_describe(exc)}): "
            "the write may or may not have been applied",
            code="connection_lost",
        )
    return ConnectionFailed(
        f"the connection to {url} broke: {_describe(exc)}",
        sent=True,
        definitely_not_applied=True,
    )


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


@functools.lru_cache(maxsize=1024)
def _segment(log: str) -> str:
    return quote(log, safe="")


@functools.lru_cache(maxsize=256)
def _timeout(connect: float, io: float) -> httpx.Timeout:
    return httpx.Timeout(connect=connect, read=io, write=io, pool=connect)


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


class _Wire:
    """Builds the requests of the API and reads their answers; the half of ``_Core`` that
    knows the v1 contract but nothing of nodes or retries."""

    GRACE = 5.0  # seconds a call's deadline exceeds the server-side timeout (+ wait)

    timeout: float
    connect_timeout: float
    read_timeout: float

    # -- building requests --------------------------------------------------------------------

    def _op(self, timeout: float | None) -> float:
        if timeout is not None and timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self.timeout if timeout is None else float(timeout)

    def attempt_timeout(self, server_wait: float = 0.0) -> httpx.Timeout:
        """The timeouts of one attempt on one node: ``connect_timeout`` to connect and to
        get a pooled connection; ``read_timeout`` plus the time the request asks the
        server to wait (``server_wait``) for each read or write on the connection."""
        return _timeout(self.connect_timeout, self.read_timeout + server_wait)

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

    def error(self, call: _Call, response: Response) -> RaftlogClientError | None:
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

    def unexpected(self, call: _Call, response: Response, why: str) -> RaftlogClientError:
        cls = UnexpectedWriteResponse if call.is_write else UnexpectedResponse
        return cls(
            f"unexpected answer (HTTP {response.status_code}) to {call.method} {call.path}: {why}",
            status=response.status_code,
            definitely_not_applied=not call.is_write,
            meta=ResponseMeta.from_headers(response.headers),
        )

    def parse(self, call: _Call, response: Response, build: Callable[[Any, ResponseMeta], T]) -> T:
        try:
            return build(response.json(), ResponseMeta.from_headers(response.headers))
        except ValueError as exc:  # JSON or UTF-8 decoding, or a body off the contract
            raise self.unexpected(call, response, str(exc)) from exc

    def parse_append(self, call: _Call, response: Response) -> AppendResult | Accepted:
        if response.status_code == 202:
            return self.parse(call, response, Accepted.from_body)
        if response.status_code != 201:
            raise self.unexpected(call, response, "expected 201 or 202")
        return self.parse(call, response, AppendResult.from_body)
