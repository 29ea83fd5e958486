"""/docs and /redoc work without internet: every URL the pages load (and every URL their
CSS and JavaScript load, as far as a scan can tell) is the node's own and answers 200."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from api.docs import package_asset

pytestmark = [pytest.mark.unit, pytest.mark.anyio]

BASE = "http://t"

# What a browser loads by itself from CSS or JavaScript (links a user may click, XML
# namespaces and documentation strings in the bundles are not loads).
_CSS_LOADS = (
    re.compile(r"""url\(\s*['"]?([^'")\s]+)"""),
    re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'");\s]+)"""),
    re.compile(r"""sourceMappingURL=([^\s*]+)"""),
)
_JS_LOADS = (
    re.compile(r"""\bsrc\s*[:=]\s*['"]([^'"]+)['"]"""),  # <img src>, <script src>, ...
    re.compile(r"""importScripts\(\s*['"]([^'"]+)['"]"""),
    re.compile(r"""url\(\s*['"]?(https?://[^'")\s]+)"""),  # CSS injected by the bundle
    re.compile(r"""@import\s+['"](https?://[^'"]+)"""),
    re.compile(r"""^//# sourceMappingURL=(\S+)""", re.MULTILINE),
    re.compile(r"""fonts\.googleapis\.com[^'"]*"""),
)


class _Refs(HTMLParser):
    """Every URL an HTML page makes the browser load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("src", "href", "spec-url", "data", "poster"):
                self.urls.append(value)
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:  # inline configuration: url: '/openapi.json', ...
            self.urls += re.findall(r"""\burl\s*:\s*['"]([^'"]+)['"]""", data)
            self.urls += re.findall(r"""origin\s*\+\s*['"]([^'"]+)['"]""", data)
            self.urls += [m.group(1) for p in _JS_LOADS for m in p.finditer(data) if m.groups()]


def _loads(text: str, patterns: tuple[re.Pattern[str], ...]) -> list[str]:
    """The literal URLs ``text`` loads. Template literals (``${e}``: the markdown renderer's
    images, which only the spec's own descriptions could supply, and ours have none) are
    not URLs."""
    out = []
    for pattern in patterns:
        for match in pattern.finditer(text):
            url = match.group(1) if match.groups() else match.group(0)
            if "${" not in url:
                out.append(url)
    return out


def _external(url: str, base: str) -> bool:
    if url.startswith("data:") or url.startswith("#"):
        return False
    parts = urlsplit(urljoin(base, url))
    return f"{parts.scheme}://{parts.netloc}" != BASE


async def _check_page(client: httpx.AsyncClient, page: str) -> set[str]:
    """Fetch ``page`` and, recursively, what it loads; return every URL fetched."""
    r = await client.get(page)
    assert r.status_code == 200, page
    assert r.headers["content-type"].startswith("text/html")
    parser = _Refs()
    parser.feed(r.text)
    queue = [(url, BASE + page) for url in parser.urls]
    assert queue, f"{page} loads nothing?"
    fetched: set[str] = set()
    while queue:
        url, base = queue.pop()
        assert not _external(url, base), f"{page} loads {url} (from {base})"
        if url.startswith("data:") or url.startswith("#"):
            continue
        absolute = urljoin(base, url)
        if absolute in fetched:
            continue
        fetched.add(absolute)
        asset = await client.get(absolute)
        status = asset.status_code
        assert status == 200, f"{absolute} (loaded by {base}) answered {status}"
        kind = asset.headers["content-type"]
        if "css" in kind:
            queue += [(u, absolute) for u in _loads(asset.text, _CSS_LOADS)]
        elif "javascript" in kind:
            queue += [(u, absolute) for u in _loads(asset.text, _JS_LOADS)]
    return fetched


async def test_swagger_ui_loads_only_local_urls(client: httpx.AsyncClient) -> None:
    fetched = await _check_page(client, "/docs")
    assert {
        f"{BASE}/openapi.json",
        f"{BASE}/docs-assets/swagger-ui-bundle.js",
        f"{BASE}/docs-assets/swagger-ui.css",
        f"{BASE}/docs-assets/favicon.png",
        f"{BASE}/docs/oauth2-redirect",
    } <= fetched
    page = (await client.get("/docs")).text
    assert '"validatorUrl": null' in page  # no badge from validator.swagger.io


async def test_redoc_loads_only_local_urls(client: httpx.AsyncClient) -> None:
    fetched = await _check_page(client, "/redoc")
    assert {
        f"{BASE}/openapi.json",
        f"{BASE}/docs-assets/redoc.standalone.js",
        f"{BASE}/docs-assets/favicon.png",
    } <= fetched
    assert "fonts.googleapis" not in (await client.get("/redoc")).text


async def test_assets_are_the_packaged_bundles(client: httpx.AsyncClient) -> None:
    for name, kind in (
        ("swagger-ui-bundle.js", "text/javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "text/javascript"),
        ("favicon.png", "image/png"),
    ):
        r = await client.get(f"/docs-assets/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert len(r.content) > 1000
        assert "max-age" in r.headers["cache-control"]
    assert (await client.get("/docs-assets/favicon.png")).content == package_asset("favicon.png")
    r = await client.get("/docs-assets/../pyproject.toml")
    assert r.status_code == 404
    r = await client.get("/docs-assets/other.js")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_the_scan_sees_what_the_raw_bundles_would_load() -> None:
    """Negative control: unmodified, the packaged ReDoc bundle loads its logo from a CDN
    and the CSS names a source map that is not shipped; the scan above sees both."""
    redoc = package_asset("redoc.standalone.js").decode()
    assert any(_external(u, BASE + "/docs-assets/x") for u in _loads(redoc, _JS_LOADS))
    css = package_asset("swagger-ui.css").decode()
    assert "swagger-ui.css.map" in _loads(css, _CSS_LOADS)
