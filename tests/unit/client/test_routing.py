"""Routing of both clients (issue 8): attempt timeouts, per-node backoff, which errors move
a call to another node and which end it; and ``get`` on a missing log.

Every test runs against ``Client`` and ``AsyncClient`` alike (MockTransport, no sockets; a
fake clock drives the node backoff and the call deadline, and retry sleeps only move it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from raftlog.client import (
    AsyncClient,
    Client,
    ConnectionFailed,
    LogNotFound,
    NoLeader,
    OffsetNotFound,
    OutcomeUnknown,
)

from ._fakes import (
    URLS,
    ClockSleeps,
    FakeClock,
    Handler,
    Recorder,
    appended,
    cluster_body,
    connect_error,
    entry,
    error,
    ok,
    raising,
)

pytestmark = pytest.mark.unit

N1, N2, N3 = URLS


class Driver:
    """A ``Client`` or an ``AsyncClient`` behind the same blocking ``call``."""

    def __init__(self, kind: str, handler: Handler, urls: list[str], **kwargs: Any) -> None:
        self.rec = handler if isinstance(handler, Recorder) else Recorder(handler)
        self.clock = FakeClock()
        self.sleeps = ClockSleeps(self.clock)
        kwargs.setdefault("backoff", 0.001)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.client: Client | AsyncClient
        if kind == "sync":
            self.client = Client(urls, transport=self.rec.transport(), **kwargs)
            self.client._sleep = self.sleeps
        else:
            self._loop = asyncio.new_event_loop()
            self.client = AsyncClient(urls, transport=self.rec.transport(), **kwargs)
            self.client._sleep = self.sleeps.async_sleep
        self.nodes = self.client._core.nodes
        self.nodes.clock = self.clock
        # Retry sleeps at the top of their jitter range: the number of rounds that fit in a
        # deadline is then fixed (with random jitter it varied, and a bound failed 1 in 10).
        self.client._core.jitter = lambda low, high: high

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        if self._loop is not None:
            return self._loop.run_until_complete(result)
        return result

    def close(self) -> None:
        if isinstance(self.client, AsyncClient):
            assert self._loop is not None
            self._loop.run_until_complete(self.client.aclose())
            self._loop.close()
        else:
            self.client.close()


Make = Callable[..., Driver]


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest) -> Iterator[Make]:
    drivers: list[Driver] = []

    def factory(handler: Handler, urls: list[str] | None = None, **kwargs: Any) -> Driver:
        driver = Driver(request.param, handler, urls or URLS, **kwargs)
        drivers.append(driver)
        return driver

    yield factory
    for driver in drivers:
        driver.close()


def by_host(**handlers: Handler) -> Handler:
    """Dispatch on the node (``n1``...); nodes not named answer a successful append/read."""

    def handler(r: httpx.Request) -> httpx.Response:
        host = r.url.host
        if host in handlers:
            return handlers[host](r)
        if r.method == "POST":
            return ok(appended(), 201, node=host, leader=host)
        return ok(entry(0), node=host, leader=host)

    return handler


def timeouts(request: httpx.Request) -> dict[str, float]:
    return dict(request.extensions["timeout"])


# -- attempt timeouts ------------------------------------------------------------------------


def test_attempts_get_short_connect_and_read_timeouts_by_default(make: Make) -> None:
    d = make(by_host())
    d.call("append", "orders", 1)
    d.call("get", "orders", 0)
    d.call("health")
    for request in d.rec.requests:
        assert timeouts(request) == {"connect": 0.5, "read": 2.0, "write": 2.0, "pool": 0.5}
    # The server's own timeout parameter is still the call's.
    assert d.rec.requests[0].url.params["timeout"] == "10"


def test_attempt_timeouts_are_constructor_arguments(make: Make) -> None:
    d = make(by_host(), connect_timeout=0.2, read_timeout=1.5, timeout=4)
    d.call("append", "orders", 1)
    assert timeouts(d.rec.requests[0]) == {"connect": 0.2, "read": 1.5, "write": 1.5, "pool": 0.2}
    assert d.rec.requests[0].url.params["timeout"] == "4"


def test_requests_that_ask_the_server_to_wait_get_that_wait_on_top(make: Make) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.method == "POST":
            return ok(appended(), 201)
        if r.url.path.endswith("/entries"):
            return ok({"entries": [], "next_offset": 0})
        return ok(entry(0))

    d = make(handler, read_timeout=1.0, timeout=3)
    d.call("read", "orders", 0, wait=7)  # long poll: + wait
    d.call("get", "orders", 0, min_index=5)  # the node may wait up to timeout for index 5
    d.call("read", "orders", 0, wait=2, min_index=5)  # both
    d.call("append", "orders", 1, ack="all")  # waits up to timeout for every member
    d.call("append", "orders", 1, ack="leader")  # no wait
    reads = [timeouts(r)["read"] for r in d.rec.requests]
    assert reads == [8.0, 4.0, 6.0, 4.0, 1.0]
    assert all(timeouts(r)["connect"] == 0.5 for r in d.rec.requests)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("connect_timeout", 0),
        ("read_timeout", -1),
        ("node_backoff", -0.1),
        ("node_backoff_max", 0.5),  # below node_backoff (1 s)
    ],
)
def test_bad_timeout_and_backoff_arguments_are_refused(name: str, value: float) -> None:
    transport = httpx.MockTransport(connect_error)
    with pytest.raises(ValueError, match=name):
        Client(URLS, transport=transport, **{name: value})
    with pytest.raises(ValueError, match=name):
        AsyncClient(URLS, transport=httpx.MockTransport(connect_error), **{name: value})


# -- writes: never sent vs maybe sent --------------------------------------------------------


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_a_write_never_sent_is_retried_at_once_on_another_node(
    make: Make, exc_type: type[httpx.TransportError]
) -> None:
    d = make(by_host(n1=raising(exc_type)))
    result = d.call("append", "orders", 1)
    assert result.node == "n2"
    assert d.rec.hosts() == ["n1", "n2"]
    assert d.sleeps.delays == []
    assert d.nodes.backing_off(N1) and not d.nodes.backing_off(N2)


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.RemoteProtocolError],
)
def test_a_write_that_may_have_been_sent_raises_outcome_unknown_once(
    make: Make, exc_type: type[httpx.TransportError]
) -> None:
    d = make(by_host(n1=raising(exc_type)), retries=5)
    with pytest.raises(OutcomeUnknown) as info:
        d.call("append", "orders", 1)
    assert info.value.code == "connection_lost" and info.value.status is None
    assert not info.value.definitely_not_applied
    assert d.rec.hosts() == ["n1"]  # never retried, on no node
    assert d.sleeps.delays == []


def test_the_node_behind_an_outcome_unknown_is_skipped_by_the_next_call(make: Make) -> None:
    # The reported bug: a frozen node kept getting every write, each ending OutcomeUnknown.
    d = make(by_host(n1=raising(httpx.ReadTimeout)))
    with pytest.raises(OutcomeUnknown):
        d.call("append", "orders", 1)
    assert d.nodes.backing_off(N1)
    assert d.call("append", "orders", 2).node == "n2"
    assert d.call("append", "orders", 3).node == "n2"  # and it sticks to the node that answered
    assert d.rec.hosts() == ["n1", "n2", "n2"]


def test_an_answered_504_does_not_put_the_node_in_backoff(make: Make) -> None:
    # The node answered: it is alive (the leader could not commit in time), keep using it.
    answers = iter([error(504, "outcome_unknown"), ok(appended(), 201)])
    d = make(lambda r: next(answers))
    with pytest.raises(OutcomeUnknown):
        d.call("append", "orders", 1)
    assert not d.nodes.backing_off(N1)
    d.call("append", "orders", 2)
    assert d.rec.hosts() == ["n1", "n1"]


# -- reads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.ReadError, httpx.ConnectError]
)
def test_a_read_moves_to_another_node_at_once(
    make: Make, exc_type: type[httpx.TransportError]
) -> None:
    d = make(by_host(n1=raising(exc_type), n2=raising(exc_type)))
    assert d.call("get", "orders", 0).meta.node == "n3"
    assert d.rec.hosts() == ["n1", "n2", "n3"]
    assert d.sleeps.delays == []
    d.call("get", "orders", 0)  # the next call starts at the node that answered
    assert d.rec.hosts()[-1] == "n3"


def test_a_read_with_no_node_answering_fails_after_the_rounds(make: Make) -> None:
    d = make(raising(httpx.ReadTimeout), retries=1)
    with pytest.raises(ConnectionFailed) as info:
        d.call("get", "orders", 0)
    assert info.value.sent
    # Every node is in backoff after round 1; round 2 still tries them all, the one that
    # failed longest ago first.
    assert d.rec.hosts() == ["n1", "n2", "n3", "n1", "n2", "n3"]
    assert len(d.sleeps.delays) == 1


# -- node backoff ----------------------------------------------------------------------------


def test_a_node_in_backoff_is_not_tried_while_other_nodes_answer(make: Make) -> None:
    # n1 froze; n2 and n3 are electing a leader (503). Trying n1 would only cost a timeout
    # (and, for a write, risk an unknown outcome): the call waits for the election instead.
    frozen = raising(httpx.ReadTimeout)
    electing: Handler = lambda r: error(503, "no_leader", node=r.url.host, leader=None)  # noqa: E731
    d = make(by_host(n1=frozen, n2=electing, n3=electing), retries=2)
    with pytest.raises(OutcomeUnknown):
        d.call("append", "orders", 1)
    with pytest.raises(NoLeader) as info:
        d.call("append", "orders", 2)
    assert info.value.definitely_not_applied
    assert d.rec.hosts() == ["n1"] + ["n2", "n3"] * 3
    assert len(d.sleeps.delays) == 2


def test_a_node_comes_back_once_its_backoff_expires(make: Make) -> None:
    state = {"n1": "frozen"}

    def n1(r: httpx.Request) -> httpx.Response:
        if state["n1"] == "frozen":
            raise httpx.ReadTimeout("timed out", request=r)
        return ok(appended(), 201, node="n1", leader="n1")

    electing: Handler = lambda r: error(503, "no_leader", node="n2", leader=None)  # noqa: E731
    d = make(by_host(n1=n1, n2=electing), urls=[N1, N2], retries=1, node_backoff=1.0)
    with pytest.raises(OutcomeUnknown):
        d.call("append", "orders", 1)
    state["n1"] = "back"
    with pytest.raises(NoLeader):  # n1 still in backoff: skipped
        d.call("append", "orders", 2)
    assert "n1" not in d.rec.hosts()[1:]
    d.clock.advance(1.0)
    assert d.call("append", "orders", 3).node == "n1"
    assert not d.nodes.backing_off(N1)


def test_any_http_answer_ends_a_nodes_backoff(make: Make) -> None:
    d = make(lambda r: error(503, "no_leader", leader=None), urls=[N1], retries=0)
    d.nodes.failed(N1)
    with pytest.raises(NoLeader):  # the only node: tried although in backoff
        d.call("append", "orders", 1)
    assert not d.nodes.backing_off(N1)  # it answered: alive, even if it could not serve


def test_node_backoff_doubles_per_failure_up_to_the_max_and_an_answer_resets_it(
    make: Make,
) -> None:
    d = make(by_host(n1=raising(httpx.ConnectError)), node_backoff=0.5, node_backoff_max=3.0)
    periods = []
    for _ in range(5):
        assert d.call("get", "orders", 0).meta.node == "n2"
        periods.append(d.nodes._health[N1].until - d.clock.now)
        d.clock.advance(10)  # n1's backoff runs out; n2 stays preferred...
        d.nodes._preferred = 0  # ...so make the next call start at n1 again
    assert periods == [0.5, 1.0, 2.0, 3.0, 3.0]
    d.rec.handler = by_host()
    assert d.call("get", "orders", 0).meta.node == "n1"
    assert N1 not in d.nodes._health  # reset: the next failure starts at 0.5 s again


def test_when_every_node_is_in_backoff_the_least_recently_failed_is_tried_first(
    make: Make,
) -> None:
    d = make(by_host())
    for url in (N2, N1, N3):  # n2 failed longest ago
        d.nodes.failed(url)
        d.clock.advance(0.1)
    assert d.call("append", "orders", 1).node == "n2"
    assert d.rec.hosts() == ["n2"]


def test_a_leader_hint_naming_a_node_in_backoff_is_not_followed(make: Make) -> None:
    # n2 still believes the frozen n1 leads; the client goes on to n3 instead of back to n1.
    def n2(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/v1/cluster":
            return ok(cluster_body(leader="n1"), node="n2", leader="n1")
        return error(503, "no_leader", node="n2", leader="n1")

    d = make(by_host(n1=raising(httpx.ReadTimeout), n2=n2))
    d.nodes.failed(N1)
    d.nodes.worked(N2)
    assert d.call("append", "orders", 1).node == "n3"
    assert [(r.url.host, r.url.path) for r in d.rec.requests] == [
        ("n2", "/v1/logs/orders/entries"),
        ("n2", "/v1/cluster"),
        ("n3", "/v1/logs/orders/entries"),
    ]


# -- the call's deadline ---------------------------------------------------------------------


def test_no_retry_starts_after_the_call_deadline(make: Make) -> None:
    # timeout=1: deadline 1 + GRACE (5) = 6 s after the start; the sleeps move the clock.
    d = make(lambda r: error(503, "no_leader", leader=None), retries=1000, backoff=0.5, timeout=1)
    with pytest.raises(NoLeader):
        d.call("append", "orders", 1)
    assert sum(d.sleeps.delays) < 6.0
    assert 3 < len(d.rec.requests) < 20


# -- get on a missing log --------------------------------------------------------------------


def missing_log(r: httpx.Request) -> httpx.Response:
    if r.url.path == "/v1/logs/ghost/entries/0":
        return error(404, "offset_not_found", "no entry at 0", next_offset=0)
    if r.url.path == "/v1/logs/ghost":
        return error(404, "log_not_found", "log 'ghost' does not exist")
    raise AssertionError(r.url.path)


def test_get_on_a_log_that_does_not_exist_raises_log_not_found(make: Make) -> None:
    d = make(missing_log)
    with pytest.raises(LogNotFound) as info:
        d.call("get", "ghost", 0, consistency="any", max_lag=4)
    assert not isinstance(info.value, OffsetNotFound)
    assert info.value.status == 404 and info.value.code == "log_not_found"
    first, check = d.rec.requests
    assert check.url.path == "/v1/logs/ghost"
    assert dict(check.url.params) == dict(first.url.params)  # the same consistency and limits
    assert dict(check.url.params)["consistency"] == "any"


def test_get_past_the_end_of_an_existing_log_stays_offset_not_found(make: Make) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path.endswith("/entries/0"):
            return error(404, "offset_not_found", next_offset=0)  # an emptied log
        if r.url.path.endswith("/entries/9"):
            return error(404, "offset_not_found", next_offset=3)
        info = {"log": "orders", "first_offset": 0, "next_offset": 0, "count": 0, "bytes": 0}
        return ok(info)

    d = make(handler)
    with pytest.raises(OffsetNotFound) as info:
        d.call("get", "orders", 9)
    assert info.value.next_offset == 3
    assert len(d.rec.requests) == 1  # next_offset 3: the log exists, no follow-up
    with pytest.raises(OffsetNotFound):
        d.call("get", "orders", 0)
    assert d.rec.paths()[1:] == ["/v1/logs/orders/entries/0", "/v1/logs/orders"]


def test_a_failed_log_check_keeps_the_original_offset_not_found(make: Make) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path.endswith("/entries/0"):
            return error(404, "offset_not_found", next_offset=0)
        raise httpx.ConnectError("refused", request=r)

    d = make(handler, urls=[N1], retries=0)
    with pytest.raises(OffsetNotFound):
        d.call("get", "orders", 0)
    assert d.rec.paths() == ["/v1/logs/orders/entries/0", "/v1/logs/orders"]
