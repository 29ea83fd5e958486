"""The sans-IO core alone (fed responses by hand), and the two drivers over it: ``Client``
and ``AsyncClient`` given the same scripted answers take the same decisions (the same
requests to the same nodes, the same sleeps, the same result or error class).

MockTransport, no sockets; a fake clock and a fixed jitter make every plan deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from raftlog.client import (
    AppendResult,
    AsyncClient,
    Client,
    ConnectionFailed,
    EntriesPage,
    NoLeader,
    OutcomeUnknown,
)
from raftlog.client.core import Emit, Plan, Request, Sleep, _Core

from ._fakes import (
    URLS,
    ClockSleeps,
    FakeClock,
    appended,
    cluster_body,
    entry,
    error,
    ok,
)

pytestmark = pytest.mark.unit

N1, N2, N3 = URLS

# A scripted answer: a response, or an httpx transport exception class to raise.
Answer = httpx.Response | type[httpx.TransportError]


def redirect(to: str) -> httpx.Response:
    return httpx.Response(307, headers={"Location": to})


class Script:
    """A MockTransport handler answering requests in order from a list, whatever the node;
    records (method, URL, node) of each request."""

    def __init__(self, answers: Sequence[Answer]) -> None:
        self.answers = list(answers)
        self.seen: list[tuple[str, str, str]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, str(request.url), request.url.host))
        answer = self.answers.pop(0)
        if isinstance(answer, httpx.Response):
            return answer
        raise answer("scripted failure", request=request)


def run_sync(
    answers: Callable[[], Sequence[Answer]], call: Callable[[Any], Any], **kw: Any
) -> dict[str, Any]:
    script, clock = Script(answers()), FakeClock()
    sleeps = ClockSleeps(clock)
    client = Client(URLS, transport=httpx.MockTransport(script), **kw)
    client._sleep = sleeps
    client._core.nodes.clock = clock
    client._core.jitter = lambda low, high: high
    try:
        outcome: Any = call(client)
    except Exception as exc:  # the outcome under comparison
        outcome = type(exc)
    finally:
        client.close()
    return {"requests": script.seen, "sleeps": sleeps.delays, "outcome": outcome}


def run_async(
    answers: Callable[[], Sequence[Answer]], call: Callable[[Any], Any], **kw: Any
) -> dict[str, Any]:
    script, clock = Script(answers()), FakeClock()
    sleeps = ClockSleeps(clock)

    async def main() -> Any:
        client = AsyncClient(URLS, transport=httpx.MockTransport(script), **kw)
        client._sleep = sleeps.async_sleep
        client._core.nodes.clock = clock
        client._core.jitter = lambda low, high: high
        try:
            return await call(client)
        except Exception as exc:  # the outcome under comparison
            return type(exc)
        finally:
            await client.aclose()

    outcome = asyncio.run(main())
    return {"requests": script.seen, "sleeps": sleeps.delays, "outcome": outcome}


# Each scenario: the answers (made anew per run: a response is read once), and the call.
SCENARIOS: dict[str, tuple[Callable[[], list[Answer]], Callable[[Any], Any]]] = {
    # 503 no_leader (no leader named) -> next node, which redirects to the leader, which is
    # overloaded (429, Retry-After 0.5) -> sleep, same node again, redirect, 201.
    "no_leader_redirect_overloaded_then_201": (
        lambda: [
            error(503, "no_leader", node="n1", leader=None),
            redirect(f"{N3}/v1/logs/orders/entries"),
            error(429, "overloaded", node="n3", leader="n3", extra_headers={"Retry-After": "0.5"}),
            redirect(f"{N3}/v1/logs/orders/entries"),
            ok(appended(7), status=201, node="n3", leader="n3"),
        ],
        lambda c: c.append("orders", {"id": 1}),
    ),
    # 503 naming a leader whose URL is unknown -> GET /v1/cluster on the same node, then the
    # leader; the write times out there after it was sent: outcome unknown, no retry.
    "leader_lookup_then_write_outcome_unknown": (
        lambda: [
            error(503, "no_leader", node="n3", leader="n2"),
            ok(cluster_body(leader="n2"), node="n3", leader="n2"),
            httpx.ReadTimeout,
        ],
        lambda c: c.append("orders", "x"),
    ),
    # A read: refused connection, then 502, then the answer; no sleeps within a round.
    "read_moves_on_after_connect_error_and_502": (
        lambda: [
            httpx.ConnectError,
            error(502, "bad_gateway", node="n2"),
            ok({"entries": [entry(0)], "next_offset": 1}, node="n3"),
        ],
        lambda c: c.read("orders", 0, 10),
    ),
    # Every node refuses with 503 for two rounds: NoLeader after one backoff sleep.
    "retries_run_out": (
        lambda: [error(503, "no_leader", node=f"n{i % 3 + 1}", leader=None) for i in range(6)],
        lambda c: c.append("orders", 1),
    ),
    # A write whose connection was refused is retried (never sent), elsewhere.
    "refused_write_is_retried": (
        lambda: [httpx.ConnectError, ok(appended(0), status=201, node="n2")],
        lambda c: c.append("orders", 1),
    ),
}

EXPECTED_OUTCOME: dict[str, Any] = {
    "no_leader_redirect_overloaded_then_201": AppendResult,
    "leader_lookup_then_write_outcome_unknown": OutcomeUnknown,
    "read_moves_on_after_connect_error_and_502": EntriesPage,
    "retries_run_out": NoLeader,
    "refused_write_is_retried": AppendResult,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_sync_and_async_clients_take_the_same_decisions(name: str) -> None:
    answers, call = SCENARIOS[name]
    sync = run_sync(answers, call, retries=1)
    aio = run_async(answers, call, retries=1)
    assert sync["requests"] == aio["requests"]
    assert sync["sleeps"] == aio["sleeps"]
    if isinstance(sync["outcome"], type):
        assert sync["outcome"] is aio["outcome"] is EXPECTED_OUTCOME[name]
    else:
        assert sync["outcome"] == aio["outcome"]
        assert isinstance(sync["outcome"], EXPECTED_OUTCOME[name])


def test_parity_scenarios_take_the_expected_route() -> None:
    first = run_sync(*SCENARIOS["no_leader_redirect_overloaded_then_201"], retries=1)
    assert [host for _, _, host in first["requests"]] == ["n1", "n2", "n3", "n2", "n3"]
    assert first["sleeps"] == [0.5]  # Retry-After above the jittered backoff (0.1)
    lookup = run_sync(*SCENARIOS["leader_lookup_then_write_outcome_unknown"], retries=1)
    assert [(m, host) for m, _, host in lookup["requests"]] == [
        ("POST", "n1"),
        ("GET", "n1"),
        ("POST", "n2"),
    ]
    out = run_sync(*SCENARIOS["retries_run_out"], retries=1)
    assert len(out["requests"]) == 6 and out["sleeps"] == [0.1]


# -- the core alone ---------------------------------------------------------------------------


def make_core(**kw: Any) -> tuple[_Core, FakeClock]:
    clock = FakeClock()
    options: dict[str, Any] = {
        "connect_timeout": 0.5,
        "read_timeout": 2.0,
        "node_backoff": 1.0,
        "node_backoff_max": 30.0,
        "clock": clock,
        "jitter": lambda low, high: high,
    }
    options.update(kw)
    return _Core(URLS, 10.0, 3, 0.1, None, **options), clock


def answer(step: Any, response: httpx.Response) -> httpx.Response:
    """``response`` as httpx would give it for the request of ``step``."""
    assert isinstance(step, Request)
    response.request = httpx.Request(step.method, httpx.URL(step.url, params=step.params))
    return response


def append_plan(core: _Core) -> Plan[Any]:
    return core.append_one(
        "orders", {"id": 1}, None, ack="quorum", expected_offset=None, timeout=None,
        idempotency_key=None,
    )  # fmt: skip


def test_core_yields_requests_and_sleeps_and_ends_with_the_result() -> None:
    core, _ = make_core()
    plan = append_plan(core)
    step = next(plan)
    assert isinstance(step, Request)
    assert (step.method, step.url) == ("POST", f"{N1}/v1/logs/orders/entries")
    assert step.params == {"ack": "quorum", "timeout": "10"}
    assert step.body == b'{"value":{"id":1}}'
    assert step.timeout.read == 2.0 and step.timeout.connect == 0.5
    # 503 without a leader: straight on to the next node, no sleep.
    step = plan.send(answer(step, error(503, "no_leader", leader=None)))
    assert isinstance(step, Request) and step.url == f"{N2}/v1/logs/orders/entries"
    # Refused (never sent): retried on the third node; n2 goes into backoff.
    step = plan.send(httpx.ConnectError("refused"))
    assert isinstance(step, Request) and step.url == f"{N3}/v1/logs/orders/entries"
    assert core.nodes.backing_off(N2)
    # 429 with Retry-After: the core asks for the sleep, then the same node again.
    step = plan.send(
        answer(step, error(429, "overloaded", node="n3", extra_headers={"Retry-After": "1"}))
    )
    assert step == Sleep(1.0)
    step = plan.send(None)
    assert isinstance(step, Request) and step.url == f"{N3}/v1/logs/orders/entries"
    with pytest.raises(StopIteration) as done:
        plan.send(answer(step, ok(appended(4), status=201, node="n3")))
    result = done.value.value
    assert isinstance(result, AppendResult) and result.offset == 4
    assert core.nodes.preferred() == N3


def test_core_classifies_a_write_lost_after_sending_as_outcome_unknown() -> None:
    core, _ = make_core()
    plan = append_plan(core)
    next(plan)
    with pytest.raises(OutcomeUnknown) as info:
        plan.send(httpx.ReadTimeout("slow"))
    assert not info.value.definitely_not_applied
    assert core.nodes.backing_off(N1)  # the next call goes elsewhere


def test_core_retries_a_read_after_a_timeout_and_gives_up_at_the_deadline() -> None:
    core, clock = make_core()
    plan = core.read(
        "orders", 0, 10, wait=None, consistency="quorum", timeout=1.0
    )  # deadline: 1 + GRACE = 6 s
    step = next(plan)
    for url in (N2, N3):
        step = plan.send(httpx.ReadTimeout("slow"))
        assert isinstance(step, Request) and str(step.url).startswith(url)
    step = plan.send(httpx.ReadTimeout("slow"))
    assert isinstance(step, Sleep)  # the round is over
    clock.advance(10.0)  # past the deadline while sleeping
    step = plan.send(None)
    assert isinstance(step, Request)  # the next round had started before the deadline
    with pytest.raises(ConnectionFailed) as info:
        plan.send(httpx.ReadTimeout("slow"))
    assert info.value.definitely_not_applied


def test_core_follows_redirects_keeping_method_body_and_parameters() -> None:
    core, _ = make_core()
    plan = append_plan(core)
    step = next(plan)
    step2 = plan.send(answer(step, redirect(f"{N3}/v1/logs/orders/entries")))
    assert isinstance(step, Request) and isinstance(step2, Request)
    assert (step2.method, step2.body, step2.params) == ("POST", step.body, None)
    assert str(step2.url) == f"{N3}/v1/logs/orders/entries?ack=quorum&timeout=10"


def test_core_tail_emits_entries_and_stops_after_max_entries() -> None:
    core, _ = make_core()
    plan = core.tail(
        "orders", 0, consistency="any", poll_wait=1, stop=None, max_entries=2, timeout=None
    )
    step = next(plan)
    assert isinstance(step, Request) and step.params is not None
    assert step.params["limit"] == "2" and step.params["wait"] == "1"
    page = {"entries": [entry(0), entry(1)], "next_offset": 2}
    emitted = plan.send(answer(step, ok(page)))
    assert isinstance(emitted, Emit) and emitted.entry.offset == 0
    emitted = plan.send(None)
    assert isinstance(emitted, Emit) and emitted.entry.offset == 1
    with pytest.raises(StopIteration):
        plan.send(None)
