"""raftlog.state.apply on a real LMDB environment: execute's rules for each command,
load_log and prune_results. Each test stages its writes in one write transaction, as
StateMachine.apply does, and reads the staged content back in the same transaction."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from raftlog.commands import (
    COMMAND_VERSION,
    Append,
    AppendEntry,
    Barrier,
    Command,
    DeleteLog,
    InvalidCommand,
    SetClusterMeta,
    Trim,
)
from raftlog.errors import UnsupportedFormat
from raftlog.state.apply import Decoded, Txn, execute, load_log, prune_results
from raftlog.state.store import (
    K_CLUSTER,
    Handles,
    entry_key,
    entry_size,
    open_env,
    pack_cluster,
    pack_result,
    u64,
    unpack_cluster,
    unpack_entry,
)
from raftlog.state.types import (
    Appended,
    BarrierDone,
    ClusterMeta,
    ClusterMetaSet,
    LogDeleted,
    LogInfo,
    Rejected,
    Trimmed,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def handles(tmp_path: Path) -> Iterator[Handles]:
    h = open_env(tmp_path / "state", map_size=16 << 20, sync=False)
    try:
        yield h
    finally:
        h.env.close()


@pytest.fixture
def txn(handles: Handles) -> Iterator[Txn]:
    t = handles.env.begin(write=True)
    try:
        yield t
    finally:
        t.abort()


def v1(cmd: Command) -> Decoded:
    return (1, cmd)


def append(log: str, *values: bytes, ts: int = 0, expected: int | None = None) -> Decoded:
    entries = tuple(AppendEntry(v, f"k{i}" if i % 2 else None) for i, v in enumerate(values))
    return v1(Append(log, entries, ts, expected_offset=expected))


def entries_of(txn: Txn, h: Handles, log: str) -> list[tuple[int, bytes]]:
    """(offset, value_json) of every stored entry of ``log``."""
    out = []
    for key, raw in txn.cursor(db=h.entries):
        if key.startswith(entry_key(log, 0)[:-8]):
            e = unpack_entry(key, raw)
            out.append((e.offset, e.value_json))
    return out


# -- execute: the envelope -----------------------------------------------------------------


def test_an_invalid_command_is_rejected_with_its_field(txn: Txn, handles: Handles) -> None:
    result = execute(txn, handles, 5, 2, InvalidCommand("log", "is not a valid log name"))
    assert result == Rejected(
        "invalid_command",
        "invalid command: field 'log': is not a valid log name",
        {"field": "log"},
        5,
    )
    assert load_log(txn, handles, "a") is None


def test_a_version_not_enabled_is_rejected_and_writes_nothing(txn: Txn, handles: Handles) -> None:
    result = execute(
        txn, handles, 3, 1, (COMMAND_VERSION + 1, Append("a", (AppendEntry(b"1"),), 0))
    )
    assert isinstance(result, Rejected) and result.code == "version_not_enabled"
    assert result.details == {"version": COMMAND_VERSION + 1, "enabled_version": 1}
    assert result.index == 3
    assert load_log(txn, handles, "a") is None and entries_of(txn, handles, "a") == []


# -- Append ---------------------------------------------------------------------------------


def test_append_assigns_consecutive_offsets_and_updates_the_log(txn: Txn, handles: Handles) -> None:
    first = execute(txn, handles, 1, 1, append("a", b"1", b'"two"', ts=100))
    assert first == Appended("a", 0, 1, 2, 1, 1, 100)
    second = execute(txn, handles, 2, 1, append("a", b"null", ts=200))
    assert second == Appended("a", 2, 2, 1, 2, 1, 200)
    size = entry_size(b"1", None) + entry_size(b'"two"', "k1") + entry_size(b"null", None)
    assert load_log(txn, handles, "a") == LogInfo("a", 0, 3, 3, size, 200)
    assert entries_of(txn, handles, "a") == [(0, b"1"), (1, b'"two"'), (2, b"null")]
    raw = txn.get(entry_key("a", 1), db=handles.entries)
    assert raw is not None
    stored = unpack_entry(entry_key("a", 1), raw)
    assert (stored.key, stored.timestamp_ms, stored.index, stored.term) == ("k1", 100, 1, 1)
    # another log is independent
    assert execute(txn, handles, 3, 2, append("b", b"0")) == Appended("b", 0, 0, 1, 3, 2, 0)


def test_append_timestamps_never_go_backwards_within_a_log(txn: Txn, handles: Handles) -> None:
    execute(txn, handles, 1, 1, append("a", b"1", ts=500))
    result = execute(txn, handles, 2, 1, append("a", b"2", ts=400))  # a leader's clock stepped back
    assert isinstance(result, Appended) and result.timestamp_ms == 500
    info = load_log(txn, handles, "a")
    assert info is not None and info.last_timestamp_ms == 500


def test_append_with_expected_offset(txn: Txn, handles: Handles) -> None:
    assert isinstance(execute(txn, handles, 1, 1, append("a", b"1", expected=0)), Appended)
    before = load_log(txn, handles, "a")
    result = execute(txn, handles, 2, 1, append("a", b"2", expected=0))
    assert result == Rejected(
        "offset_mismatch",
        "log 'a': expected_offset 0 but the next offset is 1",
        {"next_offset": 1},
        2,
    )
    assert load_log(txn, handles, "a") == before and entries_of(txn, handles, "a") == [(0, b"1")]
    assert execute(txn, handles, 3, 1, append("a", b"3", expected=1)) == Appended(
        "a", 1, 1, 1, 3, 1, 0
    )
    # a missing log's next offset is 0
    assert isinstance(execute(txn, handles, 4, 1, append("new", b"x", expected=1)), Rejected)
    assert load_log(txn, handles, "new") is None


# -- Trim -----------------------------------------------------------------------------------


def test_trim_deletes_below_and_keeps_offsets(txn: Txn, handles: Handles) -> None:
    execute(txn, handles, 1, 1, append("a", b"0", b"1", b"2", b"3", ts=9))
    result = execute(txn, handles, 2, 1, v1(Trim("a", 2)))
    kept = entry_size(b"2", None) + entry_size(b"3", "k3")
    assert result == Trimmed("a", 2, 4, 2, kept, 2)
    assert load_log(txn, handles, "a") == LogInfo("a", 2, 4, 2, kept, 9)
    assert entries_of(txn, handles, "a") == [(2, b"2"), (3, b"3")]
    # trimming below the first offset again changes nothing
    assert execute(txn, handles, 3, 1, v1(Trim("a", 1))) == Trimmed("a", 2, 4, 2, kept, 3)
    # up to the next offset empties the log; offsets continue
    assert execute(txn, handles, 4, 1, v1(Trim("a", 4))) == Trimmed("a", 4, 4, 0, 0, 4)
    assert execute(txn, handles, 5, 1, append("a", b"4")) == Appended("a", 4, 4, 1, 5, 1, 9)


def test_trim_past_the_next_offset_is_rejected(txn: Txn, handles: Handles) -> None:
    execute(txn, handles, 1, 1, append("a", b"0"))
    result = execute(txn, handles, 2, 1, v1(Trim("a", 2)))
    assert result == Rejected(
        "invalid_request",
        "log 'a': cannot trim before 2, past the next offset 1",
        {"next_offset": 1},
        2,
    )
    assert entries_of(txn, handles, "a") == [(0, b"0")]
    missing = execute(txn, handles, 3, 1, v1(Trim("nope", 1)))
    assert isinstance(missing, Rejected) and missing.details == {"next_offset": 0}


def test_trim_before_zero_on_a_missing_log_does_nothing(txn: Txn, handles: Handles) -> None:
    assert execute(txn, handles, 1, 1, v1(Trim("nope", 0))) == Trimmed("nope", 0, 0, 0, 0, 1)
    assert load_log(txn, handles, "nope") is None


# -- DeleteLog ------------------------------------------------------------------------------


def test_delete_log_removes_entries_and_offsets_continue(txn: Txn, handles: Handles) -> None:
    execute(txn, handles, 1, 1, append("a", b"0", b"1", ts=7))
    execute(txn, handles, 2, 1, append("b", b"0"))
    assert execute(txn, handles, 3, 1, v1(DeleteLog("a"))) == LogDeleted("a", 3)
    assert entries_of(txn, handles, "a") == []
    assert load_log(txn, handles, "a") == LogInfo("a", 2, 2, 0, 0, 7)
    assert entries_of(txn, handles, "b") == [(0, b"0")]  # other logs untouched
    assert execute(txn, handles, 4, 1, append("a", b"x")) == Appended("a", 2, 2, 1, 4, 1, 7)


def test_delete_of_a_missing_log_is_rejected(txn: Txn, handles: Handles) -> None:
    assert execute(txn, handles, 1, 1, v1(DeleteLog("nope"))) == Rejected(
        "log_not_found", "log 'nope' does not exist", {}, 1
    )
    assert load_log(txn, handles, "nope") is None


# -- SetClusterMeta and Barrier ---------------------------------------------------------


def meta(txn: Txn, h: Handles) -> ClusterMeta:
    return unpack_cluster(txn.get(K_CLUSTER, db=h.meta))


def test_cluster_id_is_set_once(txn: Txn, handles: Handles) -> None:
    cid = str(uuid.uuid4())
    assert meta(txn, handles) == ClusterMeta(None, None, 1)
    result = execute(txn, handles, 1, 1, v1(SetClusterMeta(cluster_id=cid, name="demo")))
    assert result == ClusterMetaSet(cid, "demo", 1, 1)
    assert meta(txn, handles) == ClusterMeta(cid, "demo", 1)
    # the same id again is fine (and may rename)
    again = execute(txn, handles, 2, 1, v1(SetClusterMeta(cluster_id=cid, name="prod")))
    assert again == ClusterMetaSet(cid, "prod", 1, 2)
    other = str(uuid.uuid4())
    refused = execute(txn, handles, 3, 1, v1(SetClusterMeta(cluster_id=other)))
    assert refused == Rejected(
        "cluster_id_already_set", f"the cluster id is already {cid}", {"cluster_id": cid}, 3
    )
    assert meta(txn, handles) == ClusterMeta(cid, "prod", 1)


def test_enabling_a_version(txn: Txn, handles: Handles) -> None:
    same = execute(txn, handles, 1, 1, v1(SetClusterMeta(enable_version=COMMAND_VERSION)))
    assert same == ClusterMetaSet(None, None, COMMAND_VERSION, 1)
    # a version newer than this code: node-local, the node must stop (no result recorded)
    with pytest.raises(UnsupportedFormat, match="upgrade this node"):
        execute(txn, handles, 2, 1, v1(SetClusterMeta(enable_version=COMMAND_VERSION + 1)))
    assert meta(txn, handles).enabled_version == COMMAND_VERSION


def test_versions_are_never_disabled(txn: Txn, handles: Handles) -> None:
    # a cluster that enabled a newer version (written by a newer node)
    txn.put(K_CLUSTER, pack_cluster(ClusterMeta(None, None, COMMAND_VERSION + 1)), db=handles.meta)
    result = execute(txn, handles, 1, 1, v1(SetClusterMeta(enable_version=COMMAND_VERSION)))
    assert isinstance(result, Rejected) and result.code == "invalid_request"
    assert result.details == {"enabled_version": COMMAND_VERSION + 1}
    assert meta(txn, handles).enabled_version == COMMAND_VERSION + 1


def test_barrier_changes_nothing(txn: Txn, handles: Handles) -> None:
    assert execute(txn, handles, 9, 3, v1(Barrier(nonce=42))) == BarrierDone(9)
    assert list(txn.cursor(db=handles.logs)) == []
    assert list(txn.cursor(db=handles.entries)) == []


# -- load_log and prune_results --------------------------------------------------------------


def test_load_log(txn: Txn, handles: Handles) -> None:
    assert load_log(txn, handles, "a") is None
    execute(txn, handles, 1, 1, append("a", b"1", ts=3))
    assert load_log(txn, handles, "a") == LogInfo("a", 0, 1, 1, entry_size(b"1", None), 3)
    assert load_log(txn, handles, "b") is None


def _results(txn: Txn, h: Handles) -> list[int]:
    return [int.from_bytes(key, "big") for key, _ in txn.cursor(db=h.results)]


def test_prune_results_keeps_the_window(txn: Txn, handles: Handles) -> None:
    prune_results(txn, handles, 10, 3)  # an empty database
    for i in range(1, 11):
        txn.put(u64(i), pack_result(i, {"type": "barrier_done", "index": i}), db=handles.results)
    prune_results(txn, handles, 3, 5)  # threshold below 1: nothing
    assert _results(txn, handles) == list(range(1, 11))
    prune_results(txn, handles, 11, 4)  # keeps indices >= 7
    assert _results(txn, handles) == [7, 8, 9, 10]
    prune_results(txn, handles, 11, 4)  # idempotent
    assert _results(txn, handles) == [7, 8, 9, 10]
    prune_results(txn, handles, 100, 1)  # everything below 99
    assert _results(txn, handles) == []
