"""The dashboard: HTML pages served by the API process, drawn in the browser from /v1 JSON.

Pages: ``/`` (sweeps), ``/sweeps/{id}`` (one sweep), ``/sweeps/{id}/phase`` (phase
diagram), ``/runs/{id}`` (one run), ``/compare?ids=1,2`` (sweeps on one plot). Each page is
a small HTML shell naming its script; the scripts (``static/*.js``, no build step) fetch the
JSON API with the tab's token (``Authorization: Bearer``, kept in sessionStorage, asked for
on a 401, never put in a URL) and build the page with DOM nodes and ``textContent``, so user
input (names, tags, errors, config values) is never parsed as HTML.

Every asset comes from the installed package: this package's ``static/`` folder, plotly.js
from the plotly wheel (``plotly/package_data/plotly.min.js``, MIT licence) and the display
names of :mod:`service.display` (``/static/display-names.js``: the table the paper figures
use too, so a page says λ and "power law" where the API says weight_decay and power_law).
The pages send a Content-Security-Policy that allows scripts from this server only and
connections to it only, so nothing is fetched from another host.
"""

from __future__ import annotations

import json
from functools import cache
from html import escape
from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.schemas import RunId, SweepId
from service import display

STATIC_DIR = Path(str(files("api.dashboard") / "static"))
PLOTLY_PATH = "/static/vendor/plotly.min.js"
DISPLAY_PATH = "/static/display-names.js"
CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        # plotly.js sets inline styles on its SVG and adds its own style rules
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "font-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


@cache
def plotly_js() -> Path:
    """plotly.min.js inside the installed plotly wheel."""
    path = Path(str(files("plotly") / "package_data" / "plotly.min.js"))
    if not path.is_file():
        raise RuntimeError(f"plotly.min.js not found in the plotly package at {path}")
    return path


def page(request: Request, title: str, script: str, **data: int) -> HTMLResponse:
    """The HTML shell of a page: its title, ``data-*`` ids, whether the API asks for a token
    (``data-auth``: the page then asks before its first request), plotly and its script."""
    auth = "on" if request.app.state.settings.auth == "on" else "off"
    attrs = f' data-auth="{auth}"' + "".join(
        f' data-{k.replace("_", "-")}="{int(v)}"' for k, v in data.items()
    )
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · scalesweep</title>
<link rel="stylesheet" href="/static/dashboard.css">
<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">
</head>
<body data-page="{escape(script)}"{attrs}>
<header class="top"><a class="brand" href="/">scalesweep</a>
<nav><a href="/">sweeps</a><a href="/compare">compare</a></nav>
<span id="auth-state"></span></header>
<main id="app"><p class="muted">Loading…</p></main>
<script src="{PLOTLY_PATH}"></script>
<script src="{DISPLAY_PATH}"></script>
<script src="/static/common.js"></script>
<script src="/static/{escape(script)}.js"></script>
</body>
</html>
"""
    return HTMLResponse(body, headers=SECURITY_HEADERS)


@router.get("/", response_class=HTMLResponse)
def sweeps_page(request: Request) -> HTMLResponse:
    """Every sweep with its live progress."""
    return page(request, "sweeps", "index")


@router.get("/sweeps/{sweep_id}", response_class=HTMLResponse)
def sweep_page(request: Request, sweep_id: SweepId) -> HTMLResponse:
    """One sweep: progress, the risk plot with fits and theory, tables, runs."""
    return page(request, f"sweep {sweep_id}", "sweep", sweep_id=sweep_id)


@router.get("/sweeps/{sweep_id}/phase", response_class=HTMLResponse)
def phase_page(request: Request, sweep_id: SweepId) -> HTMLResponse:
    """The phase diagram of a scaling-path sweep."""
    return page(request, f"phase diagram of sweep {sweep_id}", "phase", sweep_id=sweep_id)


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: RunId) -> HTMLResponse:
    """One run: metrics, certificate, learning curve, spectrum."""
    return page(request, f"run {run_id}", "run", run_id=run_id)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request) -> HTMLResponse:
    """Two or more sweeps on one plot (``?ids=1,2``)."""
    return page(request, "compare sweeps", "compare")


@router.get(PLOTLY_PATH)
def plotly_asset() -> Response:
    """plotly.js from the installed plotly package."""
    return FileResponse(
        plotly_js(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400", **SECURITY_HEADERS},
    )


@cache
def display_names_js() -> str:
    """The display-name table as a script: ``window.SS_DISPLAY = {...};``."""
    table = json.dumps(display.table(), ensure_ascii=False)
    return f"window.SS_DISPLAY = Object.freeze({table});\n"


@router.get(DISPLAY_PATH)
def display_names_asset() -> Response:
    """The display names (service.display) that common.js reads."""
    return Response(
        display_names_js(),
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache", **SECURITY_HEADERS},
    )


def static_files() -> StaticFiles:
    """This package's scripts and style sheet, mounted at /static."""
    return StaticFiles(directory=STATIC_DIR)
