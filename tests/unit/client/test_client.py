"""raftlog.client.Client against emulated nodes (httpx.MockTransport, no sockets)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from raftlog import client as rc
from raftlog.client import (
    Accepted,
    AppendResult,
    Client,
    ClusterStatus,
    ConnectionFailed,
    EntriesPage,
    Entry,
    InvalidRequest,
    LogInfo,
    LogsPage,
    NoLeader,
    OffsetMismatch,
    OutcomeUnknown,
    Overloaded,
    RaftlogClientError,
    ResponseMeta,
    UnexpectedResponse,
    UnexpectedWriteResponse,
    resolve_urls,
)

from ._fakes import (
    URLS,
    Recorder,
    Sleeps,
    appended,
    body_of,
    cluster_body,
    connect_error,
    entry,
    error,
    ok,
)

pytestmark = pytest.mark.unit


def make(handler: Any, urls: Any = None, **kwargs: Any) -> tuple[Client, Recorder, Sleeps]:
    recorder = handler if isinstance(handler, Recorder) else Recorder(handler)
    kwargs.setdefault("backoff", 0.001)
    client = Client(urls or URLS[:1], transport=recorder.transport(), **kwargs)
    sleeps = Sleeps()
    client._sleep = sleeps
    return client, recorder, sleeps


# -- typed results ---------------------------------------------------------------------------


def test_append_sends_the_contract_request_and_parses_result_and_meta() -> None:
    client, rec, _ = make(lambda r: ok(appended(41), 201, node="n2", leader="n1"), token="s3")
    result = client.append("orders", {"id": 42}, key="u-17", expected_offset=41, timeout=2.5)
    assert result == AppendResult("orders", 41, 41, 1, 1207, 3, node="n2")
    assert result.meta == ResponseMeta("n2", "c0ffee", 3, 1207, "n1", 12)
    (request,) = rec.requests
    assert request.method == "POST"
    assert request.url.path == "/v1/logs/orders/entries"
    assert dict(request.url.params) == {"ack": "quorum", "timeout": "2.5", "expected_offset": "41"}
    assert request.content == b'{"value":{"id":42},"key":"u-17"}'
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == "Bearer s3"
    assert "idempotency-key" not in request.headers


def test_append_null_value_and_idempotency_key() -> None:
    client, rec, _ = make(lambda r: ok(appended(0), 201))
    client.append("orders", None, idempotency_key="k-1")
    assert body_of(rec.requests[0]) == {"value": None}
    assert rec.requests[0].headers["idempotency-key"] == "k-1"


def test_ack_leader_returns_accepted() -> None:
    body = {"log": "orders", "accepted": True, "message": "can be lost"}
    client, rec, _ = make(lambda r: ok(body, 202))
    result = client.append("orders", "x", ack="leader")
    assert result == Accepted("orders", "can be lost")
    assert rec.requests[0].url.params["ack"] == "leader"


def test_append_batch_body_mixes_values_and_value_key_tuples() -> None:
    client, rec, _ = make(lambda r: ok(appended(5, 3), 201))
    result = client.append_batch("orders", [("a", "k1"), {"b": 1}, ("c", None)])
    assert (result.offset, result.last_offset, result.count) == (5, 7, 3)
    assert body_of(rec.requests[0]) == {
        "entries": [{"value": "a", "key": "k1"}, {"value": {"b": 1}}, {"value": "c"}]
    }


def test_a_value_that_is_not_json_is_refused_before_sending() -> None:
    client, rec, _ = make(lambda r: ok(appended(), 201))
    with pytest.raises(InvalidRequest) as info:
        client.append("orders", float("nan"))
    assert info.value.definitely_not_applied and info.value.status is None
    with pytest.raises(InvalidRequest):
        client.append("orders", object())
    assert rec.requests == []


def test_get_read_logs_log_info_cluster_parse_typed_results() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        path = r.url.path
        if path == "/v1/logs/orders/entries/7":
            return ok(entry(7, {"x": 1}, key="k"))
        if path == "/v1/logs/orders/entries":
            return ok({"entries": [entry(0), entry(1)], "next_offset": 2})
        if path == "/v1/logs":
            info = {"log": "orders", "first_offset": 0, "next_offset": 2, "count": 2, "bytes": 8}
            return ok({"logs": [info], "next_after": "orders"})
        if path == "/v1/logs/orders":
            return ok(
                {"log": "orders", "first_offset": 0, "next_offset": 2, "count": 2, "bytes": 8}
            )
        if path == "/v1/cluster":
            return ok(cluster_body())
        raise AssertionError(path)

    client, rec, _ = make(handler)
    e = client.get("orders", 7, consistency="any", min_index=105, max_lag=3, max_staleness_ms=500)
    assert e == Entry(7, {"x": 1}, "k", 1732245600007, 107, 3)
    assert e.meta.applied_index == 1207
    assert dict(rec.requests[-1].url.params) == {
        "consistency": "any",
        "timeout": "10",
        "min_index": "105",
        "max_lag": "3",
        "max_staleness_ms": "500",
    }

    page = client.read("orders", 0, 2, wait=1.5, consistency="leader")
    assert isinstance(page, EntriesPage)
    assert [x.offset for x in page.entries] == [0, 1] and page.next_offset == 2
    assert page.meta.node == "n1"
    params = rec.requests[-1].url.params
    assert (params["from"], params["limit"], params["wait"], params["consistency"]) == (
        "0",
        "2",
        "1.5",
        "leader",
    )

    logs = client.logs(after="a", limit=10)
    assert logs == LogsPage((LogInfo("orders", 0, 2, 2, 8),), "orders")
    assert dict(rec.requests[-1].url.params) == {"after": "a", "limit": "10"}
    assert client.log_info("orders") == LogInfo("orders", 0, 2, 2, 8)

    status = client.cluster()
    assert isinstance(status, ClusterStatus)
    assert (status.leader, status.term, status.commit_index) == ("n1", 3, 1210)
    n2 = status.node("n2")
    assert n2 is not None and n2.applied_index is None and n2.match_index == 1209
    assert status.raw["cluster_id"] == "c0ffee"


def test_log_names_are_path_quoted() -> None:
    client, rec, _ = make(lambda r: ok({"entries": [], "next_offset": 0}))
    client.read("a/b", 0)
    assert rec.requests[0].url.raw_path.startswith(b"/v1/logs/a%2Fb/entries")


def test_a_2xx_body_off_the_contract_is_unexpected() -> None:
    client, _, _ = make(lambda r: ok({"entries": "nope"}))
    with pytest.raises(UnexpectedResponse) as info:
        client.read("orders")
    assert info.value.definitely_not_applied  # a read

    client, _, _ = make(lambda r: httpx.Response(201, content=b"not json"))
    with pytest.raises(UnexpectedWriteResponse) as info2:
        client.append("orders", 1)
    assert isinstance(info2.value, OutcomeUnknown) and not info2.value.definitely_not_applied


def test_missing_headers_give_empty_meta() -> None:
    client, _, _ = make(lambda r: httpx.Response(201, json=appended()))
    meta = client.append("orders", 1).meta
    assert meta == ResponseMeta(None, None, -1, -1, None, -1)


# -- finding a live node, following the leader -----------------------------------------------


def test_connect_error_moves_on_to_the_next_node_and_sticks_to_it() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.host == "n1":
            return connect_error(r)
        return ok(appended(), 201, node=r.url.host)

    client, rec, sleeps = make(handler, URLS)
    assert client.append("orders", 1).node == "n2"
    assert client.append("orders", 2).node == "n2"
    assert rec.hosts() == ["n1", "n2", "n2"]
    assert sleeps.delays == []  # moving on to an untried node is immediate


def test_all_nodes_unreachable_raises_connection_failed_after_the_retries() -> None:
    client, rec, sleeps = make(connect_error, URLS, retries=2)
    with pytest.raises(ConnectionFailed) as info:
        client.append("orders", 1)
    assert info.value.definitely_not_applied and not info.value.sent
    assert len(rec.requests) == 3 * 3  # every node, in 1 + retries rounds
    assert len(sleeps.delays) == 2


def test_503_follows_the_leader_named_in_x_raftlog_leader() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        host = r.url.host
        if r.url.path == "/v1/cluster":
            return ok(cluster_body(leader="n3"), node=host, leader="n3")
        if host == "n3":
            return ok(appended(9), 201, node="n3", leader="n3")
        return error(503, "no_quorum", node=host, leader="n3")

    client, rec, sleeps = make(handler, URLS)
    assert client.append("orders", 1).offset == 9
    assert [(r.url.host, r.url.path) for r in rec.requests] == [
        ("n1", "/v1/logs/orders/entries"),
        ("n1", "/v1/cluster"),
        ("n3", "/v1/logs/orders/entries"),
    ]
    assert sleeps.delays == []
    client.append("orders", 2)  # the leader is now the node the client starts with
    assert rec.hosts()[-1] == "n3"


def test_503_without_a_known_leader_tries_the_next_node() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.host == "n1":
            return error(503, "no_leader", leader=None)
        return ok(appended(), 201, node=r.url.host)

    client, rec, _ = make(handler, URLS)
    client.append("orders", 1)
    assert rec.hosts() == ["n1", "n2"]


def test_307_is_followed_with_the_same_method_body_and_token() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.host == "n1":
            location = "http://n2:8002/v1/logs/orders/entries?ack=all&timeout=10"
            return httpx.Response(307, headers={"Location": location})
        return ok(appended(3), 201, node="n2")

    client, rec, _ = make(handler, URLS, token="tok")
    assert client.append("orders", {"a": 1}, ack="all").offset == 3
    first, second = rec.requests
    assert (second.method, second.url.host) == ("POST", "n2")
    assert second.content == first.content == b'{"value":{"a":1}}'
    assert second.headers["authorization"] == "Bearer tok"  # httpx would drop it
    assert second.url.params["ack"] == "all"


def test_307_location_without_a_query_keeps_the_parameters() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.host == "n1":
            return httpx.Response(307, headers={"Location": "http://n2:8002/v1/logs/o/entries"})
        return ok(appended(), 201)

    client, rec, _ = make(handler, URLS)
    client.append("o", 1, expected_offset=4)
    assert rec.requests[1].url.params["expected_offset"] == "4"


def test_urls_from_raftlog_url_and_normalized(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAFTLOG_URL", " http://a:1/ , b:2,,http://a:1")
    assert resolve_urls() == ["http://a:1", "http://b:2"]
    assert Client(transport=httpx.MockTransport(connect_error)).urls == ["http://a:1", "http://b:2"]
    monkeypatch.delenv("RAFTLOG_URL")
    assert resolve_urls() == [rc.DEFAULT_URL]
    with pytest.raises(ValueError):
        resolve_urls("ftp://x:1")
    with pytest.raises(ValueError):
        resolve_urls([])


# -- retries ---------------------------------------------------------------------------------


def test_503_is_retried_with_exponential_backoff() -> None:
    answers = iter([error(503, "no_leader", leader=None)] * 3 + [ok(appended(), 201)])
    client, rec, sleeps = make(lambda r: next(answers), backoff=0.1, retries=3)
    client.append("orders", 1)
    assert len(rec.requests) == 4
    assert len(sleeps.delays) == 3
    for n, delay in enumerate(sleeps.delays):
        assert 0.05 * 2**n <= delay <= 0.1 * 2**n  # jitter in [half, full]


def test_503_retries_are_bounded() -> None:
    client, rec, sleeps = make(lambda r: error(503, "no_leader", leader=None), retries=2)
    with pytest.raises(NoLeader) as info:
        client.append("orders", 1)
    assert info.value.definitely_not_applied and info.value.status == 503
    assert len(rec.requests) == 3 and len(sleeps.delays) == 2


def test_429_honours_retry_after_up_to_a_cap() -> None:
    answers = iter(
        [
            error(429, "overloaded", extra_headers={"Retry-After": "1"}),
            error(429, "overloaded", extra_headers={"Retry-After": "3600"}),
            ok(appended(), 201),
        ]
    )
    client, rec, sleeps = make(lambda r: next(answers), URLS)
    client.append("orders", 1)
    assert rec.hosts() == ["n1", "n1", "n1"]  # the node asked us to come back
    assert sleeps.delays[0] >= 1.0
    assert sleeps.delays[1] == rc._Core.RETRY_AFTER_CAP == 5.0


def test_overloaded_exposes_retry_after_when_retries_run_out() -> None:
    client, _, _ = make(
        lambda r: error(429, "overloaded", extra_headers={"Retry-After": "2"}), retries=0
    )
    with pytest.raises(Overloaded) as info:
        client.append("orders", 1)
    assert info.value.retry_after == 2.0 and info.value.definitely_not_applied


def test_4xx_are_never_retried() -> None:
    client, rec, sleeps = make(lambda r: error(409, "offset_mismatch", next_offset=12), URLS)
    with pytest.raises(OffsetMismatch) as info:
        client.append("orders", 1, expected_offset=3)
    assert info.value.next_offset == 12
    assert len(rec.requests) == 1 and sleeps.delays == []


def test_504_outcome_unknown_is_never_retried() -> None:
    client, rec, sleeps = make(lambda r: error(504, "outcome_unknown"), URLS, retries=5)
    with pytest.raises(OutcomeUnknown) as info:
        client.append("orders", 1)
    assert len(rec.requests) == 1
    assert sleeps.delays == []
    assert not info.value.definitely_not_applied and info.value.code == "outcome_unknown"


@pytest.mark.parametrize(
    "exc_type",
    [httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout, httpx.WriteError],
)
def test_broken_connection_after_send_is_outcome_unknown_for_a_write(exc_type: type) -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        raise exc_type("connection reset", request=r)

    client, rec, _ = make(handler, URLS, retries=5)
    with pytest.raises(OutcomeUnknown) as info:
        client.append("orders", 1)
    assert len(rec.requests) == 1
    assert info.value.code == "connection_lost" and not info.value.definitely_not_applied
    assert not isinstance(info.value, ConnectionFailed)


def test_broken_connection_is_retried_for_a_read() -> None:
    calls = iter([httpx.ReadError, httpx.ReadTimeout, None])

    def handler(r: httpx.Request) -> httpx.Response:
        exc = next(calls)
        if exc is not None:
            raise exc("reset", request=r)
        return ok(entry(0))

    client, rec, _ = make(handler, URLS)
    assert client.get("orders", 0).offset == 0
    assert rec.hosts() == ["n1", "n2", "n3"]


def test_read_gives_connection_failed_when_every_attempt_breaks() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("reset", request=r)

    client, rec, _ = make(handler, retries=1)
    with pytest.raises(ConnectionFailed) as info:
        client.read("orders")
    assert info.value.sent and len(rec.requests) == 2


def test_an_undocumented_status_on_a_write_is_outcome_unknown_and_not_retried() -> None:
    client, rec, _ = make(lambda r: error(500, "internal"), URLS)
    with pytest.raises(UnexpectedWriteResponse) as info:
        client.append("orders", 1)
    assert isinstance(info.value, OutcomeUnknown) and isinstance(info.value, UnexpectedResponse)
    assert not info.value.definitely_not_applied and info.value.status == 500
    assert len(rec.requests) == 1


def test_an_undocumented_status_on_a_read_is_unexpected_response() -> None:
    client, _, _ = make(lambda r: httpx.Response(418, text="teapot"))
    with pytest.raises(UnexpectedResponse) as info:
        client.get("orders", 0)
    assert not isinstance(info.value, OutcomeUnknown)
    assert info.value.code == "http_418" and "teapot" in info.value.message


def test_502_is_retried_for_reads_only() -> None:
    answers = iter([httpx.Response(502), ok(entry(0))])
    client, rec, _ = make(lambda r: next(answers), URLS)
    client.get("orders", 0)
    assert len(rec.requests) == 2
    client, rec, _ = make(lambda r: httpx.Response(502), URLS)
    with pytest.raises(OutcomeUnknown):
        client.append("orders", 1)
    assert len(rec.requests) == 1


# -- tail ------------------------------------------------------------------------------------


def test_tail_long_polls_from_next_offset_and_stops_at_max_entries() -> None:
    pages = iter(
        [
            {"entries": [entry(0), entry(1)], "next_offset": 2},
            {"entries": [], "next_offset": 2},  # the long poll ran out
            {"entries": [entry(2), entry(3)], "next_offset": 4},
        ]
    )
    client, rec, _ = make(lambda r: ok(next(pages)))
    got = [e.offset for e in client.tail("orders", 0, poll_wait=5, max_entries=3)]
    assert got == [0, 1, 2]
    froms = [r.url.params["from"] for r in rec.requests]
    assert froms == ["0", "2", "2"]
    params = rec.requests[0].url.params
    assert (params["wait"], params["consistency"]) == ("5", "any")
    assert [r.url.params["limit"] for r in rec.requests] == ["3", "1", "1"]


def test_tail_stops_when_stop_says_so() -> None:
    client, rec, _ = make(lambda r: ok({"entries": [], "next_offset": 0}))
    polls = iter([False, False, True])
    assert list(client.tail("orders", stop=lambda: next(polls))) == []
    assert len(rec.requests) == 2


def test_tail_raises_on_trimmed_instead_of_skipping() -> None:
    client, _, _ = make(lambda r: error(410, "trimmed", first_offset=50))
    with pytest.raises(rc.Trimmed) as info:
        list(client.tail("orders", 0, max_entries=1))
    assert info.value.first_offset == 50


# -- health ----------------------------------------------------------------------------------


def test_health_and_ready() -> None:
    def handler(r: httpx.Request) -> httpx.Response:
        if r.url.path == "/healthz":
            return ok({"status": "ok"})
        return error(503, "not_ready", "no leader known")

    client, rec, sleeps = make(handler, URLS)
    assert client.health() is True
    assert client.ready() is False
    assert rec.hosts() == ["n1", "n1"] and sleeps.delays == []
    down, _, _ = make(connect_error)
    assert down.health() is False and down.ready() is False


def test_context_manager_closes() -> None:
    with make(lambda r: ok({"status": "ok"}))[0] as client:
        assert client.health()
    assert client._http.is_closed


def test_errors_are_raftlog_client_errors_with_node() -> None:
    client, _, _ = make(lambda r: error(400, "invalid_request", "bad log name", field="log"))
    with pytest.raises(RaftlogClientError) as info:
        client.read("bad name!")
    assert isinstance(info.value, InvalidRequest)
    assert info.value.node == "n1" and info.value.details == {"field": "log"}
    assert "bad log name" in str(info.value)
