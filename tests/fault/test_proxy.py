"""Unit tests of the fault-injection proxy (tests/fault/harness/proxy.py).

The upstream is a small threaded echo server on 127.0.0.1; clients are plain
blocking sockets with a timeout on every wait.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.fault.harness.proxy import CHUNK_SIZE, MAX_HELD, LinkProxy, ProxyNet

pytestmark = pytest.mark.unit

WAIT = 3.0  # deadline for anything that is expected to happen
QUIET = 0.3  # how long "nothing arrives" is watched


class EchoServer:
    """Echoes every byte back; half-closes after the client's FIN."""

    def __init__(self, bufsize: int = 256 * 1024) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        # Small fixed kernel buffers (inherited by accepted sockets) keep the
        # back-pressure test independent of TCP autotuning.
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self.accepted = 0
        self.received = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._serve, name="echo-accept", daemon=True)
        self._acceptor.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            with self._lock:
                self.accepted += 1
                self._conns.append(conn)
                self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(CHUNK_SIZE):
                    with self._lock:
                        self.received += len(data)
                    conn.sendall(data)
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # reset by the proxy, or shut down by close()

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(WAIT)
        self._listener.close()
        with self._lock:
            conns, threads = list(self._conns), list(self._threads)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(WAIT)
        assert not any(t.is_alive() for t in threads)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def net() -> Iterator[ProxyNet]:
    with ProxyNet(seed=1) as proxy_net:
        yield proxy_net
    assert not proxy_net.thread.is_alive()


@pytest.fixture
def link(net: ProxyNet, echo: EchoServer) -> LinkProxy:
    return net.add("n1->n2", "127.0.0.1", echo.port)


def dial(link: LinkProxy, timeout: float = WAIT) -> socket.socket:
    return socket.create_connection(("127.0.0.1", link.listen_port), timeout=timeout)


def recv_exactly(sock: socket.socket, n: int, timeout: float = WAIT) -> bytes:
    deadline = time.monotonic() + timeout
    buf = bytearray()
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"got {len(buf)} of {n} bytes")
        sock.settimeout(left)
        data = sock.recv(n - len(buf))
        if not data:
            raise EOFError(f"EOF after {len(buf)} of {n} bytes")
        buf += data
    return bytes(buf)


def assert_silent(sock: socket.socket, quiet: float = QUIET) -> None:
    """Nothing (no data, no EOF, no reset) arrives within ``quiet`` seconds."""
    sock.settimeout(quiet)
    with pytest.raises(TimeoutError):
        sock.recv(1)


def ping(sock: socket.socket, payload: bytes = b"ping") -> float:
    start = time.monotonic()
    sock.sendall(payload)
    assert recv_exactly(sock, len(payload)) == payload
    return time.monotonic() - start


def flows(link: LinkProxy) -> bool:
    """Does a fresh connection through ``link`` echo within QUIET seconds?"""
    with dial(link) as sock:
        sock.sendall(b"?")
        sock.settimeout(QUIET)
        try:
            return sock.recv(1) == b"?"
        except TimeoutError:
            return False


def peer_closed(sock: socket.socket, timeout: float = WAIT) -> str:
    """Wait for the peer to end the connection: "reset" (RST) or "eof" (FIN)."""
    sock.settimeout(timeout)
    try:
        data = sock.recv(1)
    except ConnectionResetError:
        return "reset"
    assert data == b"", f"unexpected data {data!r}"
    return "eof"


class Sender:
    """Sends ``payload`` on ``sock`` from a thread while the test thread reads.

    Uses send() with its own deadline: the socket's timeout is shared with the
    reading thread (which changes it), so sendall()'s overall timeout would not do.
    """

    def __init__(self, sock: socket.socket, payload: bytes, *, then_shutdown: bool) -> None:
        self._sock = sock
        self._payload = payload
        self._then_shutdown = then_shutdown
        self.sent = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + 10 * WAIT
        view = memoryview(self._payload)
        try:
            while view:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(view)} bytes left unsent")
                try:
                    view = view[self._sock.send(view[: 1024 * 1024]) :]
                except TimeoutError:
                    continue
            if self._then_shutdown:
                self._sock.shutdown(socket.SHUT_WR)
            self.sent.set()
        except OSError as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(10 * WAIT + 1)
        assert not self._thread.is_alive()
        if self.error is not None:
            raise self.error


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_pass_through_5mb_intact(link: LinkProxy) -> None:
    payload = random.Random(7).randbytes(5 * 1024 * 1024)
    with dial(link) as sock:
        sender = Sender(sock, payload, then_shutdown=True)
        got = bytearray()
        deadline = time.monotonic() + 10 * WAIT
        while data := sock.recv(1024 * 1024):  # ends at the echo server's FIN
            got += data
            assert time.monotonic() < deadline
        sender.join()
    assert got == payload
    wait_for(lambda: link.stats()["connections_active"] == 0, "both FINs to close the pair")
    stats = link.stats()
    assert stats["connections_accepted"] == 1
    assert stats["bytes_forward"] == stats["bytes_backward"] == len(payload)


