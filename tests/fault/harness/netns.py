"""Kernel network faults: one network namespace per node, nftables drops (root only).

Topology, all created by this module and removed by :meth:`NamespaceNet.close`:

* ``<tag>-sw`` holds a bridge; ``<tag>-n1``, ``<tag>-n2``, ... hold one node each, with
  one veth into the bridge and an address in a private ``10.251.K.0/24`` prefix;
  ``<tag>-cli`` holds the test driver's sockets (workers, probes, status polls).
* Veths are created directly inside the namespaces, so the root namespace never gains
  an interface. A blackhole route for the prefix in the root namespace makes a packet
  sent there by mistake (a thread that forgot to enter the client namespace) fail with
  EINVAL instead of leaving through the machine's real interface.

Faults are nftables rules in each *receiving* node's input hook, so they are real
kernel drops: the sender sees silence, TCP retransmits, nothing is reset. ``block(a, b)``
drops what ``a`` sends to ``b`` (one direction); partitions are blocks in both
directions; ``loss(p)`` drops each packet arriving at a node with probability ``p``
(``numgen random``), for node-to-node and client-to-node traffic alike. All traffic
between two nodes is affected, Raft and HTTP forwarding alike, as in a real network.

Thread contract: every method may be called from any thread. A change is applied to
each node's table in one ``nft -f`` transaction (blocking, a few ms per node); a
failure raises and leaves the previous rules in place. :meth:`in_client` runs a
function on a new thread that lives in the client namespace; threads and sockets it
creates stay there.
"""

from __future__ import annotations

import ctypes
import functools
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Literal, TypeVar

_T = TypeVar("_T")
CLONE_NEWNET = 0x40000000
PREFIX_FIRST_OCTETS = "10.251"
TABLE = "raftlog_fault"
Direction = Literal["in", "out"]


def _run(*cmd: str, stdin: str | None = None) -> str:
    done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


