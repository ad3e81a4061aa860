"""The dashboard in a real headless Chromium (Debian's chromium, driven by Playwright).

A live uvicorn server in a thread serves a store seeded by hand; the tests stand in for the
runner where a sweep must progress. Every page must load with no console error and no
request to another host; plots are drawn on log axes with readable tick labels; legends use
the display names the figures use; progress updates while a sweep runs; what is empty says
what is coming, errors read as sentences; user input is never run as HTML; with
SCALESWEEP_AUTH=on the token is asked once per tab, sent as a Bearer header and never put
in a URL.

Without /usr/bin/chromium these tests skip, unless SCALESWEEP_REQUIRE_BROWSER=1 (.ci/run
installs the package and sets it), where they fail.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import uvicorn
from factories import curve, result, spectrum, tail_fit

from api.main import create_app
from service import display
from service.auth import TokenService
from service.config import Settings
from service.spec import SweepSpec
from service.storage import Store, make_store, upgrade_head
from service.storage.base import iter_runs
from service.storage.tokens import TokenStore

CHROMIUM = "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    if os.environ.get("SCALESWEEP_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"SCALESWEEP_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
    pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import Browser, ConsoleMessage, Page, Route, sync_playwright  # noqa: E402
from playwright.sync_api import Error as PlaywrightError  # noqa: E402

XSS_NAME = "<img src=x onerror=alert(1)>"
SPECTRUM = spectrum([k**-1.5 for k in range(1, 51)], tail=tail_fit(alpha=1.67), rank_exponent=1.5)
WAIT_MS = 15_000


@dataclass
class Live:
    """A server on 127.0.0.1 with its store."""

    url: str
    store: Store
    server: uvicorn.Server
    thread: threading.Thread
    tokens: TokenService | None = None
    ids: dict[str, int] = field(default_factory=dict)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(tmp: Path, *, auth: bool) -> Live:
    url = f"sqlite:///{tmp / 'dash.db'}"
    upgrade_head(url)
    store = make_store(url)
    settings = Settings(_env_file=None, database_url=url, auth="on" if auth else "off")  # type: ignore[call-arg]
    tokens = TokenService(TokenStore.of(store)) if auth else None
    app = create_app(
        settings, store, verify_token=tokens.verify if tokens else None, events_poll_s=0.1
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return Live(f"http://127.0.0.1:{port}", store, server, thread, tokens)


TIMINGS = {"data": 0.05, "train": 0.6, "certificate": 0.3, "corrections": 0.0, "spectra": 0.05}
"""Seconds per phase of a run, as a worker reports them (their sum: the 1 s wall time)."""


def _finish(store: Store, sweep_id: int, *, only: int | None = None) -> None:
    """Results for a sweep's queued runs (R ~ n^-1 with seed scatter, spectra, curves)."""
    runs = [r for r in iter_runs(store, sweep_id) if r.status == "queued"][:only]
    out = []
    for r in runs:
        n, seed = r.config.n, r.config.seed
        risk = (1.0 + 0.05 * (seed - 1)) * 3.0 / n
        extra = {"timings": TIMINGS, "wall_time_s": 1.0}
        made = result(r.config_hash, risk, spectra=[SPECTRUM], learning_curve=curve(5), **extra)
        out.append((r.id, made))
    store.record_results(out)


def _seed(live: Live) -> None:
    store = live.store
    diag = SweepSpec.model_validate(
        {
            "name": XSS_NAME,
            "model": "diagonal",
            "teacher": {"gamma": 1.5, "noise": 0.0},
            "grid": {"d": [50], "n": [25, 50, 100, 200], "seed": [0, 1, 2]},
            "link": {"weight_decay": {"coef": 0.1, "of": "n", "power": [-0.5, -1.0]}},
            "training": {"optimizer": "convex"},
        }
    )
    a = store.create_sweep(diag, max_runs=1000)
    _finish(store, a.id)
    store.update_sweep(a.id, tags=["paper", "<b>bold</b>"])
    quad = SweepSpec.model_validate(
        {
            "name": "quadratic",
            "model": "quadratic",
            "teacher": {"gamma": 1.0, "noise": 0.01},
            "grid": {"d": [8], "n": [40, 80, 160], "weight_decay": [0.01, 0.1], "seed": [0, 1]},
        }
    )
    b = store.create_sweep(quad, max_runs=1000)
    _finish(store, b.id)
    wide = SweepSpec.model_validate(
        {"name": "wide", "model": "diagonal",
         "grid": {"d": [20], "n": [200, 400, 800, 1600], "weight_decay": [0.01]}}
    )  # fmt: skip
    c = store.create_sweep(wide, max_runs=100)
    _finish(store, c.id)
    # a run that recorded no learning curve
    bare = store.create_sweep(SweepSpec.model_validate(
        {"name": "bare", "model": "diagonal", "grid": {"d": [6], "n": [10], "weight_decay": [0.1]}}
    ), max_runs=10)  # fmt: skip
    run = next(iter_runs(store, bare.id))
    store.record_results([(run.id, result(run.config_hash, 0.1, spectra=[SPECTRUM]))])
    live.ids.update(diag=a.id, quad=b.id, wide=c.id, run=next(iter_runs(store, a.id)).id,
                    bare_run=run.id)  # fmt: skip


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = _serve(tmp_path_factory.mktemp("dash"), auth=False)
    _seed(server)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@dataclass
