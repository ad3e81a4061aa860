/* GET /sweeps/{id}: live progress (server-sent events); the log-log plot of R against x per
 * group (seed means with error bars, single seeds faint, the fitted curve with its band,
 * plateau and breaks, the state-evolution curve); the exponents and theory tables; every
 * run in a table (filter, sort, pages); exports and figures. Before a run has finished, the
 * plot and the tables say what is coming instead of drawing empty axes. */
"use strict";

(() => {
  const { el, api, allPages, num, interval, badge, progressBar, dataTable, axisValue,
    symbol, axisLabel, shown, formName, formsIn, groupLabel, groupKey, COLORS, logLayout, plot,
    emptyState, errorText, fail, mean, stderr, download, sse } = SS;
  const app = document.getElementById("app");
  const sweepId = Number(document.body.dataset.sweepId);
  const X_AXES = ["n", "alpha", "d", "weight_decay", "width"];
  const GROUP_AXES = ["d", "n", "alpha", "width", "weight_decay", "gamma", "noise", "link_power"];
  const state = { x: null, by: null, sweep: null, runs: [], statusFilter: "" };
  const nodes = {};

  function usable(run) {
    return run.status === "succeeded" && run.metrics && run.metrics.converged &&
      run.metrics.excess_risk > 0 && Number.isFinite(run.metrics.excess_risk);
  }

  function varying(axis) {
    if (axis === "width") return widthVaries();
    const values = new Set(state.runs.map((r) => axisValue(r.config, axis)));
    return values.size > 1;
  }

  /** The width is an axis of the sweep where it takes several values at one d (grid.width,
   * grid.width_ratio); a width that follows d (the default m = d) is told apart by d. */
  function widthVaries() {
    const byD = new Map();
    for (const r of state.runs) {
      const d = r.config.d;
      if (!byD.has(d)) byD.set(d, new Set());
      byD.get(d).add(axisValue(r.config, "width"));
    }
    return [...byD.values()].some((ws) => ws.size > 1);
  }

  function header(sweep) {
    const spec = sweep.spec;
    const phase = spec.link ? el("a", { href: `/sweeps/${sweepId}/phase`, id: "phase-link" },
      "phase diagram") : null;
    return el("section", { id: "sweep-header" },
      el("h1", { id: "sweep-name" }, sweep.name || `sweep ${sweepId}`),
      el("div", { class: "row" }, badge(sweep.status), el("span", {}, `model ${spec.model}`),
        el("span", {}, `${sweep.n_runs} runs`),
        sweep.tags.map((t) => el("span", { class: "tag" }, t)),
        sweep.archived ? el("span", { class: "badge" }, "archived") : null, phase),
      el("div", { id: "progress" }, progressBar(sweep.counts, sweep.n_runs)));
  }

  function controls() {
    const xs = X_AXES.filter((a) => a !== "width" || a === state.x || varying(a)).map((a) =>
      el("option", { value: a, selected: a === state.x }, axisLabel(a)));
    const boxes = GROUP_AXES.filter((a) => a !== state.x && !(state.x === "n" && a === "alpha") &&
      !(state.x === "alpha" && a === "n") && varying(a)).map((a) =>
      el("label", {}, el("input", { type: "checkbox", class: "by", value: a,
        checked: (state.by || []).includes(a), onchange: onGroupChange }), ` ${axisLabel(a)}`));
    return el("div", { class: "controls", id: "plot-controls" },
      el("label", {}, "x ", el("select", { id: "x-axis", onchange: (e) => {
        state.x = e.target.value;
        state.by = null;
        refresh().catch((err) => fail(app, err));
      } }, xs)),
      el("span", {}, "group by: ", boxes.length ? boxes : el("span", { class: "muted" }, "nothing varies")));
  }

  function onGroupChange() {
    state.by = [...document.querySelectorAll("input.by:checked")].map((b) => b.value);
    refresh().catch((err) => fail(app, err));
  }

  function groupsOf(runs, by) {
    const groups = new Map();
    for (const run of runs) {
      const values = by.map((a) => axisValue(run.config, a));
      const key = groupKey(values);
      if (!groups.has(key)) {
        groups.set(key, { key, group: Object.fromEntries(by.map((a, i) => [a, values[i]])), runs: [] });
      }
      groups.get(key).runs.push(run);
    }
    return [...groups.values()];
  }

  function riskTraces(runs, exponents, theory) {
    const by = exponents.by;
    const fits = new Map(exponents.groups.map((g) => [groupKey(by.map((a) => g.group[a])), g]));
    const traces = [];
    const shapes = [];
    // numeric order of the group's values (m = 2 before m = 13; a missing value last)
    const rank = (v) => (v === null || v === undefined ? Infinity : Number(v));
    const groups = groupsOf(runs, by).sort((a, b) => {
      for (const axis of by) {
        const d = rank(a.group[axis]) - rank(b.group[axis]);
        if (d) return d;
      }
      return 0;
    });
    groups.forEach((g, i) => {
      const color = COLORS[i % COLORS.length];
      const label = groupLabel(g.group);
      const xs = g.runs.map((r) => axisValue(r.config, state.x));
      traces.push({ x: xs, y: g.runs.map((r) => r.metrics.excess_risk), mode: "markers",
        type: "scatter", name: `${label} (single seeds)`, legendgroup: label, showlegend: false,
        marker: { color, size: 5, opacity: 0.25 }, hovertemplate: "seed run<br>x=%{x}<br>R=%{y}<extra></extra>" });
      const byX = new Map();
      g.runs.forEach((r, j) => {
        const k = xs[j];
        if (!byX.has(k)) byX.set(k, []);
        byX.get(k).push(r.metrics.excess_risk);
      });
      const mx = [...byX.keys()].sort((a, b) => a - b);
      traces.push({ x: mx, y: mx.map((k) => mean(byX.get(k))), mode: "markers", type: "scatter",
        name: label, legendgroup: label, marker: { color, size: 8 },
        error_y: { type: "data", array: mx.map((k) => stderr(byX.get(k))), visible: true, color },
        customdata: mx.map((k) => byX.get(k).length),
        hovertemplate: `${label}<br>x=%{x}<br>mean R=%{y}<br>%{customdata} seeds<extra></extra>` });
      const fit = fits.get(g.key);
      if (fit && fit.curve && fit.curve.length) {
        const cx = fit.curve.map((p) => p.x);
        traces.push({ x: cx, y: fit.curve.map((p) => p.lo), mode: "lines", line: { width: 0 },
          legendgroup: label, showlegend: false, hoverinfo: "skip", type: "scatter" });
        traces.push({ x: cx, y: fit.curve.map((p) => p.hi), mode: "lines", line: { width: 0 },
          fill: "tonexty", fillcolor: hexAlpha(color, 0.15), legendgroup: label,
          showlegend: false, hoverinfo: "skip", type: "scatter" });
        traces.push({ x: cx, y: fit.curve.map((p) => p.fit), mode: "lines", type: "scatter",
          line: { color, width: 2 }, legendgroup: label,
          name: `${label}: ${formName(fit.form)}, β = ${num(fit.exponent, 3)} ${interval(fit.exponent_ci)}` });
        if (fit.plateau) {
          traces.push({ x: [cx[0], cx[cx.length - 1]], y: [fit.plateau, fit.plateau], mode: "lines",
            type: "scatter", line: { color, dash: "dot", width: 1 }, legendgroup: label,
            name: `${label}: plateau R = ${num(fit.plateau, 3)}` });
        }
        for (const b of fit.breaks || []) {
          shapes.push({ type: "line", xref: "x", yref: "paper", x0: b, x1: b, y0: 0, y1: 1,
            line: { color, dash: "dashdot", width: 1 } });
        }
      }
      const se = (theory ? theory.points : []).filter((p) => p.predicted &&
        groupKey(by.map((a) => pointAxis(p, a))) === g.key)
        .map((p) => [pointAxis(p, state.x), p.predicted.excess_risk])
        .filter(([x, y]) => x > 0 && y > 0).sort((a, b) => a[0] - b[0]);
      if (se.length) {
        traces.push({ x: se.map((p) => p[0]), y: se.map((p) => p[1]), mode: "lines+markers",
          type: "scatter", line: { color, dash: "dash", width: 1.5 },
          marker: { symbol: "x", size: 6, color }, legendgroup: label,
          name: `${label}: state evolution` });
      }
    });
    return { traces, shapes };
  }

  function pointAxis(point, axis) {
    return point[axis];
  }

  function hexAlpha(hex, alpha) {
    const v = parseInt(hex.slice(1), 16);
    return `rgba(${(v >> 16) & 255},${(v >> 8) & 255},${v & 255},${alpha})`;
  }

  function exponentsTable(exponents) {
    const cols = [
      { key: "group", label: "group", value: (g) => groupLabel(g.group), render: (g) => groupLabel(g.group) },
      { key: "form", label: "form", render: (g) => formName(g.form) },
      { key: "exponent", label: "β", num: true, render: (g) => num(g.exponent, 4) },
      { key: "ci", label: "95% interval", render: (g) => interval(g.exponent_ci) },
      { key: "plateau", label: "plateau", num: true, render: (g) => num(g.plateau, 3) },
      { key: "breaks", label: "breaks", render: (g) => (g.breaks || []).map((b) => num(b, 3)).join(", ") },
      { key: "n_runs", label: "runs used", num: true },
      { key: "n_left_out", label: "left out", num: true },
      { key: "n_pending", label: "pending", num: true },
      { key: "ci_method", label: "interval from", wrap: true, render: (g) => g.ci_method || "" },
      { key: "error", label: "note", wrap: true,
        value: (g) => g.error || (g.selection_notes || []).join("; "),
        render: (g) => formsIn(g.error || (g.selection_notes || []).join("; ")) },
    ];
    return el("div", {}, dataTable(cols, exponents.groups, { id: "exponents-table", pageSize: 25,
      empty: "No group to fit." }),
      el("p", { class: "note" }, `Selection: ${exponents.selection} (bootstrap seed ` +
        `${exponents.bootstrap_seed}).`));
  }

  function theoryTable(theory) {
    const cols = [
      { key: "group", label: "group", value: (g) => groupLabel(g.group), render: (g) => groupLabel(g.group) },
      { key: "measured_exponent", label: "measured β", num: true, render: (g) => num(g.measured_exponent, 4) },
      { key: "predicted_exponent", label: "state ev. β", num: true, render: (g) => num(g.predicted_exponent, 4) },
      { key: "x_window", label: "window", render: (g) => interval(g.x_window) },
      { key: "n_points", label: "points", num: true },
      { key: "error", label: "note", wrap: true, render: (g) => g.error || "" },
    ];
    const pointCols = [
      { key: "x", label: symbol(state.x), num: true, value: (p) => pointAxis(p, state.x), render: (p) => num(pointAxis(p, state.x), 5) },
      { key: "weight_decay", label: symbol("weight_decay"), num: true, render: (p) => num(p.weight_decay, 4) },
      { key: "measured_mean", label: "measured R", num: true, render: (p) => num(p.measured_mean, 4) },
      { key: "measured_se", label: "± std. err.", num: true, render: (p) => num(p.measured_se, 2) },
      { key: "predicted", label: "state ev. R", num: true, value: (p) => (p.predicted ? p.predicted.excess_risk : null),
        render: (p) => (p.predicted ? num(p.predicted.excess_risk, 4) : p.prediction_error || "") },
      { key: "rel_diff", label: "rel. diff", num: true, render: (p) => num(p.rel_diff, 3) },
      { key: "n_seeds", label: "seeds", num: true },
    ];
    return el("div", {}, dataTable(cols, theory.groups, { id: "theory-table", pageSize: 25,
      empty: "No group to compare." }),
      theory.note ? el("p", { class: "note" }, theory.note) : null,
      el("details", {}, el("summary", {}, "per grid point"),
        dataTable(pointCols, theory.points, { id: "theory-points", pageSize: 25,
          empty: "No grid point has a finished run yet." })));
  }

  function runsSection() {
    const cols = [
      { key: "id", label: "run", num: true, render: (r) => el("a", { href: `/runs/${r.id}` }, String(r.id)) },
      { key: "index", label: "#", num: true },
      { key: "status", label: "status", render: (r) => badge(r.status) },
      { key: "seed", label: "seed", num: true, value: (r) => r.config.seed, render: (r) => r.config.seed },
      { key: "d", label: symbol("d"), num: true, value: (r) => r.config.d, render: (r) => r.config.d },
      { key: "n", label: symbol("n"), num: true, value: (r) => r.config.n, render: (r) => r.config.n },
      varying("width") ? { key: "width", label: symbol("width"), num: true,
        value: (r) => axisValue(r.config, "width"), render: (r) => axisValue(r.config, "width") } : null,
      { key: "weight_decay", label: symbol("weight_decay"), num: true, value: (r) => r.config.weight_decay,
        render: (r) => num(r.config.weight_decay, 4) },
      state.sweep.spec.link ? { key: "link_power", label: symbol("link_power"), num: true,
        value: (r) => shown("link_power", r.config.link_power),
        render: (r) => num(shown("link_power", r.config.link_power), 4) } : null,
      { key: "gamma", label: symbol("gamma"), num: true, value: (r) => r.config.teacher.gamma, render: (r) => num(r.config.teacher.gamma, 3) },
      { key: "noise", label: symbol("noise"), num: true, value: (r) => r.config.teacher.noise, render: (r) => num(r.config.teacher.noise, 3) },
      { key: "excess_risk", label: symbol("excess_risk"), num: true, value: (r) => (r.metrics ? r.metrics.excess_risk : null),
        render: (r) => (r.metrics ? num(r.metrics.excess_risk, 4) : "") },
      { key: "converged", label: "converged", value: (r) => (r.metrics ? r.metrics.converged : null),
        render: (r) => (r.metrics ? badge(r.metrics.converged) : "") },
      { key: "gap", label: "gap", num: true, value: (r) => (r.metrics ? r.metrics.duality_gap : null),
        render: (r) => (r.metrics ? num(r.metrics.duality_gap, 2) : "") },
      { key: "steps", label: "steps", num: true, value: (r) => (r.metrics ? r.metrics.steps : null),
        render: (r) => (r.metrics ? r.metrics.steps : "") },
      { key: "stop", label: "stop", value: (r) => (r.metrics ? r.metrics.stop_reason : null),
        render: (r) => (r.metrics ? r.metrics.stop_reason : "") },
      { key: "wall", label: "s", num: true, value: (r) => (r.metrics ? r.metrics.wall_time_s : null),
        render: (r) => (r.metrics ? num(r.metrics.wall_time_s, 3) : "") },
      { key: "error", label: "error", wrap: true, render: (r) => r.error || "" },
    ].filter(Boolean);
    const filtered = () => state.runs.filter((r) => !state.statusFilter || r.status === state.statusFilter);
    const table = dataTable(cols, filtered(), { id: "runs-table", pageSize: 25, sortKey: "index",
      empty: () => (state.statusFilter ? `No run is ${state.statusFilter}.` : "This sweep has no runs.") });
    const select = el("select", { id: "status-filter", onchange: (e) => {
      state.statusFilter = e.target.value;
      table.update(filtered());
    } }, ["", "succeeded", "failed", "running", "queued", "cancelled"].map((s) =>
      el("option", { value: s, selected: s === state.statusFilter }, s || "any status")));
    const section = el("section", { id: "runs" }, el("h2", {}, "Runs"),
      el("div", { class: "controls" }, el("label", {}, "status ", select)), table);
    section.update = () => table.update(filtered());
    return section;
  }

  function exportsSection() {
    const buttons = ["csv", "parquet", "jsonl"].map((f) => el("button", { type: "button",
      class: "export", "data-format": f,
      onclick: () => download(`/v1/sweeps/${sweepId}/export?format=${f}`, `sweep-${sweepId}.${f}`)
        .catch((e) => alert(e.message)) }, f));
    const kinds = state.sweep.spec.link ? ["risk", "theory", "phase"] : ["risk", "theory"];
    return el("section", { id: "exports" }, el("h2", {}, "Exports and figures"),
      el("div", { class: "row" }, "Every run, one row each: ", buttons),
      el("p", { class: "note" }, "Paper figures (matplotlib; .png, .svg or .pdf):"),
      el("pre", {}, kinds.map((k) =>
        `scalesweep plot ${sweepId} --kind ${k} --x ${state.x} --out sweep-${sweepId}-${k}.pdf\n`).join("") +
        `scalesweep export ${sweepId} --format parquet --out sweep-${sweepId}.parquet`));
  }

  async function refresh() {
    const sweep = await api(`/v1/sweeps/${sweepId}`);
    state.sweep = sweep;
    state.runs = await allPages(`/v1/sweeps/${sweepId}/runs`);
    if (!state.x) state.x = sweep.spec.link ? sweep.spec.link.weight_decay.of : "n";
    const q = new URLSearchParams({ x: state.x });
    if (state.by) q.set("by", state.by.join(","));
    const [exponents, theory] = await Promise.all([
      // a refused fit (e.g. an x the sweep cannot be fitted against) leaves the page up
      api(`/v1/sweeps/${sweepId}/exponents?${q}`)
        .catch((e) => ({ error: e, by: state.by || [], groups: [] })),
      api(`/v1/sweeps/${sweepId}/theory?${q}`).catch((e) => ({ error: e })),
    ]);
    state.by = exponents.by;
    const theoryOk = theory && !theory.error ? theory : null;
    if (!nodes.root) build();
    nodes.header.replaceWith(nodes.header = header(sweep));
    nodes.controls.replaceWith(nodes.controls = controls());
    const finished = state.runs.filter(usable);
    const drawn = finished.filter((r) => axisValue(r.config, state.x) > 0);
    const empty = emptyText(sweep, finished, drawn);
    if (empty) {
      emptyState(nodes.plot, empty);
      nodes.plotNote.textContent = "";
    } else {
      const { traces, shapes } = riskTraces(drawn, exponents, theoryOk);
      const off = finished.length - drawn.length;
      nodes.plotNote.textContent = `${drawn.length} of ${state.runs.length} runs plotted ` +
        "(succeeded and certified, R > 0" +
        (off ? `; ${off} with ${symbol(state.x)} ≤ 0 left off the log axis` : "") +
        "); markers: seed means ± standard error, faint: single seeds; " +
        "line and band: fitted form with its exponent's 95% interval; dashed: state evolution.";
      await plot(nodes.plot, traces, logLayout(axisLabel(state.x), axisLabel("excess_risk"),
        { shapes, height: 520 }));
    }
    if (!finished.length) {
      emptyState(nodes.exponents, "No exponents yet: they are fitted as runs finish.");
      emptyState(nodes.theory,
        "No comparison with the state evolution yet: it appears as runs finish.");
    } else {
      nodes.exponents.classList.remove("empty");
      nodes.exponents.replaceChildren(exponents.error
        ? el("p", { class: "error" }, `No exponents: ${errorText(exponents.error)}`)
        : exponentsTable(exponents));
      nodes.theory.classList.remove("empty");
      nodes.theory.replaceChildren(theoryOk ? theoryTable(theoryOk)
        : el("p", { class: "muted empty-state" },
          `No comparison with the state evolution: ${errorText(theory.error)}`));
    }
    nodes.runs.update();
    nodes.exports.replaceWith(nodes.exports = exportsSection());
    return sweep;
  }

  /** What the risk plot says instead of empty axes (null: there is something to draw). */
  function emptyText(sweep, finished, drawn) {
    if (drawn.length) return null;
    const c = sweep.counts || {};
    const ended = (c.succeeded || 0) + (c.failed || 0) + (c.cancelled || 0);
    const active = sweep.status === "queued" || sweep.status === "running";
    if (finished.length) {
      return `Nothing to plot against ${symbol(state.x)}: every finished run has ` +
        `${symbol(state.x)} ≤ 0, which a log axis cannot show. Choose another x.`;
    }
    if (!ended) {
      return `No finished runs yet: the plot appears when the first run finishes ` +
        `(0 of ${sweep.n_runs} ended).`;
    }
    const why = `none of the ${ended} ended runs succeeded with a certified minimum and R > 0`;
    return active ? `No run to plot yet: ${why}; the plot appears when one does.`
      : `Nothing to plot: ${why} (the runs table below gives their errors).`;
  }

  function build() {
    nodes.header = el("section");
    nodes.controls = el("div");
    nodes.plot = el("div", { class: "plot", id: "risk-plot" });
    nodes.plotNote = el("p", { class: "note", id: "plot-note" });
    nodes.exponents = el("div", { id: "exponents" });
    nodes.theory = el("div", { id: "theory" });
    nodes.runs = runsSection();
    nodes.exports = el("section");
    nodes.root = el("div", {}, nodes.header, el("h2", {}, "Excess risk"), nodes.controls,
      nodes.plot, nodes.plotNote,
      el("section", {}, el("h2", {}, "Fitted exponents"), nodes.exponents),
      el("section", {}, el("h2", {}, "State evolution"), nodes.theory),
      nodes.runs, nodes.exports);
    app.replaceChildren(nodes.root);
  }

  let pending = null;
  function refreshSoon() {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      refresh().catch((e) => fail(app, e));
    }, 1000);
  }

  function follow() {
    sse(`/v1/sweeps/${sweepId}/events`, {
      progress: (p) => {
        const box = document.getElementById("progress");
        if (box) box.replaceChildren(progressBar(p.counts, p.n_runs));
      },
      run_finished: refreshSoon,
      sweep_finished: refreshSoon,
      error: (e) => console.warn("event stream ended:", e.message || e),
    });
  }

  refresh().then((sweep) => {
    if (sweep.status === "queued" || sweep.status === "running") follow();
  }).catch((e) => fail(app, e));
})();
