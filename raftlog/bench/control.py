"""Small blocking HTTP calls the benchmark makes outside the measured load: health,
leaders, prefill, and the failover client. Standard library only, 127.0.0.1 only.

Contract: ``http_json`` returns ``(status, parsed body or None)``; it raises ``OSError``
(connection refused or reset, timeout) and never retries. A body that is not JSON is
returned as ``None``. May block for up to ``timeout`` seconds; any thread.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

__all__ = ["http_json"]


def http_json(
    method: str,
    url: str,
    body: Any = None,
    *,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """One request with a JSON body (when ``body`` is not None) and ``headers`` on a new
    connection."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"not an http://host:port URL: {url!r}")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        data = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if data is not None:
            sent["Content-Type"] = "application/json"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        conn.request(method, path, body=data, headers=sent)
        response = conn.getresponse()
        raw = response.read()
    except http.client.HTTPException as exc:
        raise OSError(f"{method} {url}: {exc!r}") from exc
    finally:
        conn.close()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = None
    return response.status, parsed
