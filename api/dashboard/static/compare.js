/* GET /compare?ids=1,2: the seed-mean risk curves of two or more sweeps on one log-log plot,
 * with their fitted exponents side by side. */
"use strict";

(() => {
  const { el, api, allPages, num, interval, axisValue, axisLabel, formName, groupLabel,
    groupKey, COLORS, logLayout, plot, emptyState, fail, mean, stderr, dataTable } = SS;
  const app = document.getElementById("app");
  const params = new URLSearchParams(location.search);
  const ids = (params.get("ids") || "").split(",").map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
  const x = params.get("x") || "n";

  function picker() {
    const input = el("input", { id: "compare-ids", value: ids.join(","), size: 20, placeholder: "1,2,3" });
    return el("form", { class: "controls", onsubmit: (e) => {
      e.preventDefault();
      location.search = new URLSearchParams({ ids: input.value.replace(/\s+/g, ""), x }).toString();
    } }, el("label", {}, "sweep ids ", input), el("button", { type: "submit" }, "compare"));
  }

  async function load() {
    if (ids.length < 2) {
      app.replaceChildren(el("h1", {}, "Compare sweeps"), picker(),
        el("p", { class: "muted" }, "Give two or more sweep ids, or pick them on the sweeps page."));
      return;
    }
    const data = await Promise.all(ids.map(async (id) => ({
      sweep: await api(`/v1/sweeps/${id}`),
      runs: await allPages(`/v1/sweeps/${id}/runs`, { status: "succeeded" }),
      exponents: await api(`/v1/sweeps/${id}/exponents?x=${encodeURIComponent(x)}`),
    })));
    const traces = [];
    const rows = [];
    let color = 0;
    for (const { sweep, runs, exponents } of data) {
      const by = exponents.by;
      const groups = new Map();
      for (const r of runs.filter((r) => r.metrics && r.metrics.converged && r.metrics.excess_risk > 0 &&
        axisValue(r.config, x) > 0)) {
        const key = groupKey(by.map((a) => axisValue(r.config, a)));
        if (!groups.has(key)) groups.set(key, new Map());
        const xv = axisValue(r.config, x);
        const at = groups.get(key);
        if (!at.has(xv)) at.set(xv, []);
        at.get(xv).push(r.metrics.excess_risk);
      }
      for (const g of exponents.groups) {
        const at = groups.get(groupKey(by.map((a) => g.group[a])));
        if (!at) continue;
        const c = COLORS[color % COLORS.length];
        color += 1;
        const xs = [...at.keys()].sort((a, b) => a - b);
        const label = `${sweep.name || `sweep ${sweep.id}`} · ${groupLabel(g.group)}`;
        traces.push({ x: xs, y: xs.map((v) => mean(at.get(v))), mode: "markers", name: label,
          legendgroup: label, marker: { color: c, size: 8 },
          error_y: { type: "data", array: xs.map((v) => stderr(at.get(v))), visible: true, color: c } });
        if (g.curve && g.curve.length) {
          traces.push({ x: g.curve.map((p) => p.x), y: g.curve.map((p) => p.fit), mode: "lines",
            legendgroup: label, showlegend: false, line: { color: c, width: 2 } });
        }
        rows.push({ sweep: sweep.id, name: sweep.name, group: groupLabel(g.group), form: g.form,
          exponent: g.exponent, ci: g.exponent_ci, n_runs: g.n_runs });
      }
    }
    const node = el("div", { class: "plot", id: "compare-plot" });
    const cols = [
      { key: "sweep", label: "sweep", num: true, render: (r) => el("a", { href: `/sweeps/${r.sweep}` }, String(r.sweep)) },
      { key: "name", label: "name", wrap: true },
      { key: "group", label: "group" },
      { key: "form", label: "form", render: (r) => formName(r.form) },
      { key: "exponent", label: "β", num: true, render: (r) => num(r.exponent, 4) },
      { key: "ci", label: "95% interval", render: (r) => interval(r.ci) },
      { key: "n_runs", label: "runs", num: true },
    ];
    app.replaceChildren(el("h1", {}, `Compare sweeps ${ids.join(", ")}`), picker(), node,
      dataTable(cols, rows, { id: "compare-table", pageSize: 50,
        empty: "No fitted group in these sweeps yet: they appear as runs finish." }));
    if (!traces.length) {
      emptyState(node, "No finished runs in these sweeps yet: the plot appears when the " +
        "first run succeeds.");
      return;
    }
    await plot(node, traces, logLayout(axisLabel(x), axisLabel("excess_risk"), { height: 520 }));
  }

  load().catch((e) => fail(app, e));
})();
