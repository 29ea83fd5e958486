"""The client's own HTTP/1.1 for plain ``http://`` nodes: the pools live in ``pool_sync``
(``SyncPool``, for threads) and ``pool_async`` (``AsyncPool``, for an event loop); this
module has what both share: request bytes, response heads, ``Answer``. Pure functions.

Why not httpx here: under 32 concurrent requests httpx/httpcore spent most of the client's
CPU in its pool (every request scans every pooled connection, a ``select`` each, and a
failed ``import sniffio`` per request when it is not installed) and in building its URL,
request and header objects (see docs/PERFORMANCE.md, "The Python client"). On a 2-core
machine that CPU is taken from the node being measured. These pools do what the client
needs and no more: keep-alive connections per origin, the attempt's connect/read/write
timeouts, ``Content-Length`` and chunked bodies, no redirects, no cookies, no proxies, no
compression (``Accept-Encoding`` is not sent).

Failures are raised as the httpx exceptions the core already classifies (``wire``):
``ConnectError``/``ConnectTimeout`` when nothing was sent (connection refused, connect
timeout), ``WriteError``/``WriteTimeout``/``ReadError``/``ReadTimeout`` and
``RemoteProtocolError`` once the request may have left. A pooled connection is checked
before reuse (the server may have closed it while idle) and dropped after ``IDLE_S``
seconds idle, before the server's keep-alive timeout (uvicorn's default: 5 s).

``Answer`` is the response: the part of ``httpx.Response`` the core reads, with headers in
a plain dict keyed by lower-case name (the core looks headers up by lower-case name).
"""

from __future__ import annotations

import json
import re
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

__all__ = [
    "IDLE_S",
    "MAX_HEAD_BYTES",
    "MAX_IDLE_PER_ORIGIN",
    "Answer",
    "Origin",
    "body_length",
    "chunk_size",
    "keeps_alive",
    "parse_head",
    "plain_http",
    "proxy_configured",
    "request_bytes",
    "target_of",
]

IDLE_S = 4.0  # a pooled connection idle longer than this is closed, not reused
MAX_IDLE_PER_ORIGIN = 256
MAX_HEAD_BYTES = 64 * 1024

Origin = tuple[str, int]


class Answer:
    """One HTTP answer, read completely. ``headers``: lower-case name -> value (a repeated
    header keeps its last value). ``url`` and ``request`` build httpx objects on demand
    (the core needs them only to follow a redirect or learn a scheme)."""

    __slots__ = ("_url", "content", "headers", "method", "reason_phrase", "status_code")

    def __init__(
        self,
        method: str,
        url: str,
        status_code: int,
        reason_phrase: str,
        headers: dict[str, str],
        content: bytes,
    ) -> None:
        self.method = method
        self._url = url
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.headers = headers
        self.content = content

    @property
    def url(self) -> httpx.URL:
        return httpx.URL(self._url)

    @property
    def request(self) -> httpx.Request:
        return httpx.Request(self.method, self._url)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content.decode("utf-8"))


def proxy_configured() -> bool:
    """True when the environment names an HTTP proxy (``HTTP_PROXY``, ``ALL_PROXY``...): the
    client then leaves every request to httpx, which honours it."""
    proxies = urllib.request.getproxies()
    return "http" in proxies or "all" in proxies


def plain_http(url: str | httpx.URL) -> bool:
    """True for an ``http://`` URL (the pools here serve no TLS)."""
    return str(url).startswith("http://")


# -- request bytes and response heads (pure) --------------------------------------------------


_ORIGINS: dict[str, Origin] = {}  # "host:port" -> (host, port); bounded by _MAX_ORIGINS
_MAX_ORIGINS = 1024
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9._~-]*")  # a query value that needs no escaping


def _origin(netloc: str) -> Origin:
    origin = _ORIGINS.get(netloc)
    if origin is None:
        parts = urlsplit(f"http://{netloc}")
        if not parts.hostname:
            raise httpx.InvalidURL(f"no host in {netloc!r}")
        try:
            origin = (parts.hostname, parts.port or 80)
        except ValueError as exc:  # a bad port
            raise httpx.InvalidURL(f"bad port in {netloc!r}") from exc
        if len(_ORIGINS) < _MAX_ORIGINS:
            _ORIGINS[netloc] = origin
    return origin


def _escape(text: str) -> str:
    return text if _PLAIN_VALUE.fullmatch(text) else quote(text, safe="")


def _query(params: dict[str, str]) -> str:
    return "&".join(f"{_escape(name)}={_escape(value)}" for name, value in params.items())


def target_of(url: str, params: dict[str, str] | None) -> tuple[Origin, str, str, str]:
    """``(host, port)``, the ``Host`` header, the request target (path and query) and the
    full URL, for an ``http://`` URL and extra query ``params``."""
    if not url.startswith("http://"):
        raise httpx.UnsupportedProtocol(f"not a plain http URL: {url!r}")
    rest = url[7:]
    cut = len(rest)
    for mark in ("/", "?", "#"):
        found = rest.find(mark)
        if 0 <= found < cut:
            cut = found
    netloc, target = rest[:cut], rest[cut:].partition("#")[0]
    if not netloc or "@" in netloc:
        raise httpx.InvalidURL(f"not a plain http://host:port URL: {url!r}")
    origin = _origin(netloc)
    if not target.startswith("/"):
        target = "/" + target
    if params:
        target = f"{target}{'&' if '?' in target else '?'}{_query(params)}"
    return origin, netloc, target, f"http://{netloc}{target}"


def request_bytes(
    method: str,
    netloc: str,
    target: str,
    headers: dict[str, str],
    body: bytes | None,
) -> bytes:
    fields = [f"{name}: {value}" for name, value in headers.items()]
    if any("\r" in line or "\n" in line for line in fields):
        raise httpx.LocalProtocolError("a header name or value contains CR or LF")
    if body is not None or method in ("POST", "PUT", "PATCH"):
        fields.append(f"Content-Length: {len(body or b'')}")
    text = "\r\n".join([f"{method} {target} HTTP/1.1", f"Host: {netloc}", *fields])
    try:
        head = (text + "\r\n\r\n").encode("ascii")
    except UnicodeEncodeError as exc:
        raise httpx.LocalProtocolError(f"a header is not ASCII: {exc}") from exc
    return head + body if body else head


def parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    """The status, reason and headers of a response head (ending with a blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    version, _, status_reason = lines[0].partition(" ")
    code, _, reason = status_reason.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise httpx.RemoteProtocolError(f"malformed header line {line!r}")
            headers[name.strip().lower()] = value.strip()
    return int(code), reason, headers


def body_length(method: str, status: int, headers: dict[str, str]) -> int | None:
    """The body's length from the head: a number, -1 for chunked, None for until EOF."""
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return 0
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return -1
    length = headers.get("content-length")
    if length is None:
        return None
    try:
        value = int(length)
    except ValueError as exc:
        raise httpx.RemoteProtocolError(f"bad Content-Length {length!r}") from exc
    if value < 0:
        raise httpx.RemoteProtocolError(f"bad Content-Length {length!r}")
    return value


def keeps_alive(headers: dict[str, str], length: int | None) -> bool:
    return length is not None and "close" not in headers.get("connection", "").lower()


def chunk_size(line: bytes) -> int:
    try:
        return int(line.split(b";", 1)[0].strip(), 16)
    except ValueError as exc:
        raise httpx.RemoteProtocolError(f"bad chunk size line {line!r}") from exc