def test_cut_forward_holds_then_delivers_in_order(link: LinkProxy, echo: EchoServer) -> None:
    with dial(link) as sock:
        ping(sock)
        link.cut("forward")
        sock.sendall(b"one")
        sock.sendall(b"two")
        assert_silent(sock)
        assert echo.received == 4  # only the first ping got through
        link.heal()
        assert recv_exactly(sock, 6) == b"onetwo"
        ping(sock)


def test_cut_holds_bytes_already_read(link: LinkProxy) -> None:
    """Bytes the proxy has read but not yet written survive a cut, in order."""
    with dial(link) as sock:
        ping(sock)
        link.delay(400)  # keeps the next chunk inside the proxy for a while
        sock.sendall(b"held")
        wait_for(lambda: link.stats()["bytes_held_forward"] == 4, "the proxy to read the chunk")
        link.cut("forward")
        sock.sendall(b"later")
        assert_silent(sock, 0.6)  # longer than the delay: the cut holds it
        link.heal()
        assert recv_exactly(sock, 9) == b"heldlater"


def test_cut_backward_only(link: LinkProxy, echo: EchoServer) -> None:
    with dial(link) as sock:
        ping(sock)
        link.cut("backward")
        sock.sendall(b"pong")
        wait_for(lambda: echo.received == 8, "the forward direction to deliver")
        assert_silent(sock)
        stats = link.stats()
        assert stats["backward_cut"] and not stats["forward_cut"]
        link.heal()
        assert recv_exactly(sock, 4) == b"pong"


def test_new_connection_while_cut_is_accepted_but_silent(link: LinkProxy, echo: EchoServer) -> None:
    link.cut("both")
    with dial(link) as sock:
        sock.sendall(b"early")
        wait_for(lambda: link.stats()["connections_accepted"] == 1, "the proxy to accept")
        assert_silent(sock)
        assert echo.accepted == 0  # no upstream connection until data can flow
        link.heal()
        assert recv_exactly(sock, 5) == b"early"
        assert echo.accepted == 1


def test_back_pressure_bounds_held_bytes(link: LinkProxy) -> None:
    """With the return path cut, the flow stalls and the proxy holds a bounded amount."""
    payload = random.Random(3).randbytes(32 * 1024 * 1024)  # more than all socket buffers
    link.cut("backward")
    with dial(link) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
        sender = Sender(sock, payload, then_shutdown=False)
        try:
            forwarded = [-1]

            def stalled() -> bool:
                before, forwarded[0] = forwarded[0], link.stats()["bytes_forward"]
                time.sleep(0.1)
                return before == forwarded[0]

            wait_for(stalled, "the forward flow to stall")
            stats = link.stats()
            assert 0 < stats["bytes_forward"] < len(payload)
            assert not sender.sent.is_set()  # the sender is blocked by back-pressure
            assert 0 < stats["bytes_held_forward"] <= MAX_HELD + CHUNK_SIZE
            assert stats["bytes_held_backward"] == 0  # nothing read while cut
            link.heal()
            assert recv_exactly(sock, len(payload), timeout=10 * WAIT) == payload
        finally:
            if not sender.sent.wait(WAIT):
                sock.shutdown(socket.SHUT_RDWR)  # unblock the sender on failure
            sender.join()


def test_delay_adds_latency_without_reordering(link: LinkProxy) -> None:
    with dial(link) as sock:
        ping(sock)
        link.delay(100)
        assert link.stats()["delay_ms"] == 100
        assert ping(sock) >= 0.19  # 100 ms each way
        link.delay(20, jitter_ms=20)
        messages = [f"<{i:03d}>".encode() for i in range(40)]
        for message in messages:
            sock.sendall(message)
            time.sleep(0.002)  # separate chunks, each with its own jitter
        expected = b"".join(messages)
        assert recv_exactly(sock, len(expected)) == expected
        link.heal()
        assert link.stats()["delay_ms"] == 0
        ping(sock)


def test_reset_sends_rst_and_allows_reconnect(link: LinkProxy) -> None:
    with dial(link) as sock:
        ping(sock)
        link.reset()
        assert peer_closed(sock) == "reset"  # SO_LINGER 0: an RST, not a FIN
    assert link.stats()["connections_active"] == 0
    with dial(link) as sock:
        ping(sock)
    assert link.stats()["connections_accepted"] == 2


