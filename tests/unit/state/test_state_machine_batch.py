"""Batched, unsynced apply: bounds, visibility, syncs, the dirty marker and its boots."""

from __future__ import annotations

import dataclasses
import errno
import threading
from pathlib import Path
from typing import Any

import lmdb
import msgpack
import pytest

from raftlog import commands
from raftlog.commands import Append, AppendEntry, encode
from raftlog.errors import FatalStorageError, UnsupportedFormat
from raftlog.state import marker
from raftlog.state.machine import Appended, StateMachine

pytestmark = pytest.mark.unit

SMALL = 64 << 10


def append(log: str, n: int = 1, size: int = 50) -> bytes:
    value = b'"' + b"x" * size + b'"'
    return encode(Append(log, tuple(AppendEntry(value, None) for _ in range(n)), 0))


def batched(path: Path, **kw: Any) -> StateMachine:
    """A state machine that commits only when told (or at a bound given in ``kw``)."""
    settings: dict[str, Any] = {
        "batch_max_entries": 10_000,
        "batch_max_bytes": 1 << 30,
        "batch_max_age_s": 3600.0,
        "boot_id": lambda: "boot-a",
        **kw,
    }
    return StateMachine(path, **settings)


def from_other_thread(fn: Any) -> Any:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join(10)
    return out[0]


def test_default_commits_every_apply(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "s", boot_id=lambda: "b") as sm:
        sm.apply(1, 1, append("a"))
        assert sm.last_applied() == (1, 1) and sm.batch_size() == 0


def test_count_bound_commits_the_batch(tmp_path: Path) -> None:
    with batched(tmp_path / "s", batch_max_entries=3) as sm:
        sm.apply(1, 1, append("a"))
        sm.apply(2, 1, append("a"))
        assert sm.last_applied() == (0, 0) and sm.batch_size() == 2
        sm.apply(3, 1, append("a"))
        assert sm.last_applied() == (3, 1) and sm.batch_size() == 0
        sm.apply(4, 2, append("a"))
        assert sm.last_applied() == (3, 1) and sm.batch_size() == 1


def test_bytes_bound_commits_the_batch(tmp_path: Path) -> None:
    command = append("a", size=1000)
    with batched(tmp_path / "s", batch_max_bytes=2 * len(command)) as sm:
        sm.apply(1, 1, command)
        assert sm.last_applied() == (0, 0)
        sm.apply(2, 1, command)
        assert sm.last_applied() == (2, 1)


def test_age_bound_zero_commits_every_apply(tmp_path: Path) -> None:
    with batched(tmp_path / "s", batch_max_age_s=0.0) as sm:
        sm.apply(1, 1, append("a"))
        assert sm.last_applied() == (1, 1)


def test_nothing_of_an_open_batch_is_visible_to_other_threads(tmp_path: Path) -> None:
    with batched(tmp_path / "s") as sm:
        r = sm.apply(1, 1, append("a", 2))
        assert r == Appended("a", 0, 1, 2, 1, 1, 0)
        sm.apply(2, 1, append("b"))

        def look() -> tuple[Any, ...]:
            return (sm.last_applied(), sm.get_entry("a", 0), sm.log_info("b"), sm.digest()[0])

        assert from_other_thread(look) == ((0, 0), None, None, 0)
        assert sm.commit() == (2, 1)
        applied, entry, info, digest_index = from_other_thread(look)
        assert applied == (2, 1) and entry is not None and info is not None
        assert digest_index == 2


def test_digest_on_the_apply_thread_commits_first(tmp_path: Path) -> None:
    with batched(tmp_path / "s") as sm:
        sm.apply(1, 1, append("a"))
        assert sm.digest()[0] == 1 and sm.last_applied() == (1, 1)


def test_replay_inside_and_after_the_batch_returns_the_same_result(tmp_path: Path) -> None:
    with batched(tmp_path / "s") as sm:
        first = sm.apply(1, 1, append("a"))
        second = sm.apply(2, 1, append("a"))
        assert sm.apply(2, 1, append("a")) == second  # a tick retried inside the batch
        assert sm.batch_size() == 2
        sm.commit()
        assert sm.apply(1, 1, append("a")) == first
        third = sm.apply(3, 1, append("a"))
        assert sm.apply(1, 1, append("a")) == first  # replay while a batch is open
        assert third.index == 3


