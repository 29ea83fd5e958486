"""The namespace back-end: topology, one-way drops, random loss, heal, clean-up.

Traffic is UDP between sockets opened by threads inside the namespaces, so a drop in
one direction is visible as such (TCP would stall both ways on a one-way drop).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.fault.harness.netns import NamespaceNet, netns_unavailable

pytestmark = [pytest.mark.fault, pytest.mark.timeout(120)]

PORT = 9000
SO_RCVBUFFORCE = 33  # Linux; not exported by the socket module


@pytest.fixture
def net() -> Iterator[NamespaceNet]:
    reason = netns_unavailable()
    if reason is not None:
        print(f"namespace back-end not run: {reason}")
        pytest.skip(f"namespace back-end unavailable: {reason}")
    with NamespaceNet(["n1", "n2", "n3"]) as n:
        yield n


def datagrams_delivered(net: NamespaceNet, src: str, dst: str, count: int = 50) -> int:
    """Send ``count`` datagrams src -> dst; how many arrived (waits at most ~1 s)."""
    receiver = net.run_in(dst, lambda: _bound_udp(net.addresses[dst]))
    try:

        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for i in range(count):
                    s.sendto(str(i).encode(), (net.addresses[dst], PORT))

        net.run_in(src, send)
        got = set()
        deadline = time.monotonic() + 1.0
        receiver.settimeout(0.2)
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.add(receiver.recv(64))
            except TimeoutError:
                continue
        return len(got)
    finally:
        receiver.close()


def _bound_udp(address: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        # Room for every datagram of a burst: an overflowing buffer would look like loss.
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        s.bind((address, PORT))
    except BaseException:
        s.close()
        raise
    return s


def test_nodes_reach_each_other_and_the_root_namespace_reaches_none(net: NamespaceNet) -> None:
    for src, dst in (("n1", "n2"), ("n2", "n3"), ("n3", "n1")):
        assert datagrams_delivered(net, src, dst) == 50
    root_links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    assert not any(name in root_links for name in ("vn1", "vcli", "br0"))
    with socket.socket() as s, pytest.raises(OSError):  # blackhole: never leaves the host
        s.settimeout(1)
        s.connect((net.addresses["n1"], PORT))


def test_block_drops_one_direction_only_and_heal_restores(net: NamespaceNet) -> None:
    net.block("n1", "n2")
    assert datagrams_delivered(net, "n1", "n2") == 0
    assert datagrams_delivered(net, "n2", "n1") == 50
    assert datagrams_delivered(net, "n1", "n3") == 50
    net.heal_all()
    assert datagrams_delivered(net, "n1", "n2") == 50


def test_partition_and_isolate(net: NamespaceNet) -> None:
    net.partition([{"n1"}, {"n2", "n3"}])
    assert datagrams_delivered(net, "n2", "n1") == 0
    assert datagrams_delivered(net, "n1", "n3") == 0
    assert datagrams_delivered(net, "n2", "n3") == 50
    net.partition([{"n1", "n2"}, {"n3"}])  # replaces the previous partition
    assert datagrams_delivered(net, "n2", "n1") == 50
    assert datagrams_delivered(net, "n3", "n2") == 0
    net.heal_all()
    net.isolate("n3")
    assert datagrams_delivered(net, "n1", "n3") == 0
    assert datagrams_delivered(net, "n3", "n2") == 0
    assert datagrams_delivered(net, "n1", "n2") == 50


def test_stall_in_and_out(net: NamespaceNet) -> None:
    net.stall("n1", "out")
    assert datagrams_delivered(net, "n1", "n2") == 0
    assert datagrams_delivered(net, "n2", "n1") == 50
    net.heal_all()
    net.stall("n1", "in")
    assert datagrams_delivered(net, "n1", "n2") == 50
    assert datagrams_delivered(net, "n3", "n1") == 0


def test_random_loss_drops_about_the_given_share(net: NamespaceNet) -> None:
    net.loss(0.3, ["n2"])
    delivered = datagrams_delivered(net, "n1", "n2", count=1000)
    # Binomial(1000, 0.7): 700 +- 14.5; the bounds are ~7 standard deviations wide.
    assert 600 <= delivered <= 800, delivered
    assert datagrams_delivered(net, "n2", "n1") == 50
    net.heal_all()
    assert datagrams_delivered(net, "n1", "n2", count=200) == 200


def test_bad_arguments_are_refused(net: NamespaceNet) -> None:
    with pytest.raises(ValueError, match="unknown nodes"):
        net.block("n1", "n9")
    with pytest.raises(ValueError, match="probability"):
        net.loss(1.5)


def test_close_leaves_nothing_behind() -> None:
    reason = netns_unavailable()
    if reason is not None:
        pytest.skip(f"namespace back-end unavailable: {reason}")
    net = NamespaceNet(["n1", "n2"])
    tag, prefix = net.tag, net.prefix
    net.close()
    assert tag not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    routes = subprocess.run(["ip", "route", "show"], capture_output=True, text=True).stdout
    assert prefix not in routes
