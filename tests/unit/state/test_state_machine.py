"""StateMachine.apply semantics and reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from raftlog import commands
from raftlog.commands import (
    Append,
    AppendEntry,
    Barrier,
    Command,
    DeleteLog,
    SetClusterMeta,
    Trim,
    encode,
)
from raftlog.errors import NodeStopped, UnsupportedFormat
from raftlog.state.machine import (
    Appended,
    ApplyResult,
    BarrierDone,
    ClusterMeta,
    ClusterMetaSet,
    Entry,
    LogDeleted,
    LogInfo,
    Rejected,
    StateMachine,
    Trimmed,
)
from raftlog.state.types import result_from_dict

pytestmark = pytest.mark.unit

CID = "0b6f3c2e-8d51-4f0e-9a57-3f7c1b2d4e60"
OTHER_CID = "5e1f7a40-2c3b-4d6e-8f90-a1b2c3d4e5f6"


def append(
    log: str, *values: str, ts: int = 0, key: str | None = None, expected: int | None = None
) -> Append:
    entries = tuple(AppendEntry(v.encode(), key) for v in values)
    return Append(log, entries, ts, expected_offset=expected)


class Driver:
    """Feeds commands at consecutive Raft indices."""

    def __init__(self, sm: StateMachine, term: int = 1) -> None:
        self.sm = sm
        self.term = term
        self.index = sm.last_applied()[0]

    def run(self, cmd: Command | bytes, version: int = 1) -> ApplyResult:
        self.index += 1
        data = cmd if isinstance(cmd, bytes) else encode(cmd, version)
        return self.sm.apply(self.index, self.term, data)


@pytest.fixture
def sm(tmp_path: Path) -> Iterator[StateMachine]:
    with StateMachine(tmp_path / "state", durability="os") as machine:
        yield machine


@pytest.fixture
def drv(sm: StateMachine) -> Driver:
    return Driver(sm)


def test_fresh_state(sm: StateMachine, tmp_path: Path) -> None:
    assert (tmp_path / "state" / "data.mdb").exists()
    assert sm.last_applied() == (0, 0)
    assert sm.cluster_meta() == ClusterMeta(None, None, 1)
    assert sm.log_info("a") is None
    assert sm.list_logs(None, 10) == []
    assert sm.get_entry("a", 0) is None
    assert sm.read_range("a", 0, 10) == []
    assert sm.digest()[0] == 0


def test_appends_get_dense_offsets(drv: Driver, sm: StateMachine) -> None:
    assert drv.run(append("a", "1", ts=10)) == Appended("a", 0, 0, 1, 1, 1, 10)
    assert drv.run(append("a", "2", "3", "4", ts=11, key="kk")) == Appended("a", 1, 3, 3, 2, 1, 11)
    drv.term = 2
    assert drv.run(append("b", '"x"', ts=12)) == Appended("b", 0, 0, 1, 3, 2, 12)
    assert drv.run(append("a", "5", "6", ts=13)) == Appended("a", 4, 5, 2, 4, 2, 13)
    assert sm.last_applied() == (4, 2)
    # bytes = len(value_json) + len(key utf-8) per entry
    assert sm.log_info("a") == LogInfo("a", 0, 6, 6, 6 + 3 * 2, 13)
    assert sm.log_info("b") == LogInfo("b", 0, 1, 1, 3, 12)
    assert sm.get_entry("a", 2) == Entry(2, b"3", "kk", 11, 2, 1)
    assert [e.offset for e in sm.read_range("a", 0, 100)] == [0, 1, 2, 3, 4, 5]
    assert [e.value_json for e in sm.read_range("a", 0, 100)] == [
        b"1",
        b"2",
        b"3",
        b"4",
        b"5",
        b"6",
    ]


def test_timestamps_never_go_backwards(drv: Driver, sm: StateMachine) -> None:
    drv.run(append("a", "1", ts=100))
    r = drv.run(append("a", "2", "3", ts=50))
    assert isinstance(r, Appended) and r.timestamp_ms == 100
    assert {e.timestamp_ms for e in sm.read_range("a", 1, 10)} == {100}
    r = drv.run(append("a", "4", ts=200))
    assert isinstance(r, Appended) and r.timestamp_ms == 200
    # per log: another log is not held back by "a"
    r = drv.run(append("b", "1", ts=7))
    assert isinstance(r, Appended) and r.timestamp_ms == 7
    stamps = [e.timestamp_ms for e in sm.read_range("a", 0, 10)]
    assert stamps == sorted(stamps) == [100, 100, 100, 200]
    info = sm.log_info("a")
    assert info is not None and info.last_timestamp_ms == 200


def test_replay_returns_stored_result_and_changes_nothing(drv: Driver, sm: StateMachine) -> None:
    first = drv.run(append("a", "1", "2"))
    drv.run(append("a", "3"))
    drv.run(b"junk")
    before = sm.digest()
    # index 1 again, even with other bytes: a replay, not a new apply
    assert sm.apply(1, 1, encode(append("a", "9"))) == first
    assert sm.apply(3, 1, b"junk") == sm.result_for(3)
    assert sm.digest() == before
    assert sm.last_applied() == (3, 1)


def test_replay_after_restart(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "s") as sm:
        drv = Driver(sm, term=3)
        results = [drv.run(append("a", str(i))) for i in range(5)]
        digest = sm.digest()
    with StateMachine(tmp_path / "s") as sm:
        assert sm.last_applied() == (5, 3)
        assert sm.digest() == digest
        assert [sm.apply(i + 1, 3, b"whatever") for i in range(5)] == results
        assert Driver(sm).run(append("a", "x")) == Appended("a", 5, 5, 1, 6, 1, 0)


def test_results_window_prunes_old_results(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "s", durability="os", results_window=3) as sm:
        drv = Driver(sm)
        for i in range(10):
            drv.run(Barrier(i))
        assert [i for i in range(1, 11) if sm.result_for(i) is not None] == [7, 8, 9, 10]
        assert sm.apply(10, 1, b"") == BarrierDone(10)
        replay = sm.apply(2, 1, encode(Barrier(0)))
        assert isinstance(replay, Rejected) and replay.code == "replayed"
        assert "entry 2 was applied before this restart" in replay.message
        assert sm.last_applied() == (10, 1)


def test_expected_offset(drv: Driver, sm: StateMachine) -> None:
    assert isinstance(drv.run(append("a", "1", expected=0)), Appended)
    r = drv.run(append("a", "2", "3", expected=0))
    assert isinstance(r, Rejected)
    assert r == Rejected("offset_mismatch", r.message, {"next_offset": 1}, 2)
    assert "expected_offset 0" in r.message
    assert sm.log_info("a") == LogInfo("a", 0, 1, 1, 1, 0)
    assert sm.last_applied() == (2, 1)
    assert sm.result_for(2) == r
    assert drv.run(append("a", "2", expected=1)) == Appended("a", 1, 1, 1, 3, 1, 0)
    r = drv.run(append("new", "1", expected=3))
    assert isinstance(r, Rejected) and r.details == {"next_offset": 0}
    assert sm.log_info("new") is None


def test_invalid_command_is_recorded(drv: Driver, sm: StateMachine) -> None:
    bad = msgpack.packb({"v": 1, "k": "trim", "log": "a b", "before": 0})
    r = drv.run(bad)
    assert isinstance(r, Rejected) and r.code == "invalid_command"
    assert r.details == {"field": "log"} and "'log'" in r.message
    assert sm.last_applied() == (1, 1)
    assert sm.result_for(1) == r
    r = drv.run(b"\xc1not msgpack")
    assert isinstance(r, Rejected) and r.code == "invalid_command"


def test_newer_envelope_fails_stop_without_writing(drv: Driver, sm: StateMachine) -> None:
    drv.run(append("a", "1"))
    before = sm.digest()
    newer = msgpack.packb({"v": commands.COMMAND_VERSION + 1, "k": "warp"})
    with pytest.raises(UnsupportedFormat):
        sm.apply(2, 1, newer)
    assert sm.last_applied() == (1, 1)
    assert sm.digest() == before
    assert sm.result_for(2) is None


def test_version_not_enabled(
    drv: Driver, sm: StateMachine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commands, "COMMAND_VERSION", 2)
    r = drv.run(append("a", "1"), version=2)
    assert isinstance(r, Rejected) and r.code == "version_not_enabled"
    assert r.details == {"version": 2, "enabled_version": 1}
    assert sm.log_info("a") is None
    assert drv.run(SetClusterMeta(enable_version=2)) == ClusterMetaSet(None, None, 2, 2)
    assert isinstance(drv.run(append("a", "1"), version=2), Appended)
    r = drv.run(SetClusterMeta(enable_version=1))
    assert isinstance(r, Rejected) and r.code == "invalid_request"
    assert sm.cluster_meta().enabled_version == 2


def test_enabling_an_unknown_version_fails_stop(drv: Driver, sm: StateMachine) -> None:
    # Other replicas may know the version: a refusal recorded here would diverge.
    with pytest.raises(UnsupportedFormat):
        drv.run(SetClusterMeta(name="n", enable_version=commands.COMMAND_VERSION + 1))
    assert sm.last_applied() == (0, 0)
    assert sm.cluster_meta() == ClusterMeta(None, None, 1)


def test_cluster_meta(drv: Driver, sm: StateMachine) -> None:
    assert drv.run(SetClusterMeta(cluster_id=CID, name="one")) == ClusterMetaSet(CID, "one", 1, 1)
    assert drv.run(SetClusterMeta(cluster_id=CID)) == ClusterMetaSet(CID, "one", 1, 2)
    r = drv.run(SetClusterMeta(cluster_id=OTHER_CID, name="two"))
    assert isinstance(r, Rejected) and r.code == "cluster_id_already_set"
    assert r.details == {"cluster_id": CID}
    assert drv.run(SetClusterMeta(name="two")) == ClusterMetaSet(CID, "two", 1, 4)
    assert sm.cluster_meta() == ClusterMeta(CID, "two", 1)


def test_trim(drv: Driver, sm: StateMachine) -> None:
    drv.run(append("a", *[str(i) for i in range(10)], key="k"))
    drv.run(append("a0", "x"))  # a neighbour whose name extends "a"
    assert drv.run(Trim("a", 4)) == Trimmed("a", 4, 10, 6, 12, 3)
    assert sm.get_entry("a", 3) is None
    assert sm.get_entry("a", 4) is not None
    assert [e.offset for e in sm.read_range("a", 0, 100)] == list(range(4, 10))
    assert drv.run(Trim("a", 2)) == Trimmed("a", 4, 10, 6, 12, 4)  # below first: no-op
    r = drv.run(Trim("a", 11))
    assert isinstance(r, Rejected) and r.code == "invalid_request"
    assert r.details == {"next_offset": 10}
    assert drv.run(Trim("a", 10)) == Trimmed("a", 10, 10, 0, 0, 6)
    assert sm.read_range("a", 0, 100) == []
    assert sm.log_info("a0") == LogInfo("a0", 0, 1, 1, 1, 0)
    # offsets are never reused
    assert drv.run(append("a", "new")) == Appended("a", 10, 10, 1, 7, 1, 0)


def test_trim_missing_log(drv: Driver, sm: StateMachine) -> None:
    assert drv.run(Trim("ghost", 0)) == Trimmed("ghost", 0, 0, 0, 0, 1)
    r = drv.run(Trim("ghost", 1))
    assert isinstance(r, Rejected) and r.code == "invalid_request"
    assert r.details == {"next_offset": 0}
    assert sm.log_info("ghost") is None


def test_delete_log(drv: Driver, sm: StateMachine) -> None:
    drv.run(append("a", "1", "2", "3", ts=50))
    drv.run(append("a.b", "1"))
    drv.run(append("a-", "1"))
    assert drv.run(DeleteLog("a")) == LogDeleted("a", 4)
    assert sm.log_info("a") == LogInfo("a", 3, 3, 0, 0, 50)
    assert sm.read_range("a", 0, 10) == []
    assert sm.get_entry("a", 0) is None
    assert len(sm.read_range("a.b", 0, 10)) == 1 and len(sm.read_range("a-", 0, 10)) == 1
    r = drv.run(append("a", "4", ts=1))
    assert r == Appended("a", 3, 3, 1, 5, 1, 50)
    r = drv.run(DeleteLog("nope"))
    assert isinstance(r, Rejected) and r.code == "log_not_found"


def test_read_range(drv: Driver, sm: StateMachine) -> None:
    drv.run(append("a", *[str(i) for i in range(20)]))
    drv.run(append("a0", "x"))
    drv.run(append("b", "y"))
    assert [e.offset for e in sm.read_range("a", 5, 3)] == [5, 6, 7]
    assert [e.offset for e in sm.read_range("a", 18, 10)] == [18, 19]
    assert [e.offset for e in sm.read_range("a", -4, 2)] == [0, 1]
    assert sm.read_range("a", 20, 10) == []
    assert sm.read_range("a", 0, 0) == []
    assert sm.read_range("a b", 0, 10) == []
    assert sm.read_range("a", 2**70, 10) == []
    assert sm.get_entry("a", -1) is None
    assert sm.get_entry("bad name", 0) is None
    assert sm.log_info("bad name") is None


def test_list_logs_paging(drv: Driver, sm: StateMachine) -> None:
    names = [f"log{i:02d}" for i in range(25)] + ["A", "z"]
    for name in names:
        drv.run(append(name, "1"))
    seen: list[str] = []
    after: str | None = None
    while page := sm.list_logs(after, 10):
        assert len(page) <= 10
        seen += [info.log for info in page]
        after = page[-1].log
    assert seen == sorted(names)
    assert [i.log for i in sm.list_logs("log05", 2)] == ["log06", "log07"]
    assert [i.log for i in sm.list_logs("log05x", 2)] == ["log06", "log07"]  # not a log
    assert sm.list_logs("z", 10) == []
    assert sm.list_logs(None, 0) == []


def test_entry_json_view(drv: Driver, sm: StateMachine) -> None:
    drv.run(append("a", '{"n":[1,2]}', ts=9, key="k"))
    entry = sm.get_entry("a", 0)
    assert entry is not None
    assert entry.to_json_dict() == {
        "offset": 0,
        "value": {"n": [1, 2]},
        "key": "k",
        "timestamp": 9,
        "index": 1,
        "term": 1,
    }
    json.dumps(entry.to_json_dict())


@pytest.mark.parametrize(
    "result",
    [
        Appended("a", 1, 2, 2, 3, 4, 5),
        Trimmed("a", 1, 2, 1, 9, 3),
        LogDeleted("a", 3),
        BarrierDone(7),
        ClusterMetaSet(CID, None, 1, 2),
        Rejected("offset_mismatch", "m", {"next_offset": 3}, 4),
    ],
)
def test_results_round_trip(result: ApplyResult) -> None:
    d = result.to_dict()
    assert result_from_dict(msgpack.unpackb(msgpack.packb(d), raw=False)) == result
    assert type(result).from_dict(d) == result


def test_closed_state_machine_refuses(tmp_path: Path) -> None:
    sm = StateMachine(tmp_path / "s", durability="os")
    sm.close()
    sm.close()  # idempotent
    with pytest.raises(NodeStopped):
        sm.log_info("a")
    with pytest.raises(NodeStopped):
        sm.apply(1, 1, encode(Barrier(1)))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        StateMachine(tmp_path / "s", durability="never")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        StateMachine(tmp_path / "s", map_size=1 << 20, max_map_size=1 << 19)
    with StateMachine(tmp_path / "s", durability="os") as sm, pytest.raises(ValueError):
        sm.apply(0, 1, encode(Barrier(1)))
