"""The dashboard's HTML, scripts and headers (no browser; tests/api/test_dashboard_browser.py
drives a real Chromium)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from api_helpers import TestClient

from api.dashboard import CSP, DISPLAY_PATH, PLOTLY_PATH, STATIC_DIR
from service import display

PAGES = ["/", "/sweeps/1", "/sweeps/1/phase", "/runs/1", "/compare", "/compare?ids=1,2"]


@pytest.mark.parametrize("path", PAGES)
def test_pages_are_html_shells_with_a_strict_csp(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert csp == CSP
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-eval" not in csp and "script-src 'self' 'unsafe-inline'" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    html = r.text
    assert "<script>" not in html and " on" not in re.sub(r'"[^"]*"', '""', html)
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref.startswith("/") and not ref.startswith("//"), ref  # this server only


def test_every_referenced_asset_is_served_from_the_package(client: TestClient) -> None:
    html = client.get("/sweeps/1").text
    refs = re.findall(r'(?:src|href)="(/static/[^"]*)"', html)
    assert PLOTLY_PATH in refs and "/static/common.js" in refs and "/static/sweep.js" in refs
    for ref in refs:
        r = client.get(ref)
        assert r.status_code == 200, ref
    plotly = client.get(PLOTLY_PATH)
    assert plotly.headers["content-type"].startswith("text/javascript")
    assert len(plotly.content) > 1_000_000 and b"plotly" in plotly.content[:2000].lower()
    assert client.get("/static/nope.js").status_code == 404


def test_the_scripts_load_nothing_from_another_host_and_never_write_html() -> None:
    for path in Path(STATIC_DIR).iterdir():
        text = path.read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name only
        assert not re.search(r"https?://", text), path.name  # no CDN, no other host
        if path.suffix == ".js":
            for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                           "eval(", "new Function"):  # fmt: skip
                assert unsafe not in text, (path.name, unsafe)
            assert "localStorage" not in text  # the token lives in sessionStorage only
            assert "?token=" not in text and "token=" not in text.replace("token()", "")


def test_bad_ids_in_page_paths_are_422(client: TestClient) -> None:
    assert client.get("/sweeps/abc").status_code == 422
    assert client.get("/runs/0").status_code == 422


def test_the_api_docs_keep_the_dashboard_out_of_the_schema(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/sweeps/{sweep_id}" not in paths and "/v1/sweeps/{sweep_id}/export" in paths


def test_the_pages_get_the_display_names_of_the_figures(client: TestClient) -> None:
    # one table (service.display) for the dashboard and the paper figures
    html = client.get("/sweeps/1").text
    refs = re.findall(r'<script src="([^"]*)"', html)
    assert refs.index(DISPLAY_PATH) < refs.index("/static/common.js")  # read by common.js
    r = client.get(DISPLAY_PATH)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.headers["content-security-policy"] == CSP
    prefix, suffix = "window.SS_DISPLAY = Object.freeze(", ");\n"
    assert r.text.startswith(prefix) and r.text.endswith(suffix)
    table = json.loads(r.text[len(prefix) : -len(suffix)])
    assert table == display.table()
    assert table["fields"]["weight_decay"]["symbol"] == "λ"
    assert table["fields"]["link_power"] == {"symbol": "l", "tex": "l", "meaning": "λ ∝ x⁻ˡ",
                                             "sign": -1}  # fmt: skip
    assert table["forms"]["broken_power_law"] == "broken power law"