class Watched:
    """A page with what went wrong on it: console errors, alerts, requests elsewhere."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert self.foreign == [], self.foreign


def _watch(browser: Browser, base: str, width: int = 1400) -> Watched:
    page = browser.new_page(viewport={"width": width, "height": 1000})
    w = Watched(page)
    host = urlsplit(base).netloc

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            w.errors.append(msg.text)

    def guard(route: Route) -> None:
        url = route.request.url
        if urlsplit(url).netloc != host and not url.startswith(("data:", "blob:")):
            w.foreign.append(url)  # fails the test in clean()
            route.abort()
            return
        w.requests.append({"url": url, "headers": route.request.headers})
        route.continue_()

    page.on("console", on_console)
    page.on("pageerror", lambda exc: w.errors.append(f"pageerror: {exc}"))
    page.on("dialog", lambda d: (w.dialogs.append(d.message), d.dismiss()))
    page.route("**/*", guard)
    return w


@pytest.fixture
def watched(browser: Browser, live: Live) -> Iterator[Callable[..., Watched]]:
    pages: list[Watched] = []

    def make(width: int = 1400, base: str | None = None) -> Watched:
        w = _watch(browser, base or live.url, width)
        pages.append(w)
        return w

    yield make
    for w in pages:
        w.page.close()


def _axis_types(page: Page, plot_id: str) -> list[str]:
    page.wait_for_function(
        f"() => document.getElementById('{plot_id}') && "
        f"document.getElementById('{plot_id}')._fullLayout",
        timeout=WAIT_MS,
    )
    types: list[str] = page.evaluate(
        f"() => {{ const l = document.getElementById('{plot_id}')._fullLayout;"
        " return [l.xaxis.type, l.yaxis.type]; }"
    )
    return types


def _tick_texts(page: Page, plot_id: str, axis: str) -> list[str]:
    texts: list[str] = page.evaluate(
        f"() => [...document.querySelectorAll('#{plot_id} .{axis}tick text')]"
        ".map(t => t.textContent)"
    )
    return texts


READABLE_LOG_TICK = r"^([0-9.]+|([0-9.]+×)?10[⁻⁰¹²³⁴⁵⁶⁷⁸⁹]+)$"
"""A plain number (0.005, 1600) or a power of ten: never a bare mantissa ("2", "3") that
means 200 or 0.003 only to someone who counts the minor ticks."""


@pytest.mark.parametrize("width", [1400, 420])
def test_every_page_loads_clean_with_log_axes(
    live: Live, watched: Callable[..., Watched], width: int
) -> None:
    w = watched(width)
    page = w.page
    page.goto(live.url + "/")
    page.wait_for_selector("#sweeps-table tbody tr", timeout=WAIT_MS)
    names = page.locator("#sweeps-table tbody tr .sweep-name").all_inner_texts()
    assert {XSS_NAME, "quadratic"} <= set(names)  # (other tests may add sweeps)
    page.goto(f"{live.url}/sweeps/{live.ids['diag']}")
    assert _axis_types(page, "risk-plot") == ["log", "log"]
    page.wait_for_selector("#exponents-table tbody tr", timeout=WAIT_MS)
    legend = page.evaluate(
        "() => document.getElementById('risk-plot').data.map(t => t.name).filter(Boolean)"
    )
    # display names (service.display): the spec's link power -0.5 is l = 0.5 (λ ∝ n^-l)
    assert any(name.startswith("l = 0.5") for name in legend), legend
    assert not any("link_power" in name or "power_law" in name for name in legend), legend
    # log ticks: the grid's own n, and readable numbers on R, at either width
    assert _tick_texts(page, "risk-plot", "x") == ["25", "50", "100", "200"]
    yticks = _tick_texts(page, "risk-plot", "y")
    assert len(yticks) >= 3 and all(re.match(READABLE_LOG_TICK, t) for t in yticks), yticks
    assert page.locator("#runs-table tbody tr").count() == 24  # 24 runs, one page of 25
    page.goto(f"{live.url}/sweeps/{live.ids['wide']}")
    assert _axis_types(page, "risk-plot") == ["log", "log"]
    assert _tick_texts(page, "risk-plot", "x") == ["200", "400", "800", "1600"]
    page.goto(f"{live.url}/runs/{live.ids['run']}")
    assert _axis_types(page, "spectrum-rank") == ["log", "log"]
    assert _axis_types(page, "curve-plot") == ["log", "log"]
    assert _axis_types(page, "spectrum-hist")[0] == "log"
    page.wait_for_selector("#tail-fit", timeout=WAIT_MS)
    phases = page.locator("dt:has-text('time per phase') + dd").inner_text()
    assert "train 0.6 s (60%)" in phases and "certificate 0.3 s (30%)" in phases, phases
    page.goto(f"{live.url}/sweeps/{live.ids['diag']}/phase")
    page.wait_for_selector("#phase-table tbody tr", timeout=WAIT_MS)
    assert page.locator("#phase-table tbody tr").count() == 2
    page.goto(f"{live.url}/compare?ids={live.ids['diag']},{live.ids['quad']}")
    assert _axis_types(page, "compare-plot") == ["log", "log"]
    page.wait_for_selector("#compare-table tbody tr", timeout=WAIT_MS)
    w.clean()


def test_empty_states_and_errors_read_as_sentences(
    live: Live, watched: Callable[..., Watched]
) -> None:
    w = watched()
    page = w.page
    # a sweep without a scaling path has no phase diagram: a sentence, not the API's JSON
    page.goto(f"{live.url}/sweeps/{live.ids['quad']}/phase")
    page.wait_for_selector("#page-error", timeout=WAIT_MS)
    text = page.inner_text("#page-error")
    assert text.startswith("This sweep has no phase diagram:"), text
    assert "[{" not in text and '{"' not in text and "value_error" not in text
    # any API error is its message: here the 422 list of the phase-diagram route
    message = page.evaluate(
        f"() => SS.api('/v1/sweeps/{live.ids['quad']}/phase-diagram').then(() => 'answered',"
        " (e) => e.message)"
    )
    assert message.startswith("The phase diagram needs a sweep whose weight_decay is linked")
    assert "[{" not in message and "value_error" not in message and "loc" not in message
    # the display names are the figures' (one table, service.display), formatted alike
    same = page.evaluate(
        "() => [SS.groupLabel({weight_decay: 0.01, link_power: -0.5}), SS.groupLabel({}),"
        " SS.formName('broken_power_law_2'), SS.fmtG(0.00001234, 4), SS.fmtG(1600, 4)]"
    )
    assert same == [
        display.group_label({"weight_decay": 0.01, "link_power": -0.5}),
        display.group_label({}),
        display.form("broken_power_law_2"),
        display.number(0.00001234),
        display.number(1600),
    ]
    # before any run finishes: what is coming, no empty axes
    spec = SweepSpec.model_validate(
        {
            "name": "waiting",
            "model": "diagonal",
            "grid": {"d": [7], "n": [11, 22], "weight_decay": [0.1]},  # no finished twin
        }
    )
    sweep = live.store.create_sweep(spec, max_runs=10)
    page.goto(f"{live.url}/sweeps/{sweep.id}")
    page.wait_for_selector("#risk-plot .empty-state", timeout=WAIT_MS)
    assert page.inner_text("#risk-plot").startswith("No finished runs yet: the plot appears")
    assert page.locator("#risk-plot .main-svg").count() == 0  # no axes drawn
    assert page.inner_text("#exponents").startswith("No exponents yet")
    assert page.inner_text("#theory").startswith("No comparison with the state evolution yet")
    # a run without a learning curve: one line, not a 340 px blank block
    page.goto(f"{live.url}/runs/{live.ids['bare_run']}")
    page.wait_for_selector("#curve-plot .empty-state", timeout=WAIT_MS)
    assert page.inner_text("#curve-plot").startswith("No learning curve recorded")
    box = page.locator("#curve-plot").bounding_box()
    assert box is not None and box["height"] < 60, box
    # the one console error: the browser's log of the 422 the evaluate above asked for
    assert all("422" in e for e in w.errors) and len(w.errors) == 1, w.errors
    assert w.dialogs == [] and w.foreign == []


def test_a_width_sweep_offers_width_as_x_and_group_and_says_what_certifies_a_run(
    live: Live, watched: Callable[..., Watched]
) -> None:
    spec = SweepSpec.model_validate(
        {
            "name": "widths",
            "model": "quadratic",
            "grid": {"d": [8], "n": [40, 80], "weight_decay": [0.1], "width": [2, 4, 8, 16],
                     "seed": [0, 1]},
        }
    )  # fmt: skip
    sweep = live.store.create_sweep(spec, max_runs=100)
    runs = list(iter_runs(live.store, sweep.id))
    narrow = {"certificate": "second_order", "hessian_min_eig": -2e-12, "restarts": 3,
              "restart_spread": 4e-9}  # fmt: skip
    live.store.record_results(
        [
            (r.id, result(r.config_hash, (1.0 + r.config.width / 8) * (1.0 + 0.05 * r.config.seed)
                          / r.config.n, **(narrow if r.config.width == 2 else {})))
            for r in runs
        ]
    )  # fmt: skip
    w = watched()
    page = w.page
    page.goto(f"{live.url}/sweeps/{sweep.id}")
    page.wait_for_selector("#exponents-table tbody tr", timeout=WAIT_MS)
    xs = page.locator("#x-axis option").evaluate_all("os => os.map(o => o.value)")
    assert "width" in xs, xs
    assert page.locator("#x-axis option[value='width']").inner_text() == "m (width)"
    groups = page.locator("input.by").evaluate_all("bs => bs.map(b => b.value)")
    assert "width" in groups, groups
    headers = page.locator("#runs-table thead th").all_inner_texts()
    assert any(h.strip().startswith("m") for h in headers), headers
    page.select_option("#x-axis", "width")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#risk-plot .xtick text')].map(t => t.textContent)"
        ".join(',') === '2,4,8,16'",
        timeout=WAIT_MS,
    )
    page.wait_for_function(
        "() => document.getElementById('exponents-table').textContent"
        ".includes('not expected to be a power law')",
        timeout=WAIT_MS,
    )
    groups = page.locator("input.by").evaluate_all("bs => bs.map(b => b.value)")
    assert "n" in groups and "width" not in groups, groups
    # a sweep whose width does not vary offers no width axis
    page.goto(f"{live.url}/sweeps/{live.ids['quad']}")
    page.wait_for_selector("#exponents-table tbody tr", timeout=WAIT_MS)
    xs = page.locator("#x-axis option").evaluate_all("os => os.map(o => o.value)")
    assert "width" not in xs, xs
    # the run page: the width in the configuration, the certificate in words
    first = runs[0]
    assert first.config.width == 2
    page.goto(f"{live.url}/runs/{first.id}")
    page.wait_for_selector("dt:has-text('certificate') + dd", timeout=WAIT_MS)
    cert = page.locator("dt:text-is('certificate') + dd").inner_text()
    assert cert.startswith("second-order stationary, 3 restarts agree (spread 4.0e-9)"), cert
    assert "not a global-minimum certificate" in cert
    assert page.locator("dt:text-is('restarts compared') + dd").inner_text() == "3"
    assert page.locator("dt:text-is('m (width)') + dd").inner_text() == "2"
    page.goto(f"{live.url}/runs/{runs[-1].id}")  # width 16: a duality-gap certificate
    page.wait_for_selector("dt:text-is('certificate') + dd", timeout=WAIT_MS)
    assert page.locator("dt:text-is('certificate') + dd").inner_text() == (
        "duality gap (global minimum)"
    )
    assert page.locator("dt:text-is('restarts compared')").count() == 0
    w.clean()


def test_user_input_is_shown_as_text_and_never_runs(
    live: Live, watched: Callable[..., Watched]
) -> None:
    w = watched()
    for path in ("/", f"/sweeps/{live.ids['diag']}", f"/sweeps/{live.ids['diag']}/phase",
                 f"/compare?ids={live.ids['diag']},{live.ids['quad']}"):  # fmt: skip
        w.page.goto(live.url + path)
        w.page.wait_for_function(
            "name => document.body.innerText.includes(name)", arg=XSS_NAME, timeout=WAIT_MS
        )
        assert w.page.locator("img[src='x']").count() == 0
        assert w.page.locator("main b").count() == 0  # the tag "<b>bold</b>" is text
    w.page.wait_for_timeout(300)  # an onerror would have fired by now
    w.clean()  # no alert dialog, no console error


def test_progress_updates_while_a_sweep_runs(live: Live, watched: Callable[..., Watched]) -> None:
    spec = SweepSpec.model_validate(
        {"name": "live", "model": "diagonal", "grid": {"d": [6], "n": [10, 20, 40],
         "weight_decay": [0.05], "seed": [0, 1, 2, 3]}}
    )  # fmt: skip
    sweep = live.store.create_sweep(spec, max_runs=100)
    w = watched()
    w.page.goto(f"{live.url}/sweeps/{sweep.id}")
    w.page.wait_for_selector("#progress .progress-label", timeout=WAIT_MS)
    assert w.page.inner_text("#progress .progress-label").startswith("0 / 12 ended")
    _finish(live.store, sweep.id, only=5)  # the runner's part, 5 runs now
    w.page.wait_for_function(
        "() => document.querySelector('#progress .progress-label').textContent"
        ".startsWith('5 / 12 ended')",
        timeout=WAIT_MS,
    )
    _finish(live.store, sweep.id)  # the rest
    w.page.wait_for_function(
        "() => document.querySelector('#progress .progress-label').textContent"
        ".startsWith('12 / 12 ended')",
        timeout=WAIT_MS,
    )
    # the plot follows: every run is drawn once the sweep has ended
    w.page.wait_for_function(
        "() => document.getElementById('plot-note').textContent.startsWith('12 of 12')",
        timeout=WAIT_MS,
    )
    w.clean()


def test_a_request_to_another_host_is_refused_and_caught(
    live: Live, watched: Callable[..., Watched]
) -> None:
    # what makes the checks above mean something: the page's CSP refuses a connection to
    # another host, and the guard records (and fails on) any request that gets past it
    w = watched()
    w.page.goto(live.url + "/")
    w.page.wait_for_selector("#sweeps-table", timeout=WAIT_MS)
    outcome = w.page.evaluate(
        "() => fetch('http://192.0.2.1/x').then(() => 'sent', () => 'refused')"
    )
    assert outcome == "refused"
    assert any("Content Security Policy" in e for e in w.errors), w.errors
    with pytest.raises(PlaywrightError):
        w.page.goto("http://192.0.2.1/y")
    assert w.foreign == ["http://192.0.2.1/y"]


@pytest.fixture(scope="module")
def live_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    server = _serve(tmp_path_factory.mktemp("dash-auth"), auth=True)
    assert server.tokens is not None
    mine = server.store.create_sweep(
        SweepSpec.model_validate({"name": "ours", "model": "diagonal",
                                  "grid": {"d": [6], "n": [10, 20, 40], "weight_decay": [0.05]}}),
        max_runs=100, team="a",
    )  # fmt: skip
    _finish(server.store, mine.id)
    theirs = server.store.create_sweep(
        SweepSpec.model_validate({"name": "theirs", "model": "diagonal",
                                  "grid": {"d": [6], "n": [10, 20], "weight_decay": [0.05]}}),
        max_runs=100, team="b",
    )  # fmt: skip
    server.ids.update(mine=mine.id, theirs=theirs.id)
    yield server
    server.stop()


def test_token_prompt_bearer_header_and_other_teams_not_found(
    live_auth: Live, watched: Callable[..., Watched]
) -> None:
    assert live_auth.tokens is not None
    token = live_auth.tokens.create("reader", "read", "a").token
    w = watched(base=live_auth.url)
    page = w.page
    page.goto(f"{live_auth.url}/sweeps/{live_auth.ids['mine']}")
    page.wait_for_selector("#token-input", timeout=WAIT_MS)
    page.fill("#token-input", token)
    page.click("#token-form button[type=submit]")
    assert _axis_types(page, "risk-plot") == ["log", "log"]
    assert page.evaluate("() => sessionStorage.getItem('scalesweep.token')") == token
    # asked once per tab: the next page of the same tab does not ask again
    page.goto(f"{live_auth.url}/")
    page.wait_for_selector("#sweeps-table tbody tr", timeout=WAIT_MS)
    assert page.locator("#token-input").count() == 0
    assert page.locator("#sweeps-table tbody tr").count() == 1  # team a's sweep only
    # another team's sweep is not found, exactly as an unknown one
    page.goto(f"{live_auth.url}/sweeps/{live_auth.ids['theirs']}")
    page.wait_for_selector("#page-error", timeout=WAIT_MS)
    assert page.inner_text("#page-error") == f"Sweep {live_auth.ids['theirs']} not found."
    api_calls = [r for r in w.requests if "/v1/" in r["url"]]
    assert api_calls and all(
        r["headers"].get("authorization") == f"Bearer {token}" for r in api_calls
    )
    assert not any(token in r["url"] for r in w.requests)  # never in a URL
    # the 404 of the other team's sweep is the one console error (the browser logs the
    # failed resource); no 401 either: the page asked for the token before its first call
    assert len(w.errors) == 1 and "404" in w.errors[0], w.errors
    assert w.dialogs == [] and w.foreign == []
