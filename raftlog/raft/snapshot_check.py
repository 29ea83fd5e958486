"""The offline check of a snapshot file (``raftlog check-data``): a Raft dump
(``raft.snapshot``, RLRAFT) or a bare state snapshot (RLSNAP).

Reads only; never creates or modifies what it checks. Lives in ``raftlog.raft``
because it reads the Raft dump format; the record walk is ``raftlog.state.verify``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from raftlog import checksum
from raftlog.errors import UnsupportedFormat
from raftlog.raft.dump_format import read_dump_header, verify_dump_stream
from raftlog.state.snapshot import TRAILER_MAGIC, data_length, parse_header, stage_data
from raftlog.state.verify import Problem, check_env

__all__ = ["verify_snapshot_file"]


def verify_snapshot_file(path: Path) -> list[Problem]:
    """Every problem of a snapshot file: a Raft dump (``raft.snapshot``, RLRAFT) or a
    state snapshot (RLSNAP). Checks the header, the checksum trailer(s) and, when those
    pass, every record of the embedded LMDB copy (staged in a temporary directory)."""
    file = str(path)
    try:
        with open(path, "rb") as f:
            start = 0
            if f.read(6) == b"RLRAFT":
                f.seek(0)
                problem = verify_dump_stream(f)
                if problem is not None:
                    return [Problem(file, "trailer", problem)]
                f.seek(0)
                _, start = read_dump_header(f)
            f.seek(start)
            header, header_size = parse_header(f)
            size = os.fstat(f.fileno()).st_size - start
            if header["format"] >= 2:
                f.seek(start)
                problem = checksum.verify_stream(f, TRAILER_MAGIC, size)
                if problem is not None:
                    return [Problem(file, f"state snapshot at byte {start}", problem)]
            length = data_length(header, header_size, size - header_size)
            with tempfile.TemporaryDirectory(prefix="raftlog-verify-") as tmp:
                f.seek(start + header_size)
                stage_data(f, Path(tmp) / "state", length)
                return [
                    Problem(file, f"embedded state (byte {start + header_size}): {p.where}", p.what)
                    for p in check_env(Path(tmp) / "state", file)
                ]
    except FileNotFoundError:
        return [Problem(file, "file", "missing")]
    except UnsupportedFormat as exc:
        return [Problem(file, "header", str(exc))]
    except OSError as exc:
        return [Problem(file, "file", f"reading failed: {exc}")]
