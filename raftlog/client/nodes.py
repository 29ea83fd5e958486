"""Which nodes a client knows: URL resolution and each node's backoff record.

No I/O and no sleeping; ``_Nodes`` is thread-safe and blocks only on its own lock. Time comes
from ``_Nodes.clock`` (``time.monotonic`` by default; tests put a fake clock there).
"""

from __future__ import annotations

import os
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


class _Nodes:
    """Candidate URLs, the one that last answered, each node's backoff, and node id -> URL
    from ``/v1/cluster``. Thread-safe; does no I/O; never blocks beyond its own lock.

    Only the client's routing (``_Route``) decides with it; ``clock`` is replaceable for
    tests."""

    def __init__(
        self,
        urls: list[str],
        backoff: float,
        backoff_max: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._urls = urls
        self._preferred = 0
        self._by_id: dict[str, str] = {}
        self._health: dict[str, _Health] = {}
        self._backoff = backoff
        self._backoff_max = backoff_max
        self.clock = clock
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
