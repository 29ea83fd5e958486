"""``node.json``: which node and cluster a data dir belongs to, and whether it votes.

``{"format": 1, "node_id", "cluster_name", "voter"}``. Written when a node first starts
on an empty data dir, with ``voter`` false (voting.py: an empty data dir may be a lost
one), and rewritten once with ``voter`` true. A file without ``voter`` comes from before
that rule, from a node that ran on this data: a voter. Writes are atomic and durable
(temporary file, fsync, rename, fsync of the directory): a crash leaves the old file or
the new one, never a torn one, and ``voter`` true is on disk before the node acts on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from raftlog.errors import ConfigError, UnsupportedFormat

__all__ = ["IDENTITY_FILE", "IDENTITY_FORMAT", "check_identity", "mark_voter"]

IDENTITY_FILE = "node.json"
IDENTITY_FORMAT = 1


def check_identity(data_dir: Path, node_id: str, cluster_name: str, *, new_voter: bool) -> bool:
    """Check (or, on an empty dir, create) ``node.json``; returns whether the node votes.

    ConfigError when the dir belongs to another node or cluster, or is not empty and has
    no node.json; UnsupportedFormat for a newer format. ``new_voter`` is what a new data
    dir gets (False except under the UNSAFE negative control)."""
    path = data_dir / IDENTITY_FILE
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored.get("format", 0) > IDENTITY_FORMAT:
            raise UnsupportedFormat(f"{path} has a format this raftlog does not know")
        if stored.get("node_id") != node_id:
            raise ConfigError(
                f"data dir {data_dir} belongs to node {stored.get('node_id')!r}, "
                f"not {node_id!r}; refusing to start"
            )
        if stored.get("cluster_name") != cluster_name:
            raise ConfigError(
                f"data dir {data_dir} belongs to cluster {stored.get('cluster_name')!r}, "
                f"not {cluster_name!r}; refusing to start"
            )
        return bool(stored.get("voter", True))
    if any(data_dir.iterdir()):
        raise ConfigError(
            f"data dir {data_dir} is not empty and has no {IDENTITY_FILE}; "
            "refusing to start on data of unknown origin"
        )
    _write(path, node_id, cluster_name, voter=new_voter)
    return new_voter


def mark_voter(data_dir: Path, node_id: str, cluster_name: str) -> None:
    """Record durably that the node votes (OSError when the disk refuses)."""
    _write(data_dir / IDENTITY_FILE, node_id, cluster_name, voter=True)


def _write(path: Path, node_id: str, cluster_name: str, *, voter: bool) -> None:
    data = {
        "format": IDENTITY_FORMAT,
        "node_id": node_id,
        "cluster_name": cluster_name,
        "voter": voter,
    }
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
