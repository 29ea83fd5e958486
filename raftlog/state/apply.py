"""Executing one decoded command inside the state machine's write transaction.

Pure functions of (transaction content, command, Raft position): every replica that
runs them on equal content gets equal changes and an equal result. They only stage
writes in the caller's transaction; ``StateMachine.apply`` adds the result record and
last_applied and commits. Storage errors (lmdb.Error, OSError) propagate to it.

The one node-local outcome is UnsupportedFormat for a SetClusterMeta enabling a
command version newer than this code: other replicas may know it, so recording a
refusal here would diverge from them; the node stops instead.
"""

from __future__ import annotations

from typing import TypeAlias, assert_never

import lmdb

from raftlog import commands
from raftlog.bulk import columns_of
from raftlog.commands import (
    MAX_INT,
    Append,
    AppendGroup,
    Barrier,
    Command,
    DeleteLog,
    InvalidCommand,
    SetClusterMeta,
    Trim,
)
from raftlog.errors import UnsupportedFormat
from raftlog.state.store import (
    K_CLUSTER,
    Handles,
    entry_prefix,
    entry_size,
    offset_of,
    pack_cluster,
    pack_entries,
    pack_log,
    unpack_cluster,
    unpack_entry,
    unpack_log,
)
from raftlog.state.types import (
    Appended,
    ApplyResult,
    BarrierDone,
    ClusterMeta,
    ClusterMetaSet,
    GroupApplied,
    LogDeleted,
    LogInfo,
    MemberResult,
    Rejected,
    Trimmed,
)

__all__ = ["Decoded", "Txn", "execute", "load_log", "prune_results"]


Txn: TypeAlias = "lmdb.Transaction[bytes]"
Decoded: TypeAlias = tuple[int, Command] | InvalidCommand  # commands.decode's outcome


def execute(txn: Txn, h: Handles, index: int, term: int, decoded: Decoded) -> ApplyResult:
    """Stage the effects of the entry at (index, term) and return its result."""
    if isinstance(decoded, InvalidCommand):
        return Rejected("invalid_command", str(decoded), {"field": decoded.field}, index)
    version, cmd = decoded
    meta = unpack_cluster(txn.get(K_CLUSTER, db=h.meta))
    if version > meta.enabled_version:
        return Rejected(
            "version_not_enabled",
            f"command envelope version {version} is not enabled in this cluster "
            f"(enabled: {meta.enabled_version})",
            {"version": version, "enabled_version": meta.enabled_version},
            index,
        )
    if isinstance(cmd, Append):
        return _append(txn, h, cmd, index, term)
    if isinstance(cmd, AppendGroup):
        return _append_group(txn, h, cmd, index, term)
    if isinstance(cmd, Trim):
        return _trim(txn, h, cmd, index)
    if isinstance(cmd, DeleteLog):
        return _delete_log(txn, h, cmd, index)
    if isinstance(cmd, SetClusterMeta):
        return _set_cluster_meta(txn, h, meta, cmd, index)
    if isinstance(cmd, Barrier):
        return BarrierDone(index)
    assert_never(cmd)


def prune_results(txn: Txn, h: Handles, index: int, window: int) -> None:
    """Delete result records of indices below ``index - window`` (deterministic)."""
    threshold = index - window
    if threshold <= 0:
        return
    cur = txn.cursor(db=h.results)
    if not cur.first():
        return
    while True:
        key = cur.key()
        if not key or int.from_bytes(key, "big") >= threshold or not cur.delete():
            return


def load_log(txn: Txn, h: Handles, log: str) -> LogInfo | None:
    raw = txn.get(log.encode("utf-8"), db=h.logs)
    return None if raw is None else unpack_log(log, raw)


def _append_group(txn: Txn, h: Handles, cmd: AppendGroup, index: int, term: int) -> GroupApplied:
    """Each member in order, as its own append: a member sees what the members before it
    wrote (the same transaction), and a refused member stages nothing."""
    return GroupApplied(tuple(_append(txn, h, a, index, term) for a in cmd.appends), index, term)


