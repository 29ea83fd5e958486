"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), served entirely by the node.

FastAPI's own pages load their JavaScript and CSS from a CDN: without internet they are
blank. Here the assets come from the ``fastapi-offline`` package (a dependency that ships
Swagger UI and ReDoc bundles; nothing is copied into this repository) and are served
under ``/docs-assets/``. The pages then load nothing but the node's own URLs:

* Swagger UI's validator badge (an image from validator.swagger.io that would also send
  the spec's URL there) is off: ``validatorUrl: null``;
* ReDoc's sidebar logo, an ``<img>`` from cdn.redoc.ly, is replaced by an empty inline
  image, and the Google fonts are not requested;
* the ``sourceMappingURL`` comments of the CSS and ReDoc bundles name maps the package
  does not ship (developer tools would request them and get a 404): they are dropped.

These rewrites are exact string replacements on the package's files; if a new version of
the package changes them, the unit test that lists every URL the pages load fails.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from starlette.responses import HTMLResponse, Response

from api.errors import error_response

__all__ = [
    "ASSETS_PATH",
    "DOCS_PATH",
    "OAUTH2_REDIRECT_PATH",
    "REDOC_PATH",
    "install_docs",
    "package_asset",
    "served_asset",
]

DOCS_PATH = "/docs"
OAUTH2_REDIRECT_PATH = "/docs/oauth2-redirect"
REDOC_PATH = "/redoc"
ASSETS_PATH = "/docs-assets"
_PACKAGE = "fastapi_offline"  # ships static/{swagger-ui-bundle.js,swagger-ui.css,...}

_REDOC_LOGO = 'src:"https://cdn.redoc.ly/redoc/logo-mini.svg"'
_EMPTY_IMAGE = "src:\"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E\""
_CSS_SOURCE_MAP = "/*# sourceMappingURL=swagger-ui.css.map*/"
_REDOC_SOURCE_MAP = "//# sourceMappingURL=redoc.standalone.js.map"


def _fix_redoc(text: str) -> str:
    return text.replace(_REDOC_LOGO, _EMPTY_IMAGE).replace(_REDOC_SOURCE_MAP, "")


@dataclass(frozen=True, slots=True)
class _Asset:
    file: str
    media_type: str
    fix: Callable[[str], str] | None = None  # applied to the text of the file


_ASSETS: dict[str, _Asset] = {
    "swagger-ui-bundle.js": _Asset("swagger-ui-bundle.js", "text/javascript"),
    "swagger-ui.css": _Asset(
        "swagger-ui.css", "text/css", lambda text: text.replace(_CSS_SOURCE_MAP, "")
    ),
    "redoc.standalone.js": _Asset("redoc.standalone.js", "text/javascript", _fix_redoc),
    "favicon.png": _Asset("favicon.png", "image/png"),
}

_CACHE: dict[str, bytes] = {}


def package_asset(name: str) -> bytes:
    """The file ``name`` as the package ships it (unmodified)."""
    return importlib.resources.files(_PACKAGE).joinpath("static", _ASSETS[name].file).read_bytes()


def served_asset(name: str) -> bytes:
    """The file ``name`` as the node serves it (with its rewrite), read once."""
    cached = _CACHE.get(name)
    if cached is None:
        raw = package_asset(name)
        fix = _ASSETS[name].fix
        cached = raw if fix is None else fix(raw.decode("utf-8")).encode("utf-8")
        _CACHE[name] = cached
    return cached


def install_docs(app: FastAPI) -> None:
    """Add the two pages, Swagger UI's OAuth2 redirect page and the assets to ``app``
    (created with ``docs_url=None, redoc_url=None``). Paths honour ``root_path``."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_PATH}",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(OAUTH2_REDIRECT_PATH, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_PATH, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_PATH}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_PATH}/favicon.png",
            with_google_fonts=False,
        )

    @app.get(ASSETS_PATH + "/{name}", include_in_schema=False)
    async def asset(name: str) -> Response:
        if name not in _ASSETS:
            return error_response(404, "not_found", f"no such documentation asset: {name!r}")
        return Response(
            served_asset(name),
            media_type=_ASSETS[name].media_type,
            headers={"Cache-Control": "public, max-age=86400"},
        )