@functools.cache
def netns_unavailable() -> str | None:
    """Why the namespace back-end cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "needs root (ip netns, nftables)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian package {package})"
    probe = f"rlprobe{os.getpid()}"
    try:
        _run("ip", "netns", "add", probe)
    except (RuntimeError, OSError) as exc:
        return f"ip netns add is not permitted here: {exc}"
    try:
        _run("ip", "netns", "exec", probe, "nft", "list", "ruleset")
    except (RuntimeError, OSError) as exc:
        return f"nft does not work inside a namespace: {exc}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


def _enter_namespace(name: str) -> None:
    """Move the calling thread (only) into network namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NamespaceNet:
    """Namespaces and faults for ``nodes``; a context manager that always cleans up."""

    def __init__(self, nodes: list[str]) -> None:
        self.tag = f"rlf{secrets.token_hex(3)}"
        self.nodes = list(nodes)
        self._lock = threading.Lock()
        self._blocked: set[tuple[str, str]] = set()  # (src, dst): src -> dst dropped
        self._loss: dict[str, float] = {}  # dst -> drop probability of arriving packets
        self._namespaces: list[str] = []
        self._route: str | None = None
        octet = self._unused_octet()
        self.prefix = f"{PREFIX_FIRST_OCTETS}.{octet}.0/24"
        self.addresses = {
            nid: f"{PREFIX_FIRST_OCTETS}.{octet}.{10 + i}" for i, nid in enumerate(self.nodes)
        }
        self.client_address = f"{PREFIX_FIRST_OCTETS}.{octet}.200"
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    # -- set-up and tear-down --------------------------------------------------------

    @staticmethod
    def _unused_octet() -> int:
        routes = _run("ip", "route", "show", "table", "all")
        for _ in range(100):
            octet = 1 + secrets.randbelow(254)
            if f"{PREFIX_FIRST_OCTETS}.{octet}." not in routes:
                return octet
        raise RuntimeError(f"no free {PREFIX_FIRST_OCTETS}.K.0/24 prefix")

    def ns(self, member: str) -> str:
        """Namespace name of a node id, or of "sw" / "cli"."""
        return f"{self.tag}-{member}"

    def _add_namespace(self, member: str) -> str:
        name = self.ns(member)
        _run("ip", "netns", "add", name)
        self._namespaces.append(name)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def _build(self) -> None:
        _run("ip", "route", "add", "blackhole", self.prefix)
        self._route = self.prefix
        sw = self._add_namespace("sw")
        _run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", sw, "link", "set", "br0", "up")
        members = [(nid, self.addresses[nid]) for nid in self.nodes]
        members.append(("cli", self.client_address))
        for member, address in members:
            name = self._add_namespace(member)
            port = f"v{member}"
            _run(
                "ip", "link", "add", "e0", "netns", name,
                "type", "veth", "peer", "name", port, "netns", sw,
            )  # fmt: skip
            _run("ip", "-n", sw, "link", "set", port, "master", "br0")
            _run("ip", "-n", sw, "link", "set", port, "up")
            _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", "e0")
            _run("ip", "-n", name, "link", "set", "e0", "up")
        for nid in self.nodes:
            self._apply(nid, set(), 0.0)

    def __enter__(self) -> NamespaceNet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Delete every namespace and the route; raise if anything is left behind.

        The caller ends the processes it started in the namespaces first (a namespace
        with a live process in it outlives ``ip netns del``)."""
        for name in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)
        self._namespaces.clear()
        if self._route is not None:
            subprocess.run(
                ["ip", "route", "del", "blackhole", self._route], capture_output=True, timeout=30
            )
            self._route = None
        left = [n for n in _run("ip", "netns", "list").split() if n.startswith(self.tag)]
        if left:
            raise AssertionError(f"namespaces left behind: {left}")

    # -- using the namespaces --------------------------------------------------------

    def exec_prefix(self, nid: str) -> list[str]:
        """Command prefix that runs a program inside node ``nid``'s namespace."""
        return ["ip", "netns", "exec", self.ns(nid)]

    def in_client(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on a new thread inside the client namespace; return or re-raise."""
        return self.run_in("cli", fn)

    def run_in(self, member: str, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on a new thread inside ``member``'s namespace (a node id or "cli")."""
        result: list[_T] = []
        error: list[BaseException] = []

        def body() -> None:
            try:
                _enter_namespace(self.ns(member))
                result.append(fn())
            except BaseException as exc:
                error.append(exc)

        thread = threading.Thread(target=body, name=f"{self.tag}-driver")
        thread.start()
        thread.join()
        if error:
            raise error[0]
        return result[0]

    # -- faults ------------------------------------------------------------------------

    def block(self, src: str, dst: str) -> None:
        """Drop every packet ``src`` sends to ``dst`` (one direction)."""
        self._change(add={(src, dst)})

    def isolate(self, node: str) -> None:
        """Cut ``node`` from every other node, both directions."""
        others = [n for n in self.nodes if n != node]
        self._change(add={(node, o) for o in others} | {(o, node) for o in others})

    def partition(self, groups: list[set[str]]) -> None:
        """Cut nodes in different groups apart; rejoin nodes in the same group."""
        where = {n: i for i, group in enumerate(groups) for n in group}
        add, remove = set(), set()
        for a in where:
            for b in where:
                if a != b:
                    (add if where[a] != where[b] else remove).add((a, b))
        self._change(add=add, remove=remove)

    def partition_pair(self, a: str, b: str) -> None:
        """Cut ``a`` and ``b`` apart only; both still reach everyone else."""
        self._change(add={(a, b), (b, a)})

    def stall(self, node: str, direction: Direction) -> None:
        """Drop everything ``node`` sends to its peers ("out") or receives from them ("in")."""
        others = [n for n in self.nodes if n != node]
        pairs = {(node, o) for o in others} if direction == "out" else {(o, node) for o in others}
        self._change(add=pairs)

    def loss(self, probability: float, nodes: list[str] | None = None) -> None:
        """Drop each packet arriving at ``nodes`` (default all) with ``probability``."""
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"loss probability must be within [0, 1], got {probability}")
        with self._lock:
            for nid in nodes or self.nodes:
                self._loss[nid] = probability
            self._apply_all()

    def heal_all(self) -> None:
        """Remove every block and all loss."""
        with self._lock:
            self._blocked.clear()
            self._loss.clear()
            self._apply_all()

    def rules(self, nid: str) -> str:
        """The node's current nftables table (for logs and tests)."""
        return _run("ip", "netns", "exec", self.ns(nid), "nft", "list", "table", "inet", TABLE)

    def dropped(self) -> dict[str, int]:
        """Packets dropped at each node since its rules last changed (nft counters)."""
        counts = {}
        for nid in self.nodes:
            words = self.rules(nid).split()
            counts[nid] = sum(int(words[i + 1]) for i, w in enumerate(words) if w == "packets")
        return counts

    def _change(
        self, *, add: set[tuple[str, str]], remove: set[tuple[str, str]] | None = None
    ) -> None:
        unknown = {n for pair in add | (remove or set()) for n in pair} - set(self.nodes)
        if unknown:
            raise ValueError(f"unknown nodes {sorted(unknown)}")
        with self._lock:
            self._blocked -= remove or set()
            self._blocked |= add
            self._apply_all()

    def _apply_all(self) -> None:
        for nid in self.nodes:
            sources = {src for src, dst in self._blocked if dst == nid}
            self._apply(nid, sources, self._loss.get(nid, 0.0))

    def _apply(self, nid: str, sources: set[str], loss: float) -> None:
        rules = ["type filter hook input priority 0; policy accept;"]
        if sources:
            addrs = ", ".join(sorted(self.addresses[s] for s in sources))
            rules.append(f"ip saddr {{ {addrs} }} counter drop")
        if loss > 0:
            rules.append(
                f'iifname "e0" numgen random mod 10000 < {round(loss * 10000)} counter drop'
            )
        body = "\n    ".join(rules)
        # Declare, delete and re-create in one transaction: the swap is atomic.
        script = (
            f"table inet {TABLE}\ndelete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n  chain input {{\n    {body}\n  }}\n}}\n"
        )
        _run("ip", "netns", "exec", self.ns(nid), "nft", "-f", "-", stdin=script)