def _append(txn: Txn, h: Handles, cmd: Append, index: int, term: int) -> MemberResult:
    info = load_log(txn, h, cmd.log) or LogInfo(cmd.log, 0, 0, 0, 0, 0)
    start = info.next_offset
    if cmd.expected_offset is not None and cmd.expected_offset != start:
        return Rejected(
            "offset_mismatch",
            f"log {cmd.log!r}: expected_offset {cmd.expected_offset} "
            f"but the next offset is {start}",
            {"next_offset": start},
            index,
        )
    # cmd.idempotency_key is accepted and ignored until deduplication lands.
    ts = max(cmd.timestamp_ms, info.last_timestamp_ms)  # non-decreasing within a log
    n = len(cmd.entries)
    values, keys = columns_of(cmd.entries, "value_json", "key")
    records = pack_entries(entry_prefix(cmd.log), start, values, keys, ts, index, term)
    consumed, _ = txn.cursor(db=h.entries).putmulti(records)  # overwrite, as txn.put
    if consumed != n:  # putmulti raises on a failed put: this is a bug, never data
        raise AssertionError(f"putmulti wrote {consumed} of {n} entries")
    added = sum(map(len, values))
    if keys.count(None) != n:
        added += sum(len(k.encode("utf-8")) for k in keys if k is not None)
    new = LogInfo(cmd.log, info.first_offset, start + n, info.count + n, info.bytes + added, ts)
    txn.put(cmd.log.encode("utf-8"), pack_log(new), db=h.logs)
    return Appended(cmd.log, start, start + n - 1, n, index, term, ts)


def _delete_below(txn: Txn, h: Handles, log: str, before: int) -> tuple[int, int]:
    """Delete the entries of ``log`` with offset < before in one cursor walk.

    Returns the (count, bytes) deleted.
    """
    prefix = entry_prefix(log)
    count = size = 0
    cur = txn.cursor(db=h.entries)
    if not cur.set_range(prefix):
        return 0, 0
    while True:
        key = cur.key()
        if not key.startswith(prefix) or offset_of(key) >= before:
            break
        e = unpack_entry(key, cur.value())  # verified: LogInfo.bytes must stay right
        count += 1
        size += entry_size(e.value_json, e.key)
        if not cur.delete():
            break
    return count, size


def _trim(txn: Txn, h: Handles, cmd: Trim, index: int) -> ApplyResult:
    info = load_log(txn, h, cmd.log)
    next_offset = 0 if info is None else info.next_offset
    if cmd.before > next_offset:
        return Rejected(
            "invalid_request",
            f"log {cmd.log!r}: cannot trim before {cmd.before}, past the next offset {next_offset}",
            {"next_offset": next_offset},
            index,
        )
    if info is None:  # before == 0 on a missing log: nothing to do
        return Trimmed(cmd.log, 0, 0, 0, 0, index)
    count, size = _delete_below(txn, h, cmd.log, cmd.before)
    new = LogInfo(
        cmd.log,
        max(info.first_offset, cmd.before),
        info.next_offset,
        info.count - count,
        info.bytes - size,
        info.last_timestamp_ms,
    )
    if new != info:
        txn.put(cmd.log.encode("utf-8"), pack_log(new), db=h.logs)
    return Trimmed(cmd.log, new.first_offset, new.next_offset, new.count, new.bytes, index)


def _delete_log(txn: Txn, h: Handles, cmd: DeleteLog, index: int) -> ApplyResult:
    info = load_log(txn, h, cmd.log)
    if info is None:
        return Rejected("log_not_found", f"log {cmd.log!r} does not exist", {}, index)
    _delete_below(txn, h, cmd.log, MAX_INT + 1)
    # Keep the record so offsets (and timestamps) continue: offsets are never reused.
    new = LogInfo(cmd.log, info.next_offset, info.next_offset, 0, 0, info.last_timestamp_ms)
    txn.put(cmd.log.encode("utf-8"), pack_log(new), db=h.logs)
    return LogDeleted(cmd.log, index)


def _set_cluster_meta(
    txn: Txn, h: Handles, meta: ClusterMeta, cmd: SetClusterMeta, index: int
) -> ApplyResult:
    cluster_id, name, enabled = meta.cluster_id, meta.name, meta.enabled_version
    if cmd.cluster_id is not None:
        if cluster_id is not None and cluster_id != cmd.cluster_id:
            return Rejected(
                "cluster_id_already_set",
                f"the cluster id is already {cluster_id}",
                {"cluster_id": cluster_id},
                index,
            )
        cluster_id = cmd.cluster_id
    if cmd.name is not None:
        name = cmd.name
    if cmd.enable_version is not None:
        if cmd.enable_version > commands.COMMAND_VERSION:  # node-local: stop (see above)
            raise UnsupportedFormat(
                f"entry {index} enables command version {cmd.enable_version}; this "
                f"raftlog understands up to {commands.COMMAND_VERSION}: upgrade this node"
            )
        if cmd.enable_version < enabled:
            return Rejected(
                "invalid_request",
                f"cannot enable version {cmd.enable_version}: version {enabled} "
                "is already enabled (versions are never disabled)",
                {"enabled_version": enabled},
                index,
            )
        enabled = cmd.enable_version
    new = ClusterMeta(cluster_id, name, enabled)
    if new != meta:
        txn.put(K_CLUSTER, pack_cluster(new), db=h.meta)
    return ClusterMetaSet(cluster_id, name, enabled, index)
