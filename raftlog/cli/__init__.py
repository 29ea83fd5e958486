"""The ``raftlog`` command: the entry point (``main``), ``serve`` (the composition root
that wires a Raft node, the service and the HTTP app), the client verbs, the local
config generator, ``check-data`` and the demo.

May import every package: ``raftlog.raft``, ``raftlog.state``, ``raftlog.service``,
``raftlog.client``, ``api`` and the shared top. Nothing imports ``raftlog.cli`` except
``raftlog.__main__`` and the console script.
"""

from raftlog.cli.entry import main

__all__ = ["main"]
