"""Digest, snapshots and restore of the StateMachine."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import lmdb
import msgpack
import pytest

from raftlog.commands import Append, AppendEntry, Barrier, Command, SetClusterMeta, Trim, encode
from raftlog.errors import UnsupportedFormat
from raftlog.state.machine import StateMachine, read_snapshot_header
from raftlog.state.snapshot import SNAPSHOT_MAGIC

pytestmark = pytest.mark.unit

CID = "0b6f3c2e-8d51-4f0e-9a57-3f7c1b2d4e60"


def append(log: str, *values: str, ts: int = 0) -> Append:
    return Append(log, tuple(AppendEntry(v.encode(), "k") for v in values), ts)


def workload() -> list[Command]:
    cmds: list[Command] = [SetClusterMeta(cluster_id=CID, name="test")]
    for i in range(40):
        cmds.append(append(f"log{i % 3}", *[f'"v{i}-{j}"' for j in range(i % 4 + 1)], ts=i))
    cmds += [Trim("log1", 5), Barrier(9), append("log1", "1")]
    return cmds


def feed(sm: StateMachine, cmds: list[Command], term: int = 1) -> None:
    start = sm.last_applied()[0]
    for i, cmd in enumerate(cmds, start=start + 1):
        sm.apply(i, term, encode(cmd))


def dump(sm: StateMachine) -> list[object]:
    """Everything a client can read, for equality checks."""
    out: list[object] = [sm.last_applied(), sm.cluster_meta()]
    for info in sm.list_logs(None, 1000):
        out += [info, sm.read_range(info.log, 0, 10_000)]
    return out


def restored_copy(sm: StateMachine, tmp_path: Path, name: str = "copy") -> StateMachine:
    snap = tmp_path / f"{name}.snap"
    sm.snapshot(snap)
    other = StateMachine(tmp_path / name, durability="os")
    other.restore(snap)
    return other


# --- digest ------------------------------------------------------------------------


def test_replicas_with_equal_content_have_equal_digests(tmp_path: Path) -> None:
    # Different map sizes (one grows several times), durability and results windows.
    with (
        StateMachine(tmp_path / "a", durability="os", results_window=2) as a,
        StateMachine(tmp_path / "b", map_size=64 << 10, results_window=1000) as b,
    ):
        feed(a, workload())
        feed(b, workload())
        assert b.map_size > 64 << 10
        assert a.digest() == b.digest()
        assert a.digest()[0] == len(workload())
        assert (tmp_path / "a" / "data.mdb").read_bytes() != (
            tmp_path / "b" / "data.mdb"
        ).read_bytes()


@pytest.mark.parametrize(
    "change",
    ["extra entry", "other term", "other value", "other cluster name", "extra barrier"],
)
def test_digest_differs_when_content_differs(tmp_path: Path, change: str) -> None:
    base = workload()
    other = list(base)
    term = 1
    if change == "extra entry":
        other[5] = append("log2", '"v4-0"', '"extra"', ts=4)
    elif change == "other term":
        term = 2
    elif change == "other value":
        other[3] = append("log2", '"V2-0"', '"v2-1"', '"v2-2"', ts=2)
    elif change == "other cluster name":
        other[0] = SetClusterMeta(cluster_id=CID, name="prod")
    else:
        other.append(Barrier(1))
    with (
        StateMachine(tmp_path / "a", durability="os") as a,
        StateMachine(tmp_path / "b", durability="os") as b,
    ):
        feed(a, base)
        feed(b, other, term=term)
        assert a.digest()[1] != b.digest()[1]


# --- snapshot / restore ------------------------------------------------------------------


def test_snapshot_restore_gives_equal_state(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "src", durability="os", map_size=64 << 10) as src:
        feed(src, workload())
        applied = src.snapshot(tmp_path / "s.snap")
        assert applied == src.last_applied()
        assert not (tmp_path / "s.snap.tmp").exists()
        header = read_snapshot_header(tmp_path / "s.snap")
        assert header["last_applied"] == list(applied)
        assert header["cluster_id"] == CID and header["format"] == 2
        with StateMachine(tmp_path / "dst", durability="os") as dst:
            feed(dst, [append("junk", "1")] * 3)  # restore replaces everything
            assert dst.restore(tmp_path / "s.snap") == applied
            assert dst.last_applied() == applied
            assert dst.digest() == src.digest()
            assert dump(dst) == dump(src)
            assert dst.log_info("junk") is None
            # results travel with the state: a replay returns the same result
            assert dst.apply(2, 1, b"") == src.apply(2, 1, b"")
            # both continue identically
            feed(src, [append("log0", "9")])
            feed(dst, [append("log0", "9")])
            assert dst.digest() == src.digest()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "s.snap", "src"]
    # and the restored state survives a restart
    with StateMachine(tmp_path / "dst") as dst:
        assert dst.last_applied() == (len(workload()) + 1, 1)


def test_restore_at_offset_and_header_from_file_object(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "src", durability="os") as src:
        feed(src, workload())
        source = src.begin_snapshot()
        prefix = b"caller's own header"
        path = tmp_path / "wrapped.snap"
        with open(path, "w+b") as f:  # write_to reads its bytes back for the checksum
            f.write(prefix)
            f.flush()
            written = source.write_to(f.fileno())
        source.close()
        source.close()  # idempotent
        assert path.stat().st_size == len(prefix) + written
        with pytest.raises(ValueError):
            source.write_to(0)
        with open(path, "rb") as f:
            f.seek(len(prefix))
            assert read_snapshot_header(f)["last_applied"] == list(src.last_applied())
        with StateMachine(tmp_path / "dst", durability="os") as dst:
            assert dst.restore(path, offset=len(prefix)) == src.last_applied()
            assert dst.digest() == src.digest()


def test_snapshot_source_is_a_frozen_view_written_from_another_thread(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "src", durability="os") as src:
        feed(src, workload())
        frozen_digest = src.digest()
        source = src.begin_snapshot()
        feed(src, [append("log0", "after"), append("late", "x")])  # applies go on
        path = tmp_path / "s.snap"
        errors: list[BaseException] = []

        def write() -> None:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
                try:
                    source.write_to(fd)
                finally:
                    os.close(fd)
                    source.close()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=write)
        thread.start()
        thread.join(10)
        assert not errors
        assert source.last_applied == (frozen_digest[0], 1)
        with StateMachine(tmp_path / "dst", durability="os") as dst:
            dst.restore(path)
            assert dst.digest() == frozen_digest
            assert dst.log_info("late") is None


def _write_snapshot_bytes(path: Path, header: dict[str, object], payload: bytes) -> None:
    body = msgpack.packb(header, use_bin_type=True)
    path.write_bytes(SNAPSHOT_MAGIC + len(body).to_bytes(4, "big") + body + payload)


def _good_header(applied: tuple[int, int]) -> dict[str, object]:
    """A format-1 header (no checksum trailer: read to the end, unchecked)."""
    return {
        "format": 1,
        "state_format": 1,
        "last_applied": list(applied),
        "cluster_id": None,
        "created_ms": 0,
    }


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("bad magic", "not a raftlog snapshot"),
        ("empty file", "not a raftlog snapshot"),
        ("newer format", "snapshot has format 3; this raftlog understands up to 2"),
        ("newer state format", "state format 3"),
        ("truncated header", "truncated"),
        ("garbage payload", "not an LMDB environment"),
        ("no payload", "no state data"),
        ("last_applied mismatch", "header says last_applied"),
    ],
)
def test_bad_snapshots_are_refused_and_old_state_kept(
    tmp_path: Path, case: str, message: str
) -> None:
    with StateMachine(tmp_path / "src", durability="os") as src:
        feed(src, workload())
        good = tmp_path / "good.snap"
        src.snapshot(good)
    data = good.read_bytes()
    body_len = int.from_bytes(data[8:12], "big")
    payload = data[12 + body_len : -20]  # the LMDB copy, without the checksum trailer
    bad = tmp_path / "bad.snap"
    applied = (len(workload()), 1)
    if case == "bad magic":
        bad.write_bytes(b"RLSNAP99" + data[8:])
    elif case == "empty file":
        bad.write_bytes(b"")
    elif case == "newer format":
        _write_snapshot_bytes(bad, {**_good_header(applied), "format": 3}, payload)
    elif case == "newer state format":
        _write_snapshot_bytes(bad, {**_good_header(applied), "state_format": 3}, payload)
    elif case == "truncated header":
        bad.write_bytes(data[:20])
    elif case == "garbage payload":
        _write_snapshot_bytes(bad, _good_header(applied), b"\x00garbage" * 1000)
    elif case == "no payload":
        _write_snapshot_bytes(bad, _good_header(applied), b"")
    else:
        _write_snapshot_bytes(bad, _good_header((applied[0] + 5, 1)), payload)

    with StateMachine(tmp_path / "dst", durability="os") as dst:
        feed(dst, [append("mine", "1", "2")])
        before, before_dump = dst.digest(), dump(dst)
        with pytest.raises(UnsupportedFormat) as info:
            dst.restore(bad)
        assert message in str(info.value)
        assert dst.digest() == before
        assert dump(dst) == before_dump
        feed(dst, [append("mine", "3")])  # still usable
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.snap", "dst", "good.snap", "src"]


def test_read_snapshot_header_rejects_non_snapshots(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFormat, match="not a raftlog snapshot"):
        read_snapshot_header(io.BytesIO(b"PK\x03\x04 a zip file"))
    path = tmp_path / "x"
    _write_snapshot_bytes(path, {**_good_header((1, 1)), "format": 7}, b"")
    with pytest.raises(UnsupportedFormat, match="format 7; this raftlog understands up to 2"):
        read_snapshot_header(path)


def test_newer_state_format_is_refused_on_open(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "s", durability="os") as sm:
        feed(sm, [append("a", "1")])
    env = lmdb.open(str(tmp_path / "s"), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"format", msgpack.packb(3), db=env.open_db(b"meta", txn=txn))
    env.close()
    with pytest.raises(UnsupportedFormat) as info:
        StateMachine(tmp_path / "s")
    assert f"state at {tmp_path / 's'} has format 3; this raftlog understands up to 2" in str(
        info.value
    )


def test_crash_during_swap_keeps_old_state(tmp_path: Path) -> None:
    with StateMachine(tmp_path / "s", durability="os") as sm:
        feed(sm, [append("a", "1")])
        digest = sm.digest()
    # A crash after "s" was renamed to "s.old", before staging took its place.
    os.rename(tmp_path / "s", tmp_path / "s.old")
    (tmp_path / "s.restore").mkdir()
    (tmp_path / "s.restore" / "data.mdb").write_bytes(b"partial")
    with StateMachine(tmp_path / "s", durability="os") as sm:
        assert sm.digest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
