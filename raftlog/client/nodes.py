"""Which nodes a client knows: URL resolution, each node's backoff record, and the spreading
of ``consistency=any`` reads over the nodes (``_ReadSpread``).

No I/O and no sleeping; ``_Nodes`` is thread-safe and blocks only on its own lock. Time comes
from ``_Nodes.clock`` (``time.monotonic`` by default; tests put a fake clock there), the
spread's randomness from ``_Nodes.rand`` (``random.random``; tests put a seeded one there).

**Read spreading.** Every node serves ``any`` reads from its own state, so the client sends
each one to a node drawn at random among the nodes it may use, with a weight of
1 / (that node's latency EWMA): a node twice as fast gets twice the reads. Why weighted random
and not the fastest node or power-of-two-choices: a draw per read cannot herd every
concurrent read onto the node that looked fastest a moment ago; every usable node keeps a
share (weights are clipped to ``MAX_WEIGHT_RATIO`` of the largest), so a node that became
fast again is noticed; and nothing is counted per read in flight, so a call abandoned half
way (a cancelled task drops its plan) leaves nothing to leak. With 3 nodes,
power-of-two-choices on latency alone would never pick the slowest node at all, and with
in-flight counts it needs exactly that bookkeeping.

A node is left out of the spread while it is in failure backoff (no answer: ``failed``), and
for a read-backoff period after it refused an ``any`` read with a 503 (``too_stale``,
``node_stopped``, ``no_leader``: ``refused_read``), ``backoff`` seconds doubling per refusal
in a row up to ``backoff_max``. Coming back from either, it must first answer ``GET
/readyz`` with 200 (the core probes it: ``needs_probe`` / ``probed``) before it gets reads.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

from raftlog.client.models import ClusterStatus

ENV_URL = "RAFTLOG_URL"
DEFAULT_URL = "http://127.0.0.1:8001"


def resolve_urls(urls: str | Sequence[str] | None = None) -> list[str]:
    """Normalize node URLs: ``None`` reads ``RAFTLOG_URL`` (comma-separated), else the
    default; ``host:port`` gets ``http://``; duplicates and trailing slashes go."""
    if urls is None:
        urls = os.environ.get(ENV_URL, "").strip() or DEFAULT_URL
    items = urls.split(",") if isinstance(urls, str) else list(urls)
    out: list[str] = []
    for item in items:
        url = item.strip().rstrip("/")
        if not url:
            continue
        if "://" not in url:
            url = f"http://{url}"
        try:
            parsed = urlsplit(url)
            parsed.port  # noqa: B018 -- raises ValueError on a bad port
        except ValueError as exc:
            raise ValueError(f"invalid raftlog URL {item!r}: {exc}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"invalid raftlog URL {item!r}: expected http(s)://host:port")
        if url not in out:
            out.append(url)
    if not out:
        raise ValueError("no raftlog URL given")
    return out


class _Health:
    """One node's failure record: in backoff until ``until`` (monotonic seconds)."""

    __slots__ = ("failed_at", "failures", "until")

    def __init__(self) -> None:
        self.failures = 0
        self.until = 0.0
        self.failed_at = 0.0


class _ReadStats:
    """One node's record for read spreading: latency EWMA (seconds, None before the first
    sample), read backoff (refused until ``until``), and whether it must pass ``/readyz``
    before its next read."""

    __slots__ = ("ewma", "probe", "refusals", "until")

    def __init__(self) -> None:
        self.ewma: float | None = None
        self.refusals = 0
        self.until = 0.0
        self.probe = False


class _Nodes:
    """Candidate URLs, the one that last answered, each node's backoff, and node id -> URL
    from ``/v1/cluster``. Thread-safe; does no I/O; never blocks beyond its own lock.

    Only the client's routing (``_Route``) decides with it; ``clock`` and ``rand`` (a float
    in [0, 1)) are replaceable for tests."""

    EWMA_ALPHA = 0.3  # weight of the newest latency sample
    LATENCY_FLOOR_S = 0.0005  # latencies below this count as this (no division blow-up)
    MAX_WEIGHT_RATIO = 10.0  # the slowest usable node keeps >= 1/10 of the fastest's weight

    def __init__(
        self,
        urls: list[str],
        backoff: float,
        backoff_max: float,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._urls = urls
        self._preferred = 0
        self._by_id: dict[str, str] = {}
        self._health: dict[str, _Health] = {}
        self._backoff = backoff
        self._backoff_max = backoff_max
        self.clock = clock
        self.rand = rand
        self._reads: dict[str, _ReadStats] = {}
        self._lock = threading.Lock()

    @property
    def urls(self) -> list[str]:
        with self._lock:
            return list(self._urls)

    def now(self) -> float:
        return self.clock()

    def preferred(self) -> str:
        """The node that last answered (the first URL before any answer)."""
        with self._lock:
            return self._urls[self._preferred]

    def after(self, url: str) -> str:
        """The URL following ``url`` in the list (the preferred one for a URL not listed)."""
        with self._lock:
            return self._after(url)

    def _after(self, url: str) -> str:
        if url in self._urls:
            return self._urls[(self._urls.index(url) + 1) % len(self._urls)]
        return self._urls[self._preferred]

    def worked(self, url: str) -> None:
        """``url`` gave the call its answer: it becomes preferred (and leaves backoff)."""
        with self._lock:
            if url not in self._urls:  # a leader learned from /v1/cluster
                self._urls.append(url)
            self._preferred = self._urls.index(url)
            self._health.pop(url, None)

    def alive(self, url: str) -> None:
        """``url`` gave an HTTP answer (a 503 included): it is not frozen, end its backoff."""
        with self._lock:
            self._health.pop(url, None)

    def failed(self, url: str) -> float:
        """``url`` could not be reached or did not answer in time: put it in backoff (or
        lengthen it, doubling per consecutive failure up to the maximum). Returns the
        backoff in seconds."""
        with self._lock:
            health = self._health.setdefault(url, _Health())
            health.failures += 1
            now = self.clock()
            period = min(self._backoff_max, self._backoff * 2.0 ** (health.failures - 1))
            health.failed_at = now
            health.until = now + period
            self._reads.setdefault(url, _ReadStats()).probe = True
            return period

    def backing_off(self, url: str) -> bool:
        with self._lock:
            return self._backing_off(url, self.clock())

    def _backing_off(self, url: str, now: float) -> bool:
        health = self._health.get(url)
        return health is not None and now < health.until

    def pick(self, tried: set[str], start: str | None, *, allow_backoff: bool) -> str | None:
        """The next node to try: the first URL not in ``tried`` and not in backoff, going
        round the list from ``start`` (the preferred node when None or not listed); else,
        when ``allow_backoff``, the untried node in backoff that failed longest ago; else
        None."""
        with self._lock:
            now = self.clock()
            first = self._urls.index(start) if start in self._urls else self._preferred
            order = self._urls[first:] + self._urls[:first]
            untried = [url for url in order if url not in tried]
            for url in untried:
                if not self._backing_off(url, now):
                    return url
            if allow_backoff and untried:
                return min(untried, key=lambda url: self._health[url].failed_at)
            return None

    def url_of(self, node_id: str) -> str | None:
        with self._lock:
            return self._by_id.get(node_id)

    def learn(self, status: ClusterStatus, scheme: str) -> None:
        with self._lock:
            for node in status.nodes:
                if node.http:
                    url = node.http if "://" in node.http else f"{scheme}://{node.http}"
                    self._by_id[node.id] = url.rstrip("/")

    # -- read spreading (see the module docstring) ----------------------------------------

    def pick_read(self, tried: set[str]) -> str | None:
        """A node for an ``any`` read, drawn with weight 1 / latency among the nodes not in
        ``tried``, not in failure backoff and not in read backoff; None when there is none."""
        with self._lock:
            usable = self._read_usable(self.clock(), tried)
            if len(usable) <= 1:
                return usable[0] if usable else None
            weights = self._weights(usable)
            point = self.rand() * sum(weights)
            for url, weight in zip(usable, weights, strict=True):
                point -= weight
                if point < 0:
                    return url
            return usable[-1]

    def _read_usable(self, now: float, tried: set[str]) -> list[str]:
        usable = []
        for url in self._urls:
            if url in tried:
                continue
            health = self._health.get(url)
            if health is not None and now < health.until:
                continue
            stats = self._reads.get(url)
            if stats is not None and now < stats.until:
                continue
            usable.append(url)
        return usable

    def _read_stats(self, url: str) -> _ReadStats:
        stats = self._reads.get(url)
        if stats is None:
            stats = self._reads[url] = _ReadStats()
        return stats

    def _weights(self, urls: list[str]) -> list[float]:
        reads = self._reads
        ewmas = [stats.ewma if (stats := reads.get(url)) is not None else None for url in urls]
        known = [ewma for ewma in ewmas if ewma is not None]
        # A node not measured yet counts as fast as the fastest: it is measured soon.
        fallback = min(known) if known else self.LATENCY_FLOOR_S
        floor = self.LATENCY_FLOOR_S
        weights = [1.0 / max(floor, fallback if ewma is None else ewma) for ewma in ewmas]
        least = max(weights) / self.MAX_WEIGHT_RATIO
        return [max(weight, least) for weight in weights]

    def read_weights(self) -> dict[str, float]:
        """Each usable node's share of ``any`` reads now (0 for a node left out): for
        tests and for looking at a running client."""
        with self._lock:
            usable = self._read_usable(self.clock(), set())
            weights = self._weights(usable) if usable else []
            total = sum(weights)
            shares = dict(zip(usable, (w / total for w in weights), strict=True))
            return {u: shares.get(u, 0.0) for u in self._urls}

    def latency(self, url: str) -> float | None:
        """The latency EWMA of ``any`` reads served by ``url`` (seconds), None before one."""
        with self._lock:
            stats = self._reads.get(url)
            return None if stats is None else stats.ewma

    def served_read(self, url: str, latency: float | None) -> None:
        """``url`` served an ``any`` read in ``latency`` seconds (None: a read that asked
        the server to wait, which says nothing of its speed); its read backoff ends."""
        with self._lock:
            stats = self._read_stats(url)
            stats.refusals = 0
            stats.until = 0.0
            stats.probe = False
            if latency is not None:
                latency = max(0.0, latency)
                if stats.ewma is None:
                    stats.ewma = latency
                else:
                    stats.ewma += self.EWMA_ALPHA * (latency - stats.ewma)

    def refused_read(self, url: str) -> float:
        """``url`` refused an ``any`` read (503): no reads for it for the read-backoff period
        (doubling per refusal in a row), then a ``/readyz`` check. Returns the period."""
        with self._lock:
            stats = self._read_stats(url)
            stats.refusals += 1
            period = min(self._backoff_max, self._backoff * 2.0 ** (stats.refusals - 1))
            stats.until = self.clock() + period
            stats.probe = True
            return period

    def needs_probe(self, url: str) -> bool:
        """True when ``url`` comes back from a backoff and must pass ``/readyz`` first."""
        with self._lock:
            stats = self._reads.get(url)
            return stats is not None and stats.probe

    def probed(self, url: str, ready: bool) -> None:
        """The ``/readyz`` check of ``url``: 200 lets it back into the spread; anything else
        is a refusal (a longer read backoff)."""
        if not ready:
            self.refused_read(url)
            return
        with self._lock:
            self._read_stats(url).probe = False