def test_fin_and_rst_propagate(net: ProxyNet) -> None:
    with socket.create_server(("127.0.0.1", 0)) as upstream:
        upstream.settimeout(WAIT)
        link = net.add("n1->n2", "127.0.0.1", upstream.getsockname()[1])
        with dial(link) as client:  # FINs pass through, after the data, each way
            client.sendall(b"hi")
            conn, _ = upstream.accept()
            with conn:
                assert recv_exactly(conn, 2) == b"hi"
                conn.sendall(b"bye")
                conn.shutdown(socket.SHUT_WR)
                assert recv_exactly(client, 3) == b"bye"
                assert peer_closed(client) == "eof"
                client.sendall(b"last")
                client.shutdown(socket.SHUT_WR)
                assert recv_exactly(conn, 4) == b"last"
                assert peer_closed(conn) == "eof"
        wait_for(lambda: link.stats()["connections_active"] == 0, "the pair to close")
        with dial(link) as client:  # an RST from the dialer reaches upstream as an RST
            client.sendall(b"x")
            conn, _ = upstream.accept()
            with conn:
                assert recv_exactly(conn, 1) == b"x"
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                assert peer_closed(conn) == "reset"


def test_unreachable_upstream_resets_the_dialer(net: ProxyNet) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = int(probe.getsockname()[1])  # bound but not listening: refused
        link = net.add("n1->n9", "127.0.0.1", dead_port)
        try:
            client = dial(link)
        except ConnectionResetError:  # the RST can beat connect()'s own completion
            outcome = "reset"
        else:
            with client:
                outcome = peer_closed(client)
    assert outcome == "reset"
    assert link.stats()["upstream_failures"] == 1


def test_bad_arguments(net: ProxyNet, link: LinkProxy) -> None:
    with pytest.raises(ValueError):
        link.cut("sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        link.delay(-1)
    with pytest.raises(ValueError):
        net.add("n1->n2", "127.0.0.1", 1)
    with pytest.raises(KeyError):
        net.get("n9->n1")


def test_partition_isolate_heal_all(net: ProxyNet, echo: EchoServer) -> None:
    names = ["n1->n2", "n2->n1", "n1->n3"]
    links = {name: net.add(name, "127.0.0.1", echo.port) for name in names}
    assert set(net.links) == set(names)
    assert net.get("n1->n3") is links["n1->n3"]

    def cut_links() -> set[str]:
        return {name for name, stats in net.stats().items() if stats["forward_cut"]}

    with dial(links["n2->n1"]) as old:  # a connection that spans the partition
        ping(old)
        net.partition([{"n1"}, {"n2", "n3"}])
        assert cut_links() == set(names)
        assert all(net.get(n).stats()["backward_cut"] for n in names)
        old.sendall(b"across")
        assert_silent(old)

        net.partition([{"n1", "n2"}, {"n3"}])  # replaces the previous partition
        assert cut_links() == {"n1->n3"}
        assert recv_exactly(old, 6) == b"across"
        assert flows(links["n1->n2"])
        assert not flows(links["n1->n3"])

        net.heal_all()
        net.isolate("n2")
        assert cut_links() == {"n1->n2", "n2->n1"}
        assert flows(links["n1->n3"])
        assert not flows(links["n2->n1"])

        net.heal_all()
        net.partition_pair("n3", "n1")
        assert cut_links() == {"n1->n3"}

        net.heal_all()
        assert cut_links() == set()
        assert all(flows(link) for link in links.values())
        ping(old)


def test_stall_cuts_one_direction_of_every_link_of_a_node(net: ProxyNet, echo: EchoServer) -> None:
    for name in ("n1->n2", "n3->n1", "n2->n3"):
        net.add(name, "127.0.0.1", echo.port)

    def cut() -> set[tuple[str, str]]:
        return {
            (name, way)
            for name, stats in net.stats().items()
            for way in ("forward", "backward")
            if stats[f"{way}_cut"]
        }

    net.stall("n1", "out")  # n1 sends forward on n1->n2, backward on n3->n1
    assert cut() == {("n1->n2", "forward"), ("n3->n1", "backward")}
    net.heal_all()
    net.stall("n1", "in")
    assert cut() == {("n1->n2", "backward"), ("n3->n1", "forward")}
    net.heal_all()
    assert cut() == set()


def test_close_stops_thread_and_frees_ports(echo: EchoServer) -> None:
    net = ProxyNet()
    links = [net.add(name, "127.0.0.1", echo.port) for name in ("n1->n2", "n2->n1")]
    ports = [link.listen_port for link in links]
    single = net.add("n1->n3", "127.0.0.1", echo.port)
    single.close()
    assert "n1->n3" not in net.links
    with dial(links[0]) as sock:
        ping(sock)
        links[1].cut("both")
        with dial(links[1]) as idle:
            wait_for(lambda: links[1].stats()["connections_accepted"] == 1, "the accept")
            net.close()
            net.close()  # idempotent
            assert peer_closed(sock) in ("reset", "eof")
            assert peer_closed(idle) in ("reset", "eof")

    assert not net.thread.is_alive()
    assert not any(t.name == "ProxyNet-loop" for t in threading.enumerate())
    assert net.loop.is_closed()
    for port in [*ports, single.listen_port]:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()
    assert links[0].stats()["closed"]
    with pytest.raises(RuntimeError):
        links[0].cut("both")
    with pytest.raises(RuntimeError):
        net.add("n3->n1", "127.0.0.1", echo.port)