def test_batched_and_one_by_one_apply_give_the_same_digest(tmp_path: Path) -> None:
    cmds = [append(f"l{i % 3}", 1 + i % 4, size=300 + i) for i in range(200)]
    with (
        StateMachine(tmp_path / "one", boot_id=lambda: "b") as one,
        batched(tmp_path / "many", batch_max_entries=37, map_size=SMALL) as many,
    ):
        for i, c in enumerate(cmds, 1):
            assert one.apply(i, 1, c) == many.apply(i, 1, c)
        many.commit()
        assert many.map_size > SMALL  # the map grew in the middle of batches
        assert one.digest() == many.digest()


def test_map_growth_inside_a_batch_keeps_its_earlier_entries(tmp_path: Path) -> None:
    with batched(tmp_path / "s", map_size=SMALL) as sm:
        results = [sm.apply(i, 1, append("a", 4, size=2000)) for i in range(1, 40)]
        assert sm.map_size > SMALL
        sm.commit()
        info = sm.log_info("a")
        assert info is not None and info.count == 4 * 39
        assert [sm.result_for(i) for i in range(1, 40)] == results


@pytest.mark.parametrize(
    "fault",
    [OSError(errno.EIO, "Input/output error"), lmdb.DiskError("mdb_txn_commit", 5)],
    ids=["EIO", "lmdb.DiskError"],
)
def test_failed_batch_commit_fail_stops_with_nothing_of_the_batch(
    tmp_path: Path, fault: Exception
) -> None:
    armed = threading.Event()

    def injector(stage: str) -> None:
        if armed.is_set():
            raise fault

    sm = batched(tmp_path / "s", _fault_injector=injector)
    for i in range(1, 4):
        sm.apply(i, 1, append("a"))
    sm.commit()
    before = sm.digest()
    for i in range(4, 9):
        sm.apply(i, 1, append("a"))
    armed.set()
    with pytest.raises(FatalStorageError) as info:
        sm.commit()
    assert info.value.__cause__ is fault
    assert "index 4 to index 8" in str(info.value)
    assert sm.last_applied() == (3, 1) and sm.batch_size() == 0
    assert from_other_thread(sm.digest) == before
    assert from_other_thread(lambda: sm.get_entry("a", 3)) is None
    assert all(sm.result_for(i) is None for i in range(4, 9))
    armed.clear()
    with pytest.raises(FatalStorageError):  # fail-stop: no further applies
        sm.apply(4, 1, append("a"))
    sm.close()
    with batched(tmp_path / "s") as again:  # a restart replays the batch from the journal
        assert again.digest() == before
        assert again.apply(4, 1, append("a")).index == 4


def test_unsupported_command_commits_what_came_before(tmp_path: Path) -> None:
    with batched(tmp_path / "s") as sm:
        sm.apply(1, 1, append("a"))
        newer = msgpack.packb({"v": commands.COMMAND_VERSION + 1, "k": "warp"})
        with pytest.raises(UnsupportedFormat):
            sm.apply(2, 1, newer)
        assert sm.last_applied() == (1, 1) and sm.result_for(2) is None


class _CountingEnv:
    """Proxies an lmdb.Environment, counting sync calls."""

    def __init__(self, env: lmdb.Environment) -> None:
        self._env = env
        self.syncs = 0

    def sync(self, force: bool = False) -> None:
        self.syncs += 1
        self._env.sync(force)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


def counting(sm: StateMachine) -> _CountingEnv:
    h = sm._h
    assert h is not None
    env = _CountingEnv(h.env)
    sm._h = dataclasses.replace(h, env=env)  # type: ignore[arg-type]
    return env


def test_sync_and_snapshots_commit_then_sync(tmp_path: Path) -> None:
    with batched(tmp_path / "s") as sm:
        env = counting(sm)
        sm.apply(1, 1, append("a"))
        sm.sync()
        assert sm.last_applied() == (1, 1) and env.syncs == 1
        sm.apply(2, 1, append("a"))
        with sm.begin_snapshot() as source:
            assert source.last_applied == (2, 1)  # the batch was committed first
        assert env.syncs == 2
        assert sm.snapshot(tmp_path / "snap") == (2, 1)
        assert env.syncs == 3


def test_snapshot_from_another_thread_sees_committed_state_only(tmp_path: Path) -> None:
    with batched(tmp_path / "s") as sm:
        sm.apply(1, 1, append("a"))
        sm.commit()
        sm.apply(2, 1, append("a"))
        assert from_other_thread(lambda: sm.snapshot(tmp_path / "snap")) == (1, 1)
        assert sm.batch_size() == 1


def test_restore_commits_the_open_batch_first(tmp_path: Path) -> None:
    with batched(tmp_path / "src") as src:
        for i in range(1, 6):
            src.apply(i, 1, append("a"))
        src.snapshot(tmp_path / "snap")
    with batched(tmp_path / "s") as sm:
        sm.apply(1, 1, append("b"))
        assert sm.restore(tmp_path / "snap") == (5, 1)
        assert sm.log_info("b") is None and sm.batch_size() == 0
        assert marker.read(tmp_path / "s") == "boot-a"  # the restored state is marked


# --- the dirty marker --------------------------------------------------------------------


def test_marker_lives_while_open_and_goes_at_a_clean_close(tmp_path: Path) -> None:
    path = tmp_path / "s"
    sm = batched(path)
    assert marker.read(path) == "boot-a"
    sm.apply(1, 1, append("a"))
    env = counting(sm)
    sm.close()
    assert env.syncs == 1  # the final sync, before the marker goes
    assert marker.read(path) is None
    with batched(path, boot_id=lambda: "boot-b") as again:  # clean: any boot trusts it
        assert again.discarded is None and again.last_applied() == (1, 1)


def test_same_boot_restart_after_kill_trusts_the_committed_state(tmp_path: Path) -> None:
    path = tmp_path / "s"
    sm = batched(path)
    for i in range(1, 4):
        sm.apply(i, 1, append("a"))
    sm.commit()
    sm.apply(4, 1, append("a"))
    sm.close(clean=False)  # kill -9: the open batch is lost, the marker stays
    assert marker.read(path) == "boot-a"
    with batched(path) as again:
        assert again.discarded is None
        assert again.last_applied() == (3, 1)  # index 4 is replayed from the journal
        assert again.log_info("a") is not None


@pytest.mark.parametrize("recorded", ["boot-a", "garbage"])
def test_other_boot_discards_the_state(tmp_path: Path, recorded: str) -> None:
    path = tmp_path / "s"
    sm = batched(path)
    sm.apply(1, 1, append("a"))
    sm.commit()
    sm.close(clean=False)
    if recorded == "garbage":
        (path / marker.MARKER_NAME).write_text("not a marker")
    with batched(path, boot_id=lambda: "boot-b") as again:
        assert again.discarded is not None and "boot-b" in again.discarded
        assert again.last_applied() == (0, 0) and again.log_info("a") is None
        assert marker.read(path) == "boot-b"
    assert not (tmp_path / "s.untrusted").exists()


def test_unknown_boot_never_trusts_a_dirty_state(tmp_path: Path) -> None:
    path = tmp_path / "s"
    sm = StateMachine(path, boot_id=lambda: None)
    sm.apply(1, 1, append("a"))
    sm.close(clean=False)
    with StateMachine(path, boot_id=lambda: None) as again:
        assert again.discarded is not None and again.last_applied() == (0, 0)


def test_a_discard_interrupted_after_its_rename_is_finished_at_the_next_open(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    sm = batched(path)
    sm.apply(1, 1, append("a"))
    sm.close(clean=False)
    path.rename(tmp_path / "s.untrusted")  # a crash right after the rename
    with batched(path, boot_id=lambda: "boot-b") as again:
        assert again.last_applied() == (0, 0)
    assert not (tmp_path / "s.untrusted").exists()


def test_boot_id_reader(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert marker.read_boot_id()  # Linux has one
    monkeypatch.setattr(marker, "BOOT_ID_FILE", tmp_path / "missing")
    assert marker.read_boot_id() is None
