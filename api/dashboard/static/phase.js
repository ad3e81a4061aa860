/* GET /sweeps/{id}/phase: measured, state-evolution and heuristic exponents against the
 * power l of lambda ~ x^-l, with the regime of each family. */
"use strict";

(() => {
  const { el, api, num, interval, dataTable, plot, fail } = SS;
  const app = document.getElementById("app");
  const sweepId = Number(document.body.dataset.sweepId);

  async function load() {
    const [sweep, phase] = await Promise.all([
      api(`/v1/sweeps/${sweepId}`), api(`/v1/sweeps/${sweepId}/phase-diagram`)]);
    const fams = phase.families.slice().sort((a, b) => a.decay - b.decay);
    const node = el("div", { class: "plot", id: "phase-plot" });
    const measured = fams.filter((f) => f.measured_exponent !== null);
    const traces = [
      { x: measured.map((f) => f.decay), y: measured.map((f) => f.measured_exponent),
        mode: "markers", name: "measured (95% interval)", marker: { size: 9, color: "#1f77b4" },
        error_y: { type: "data", symmetric: false, visible: true,
          array: measured.map((f) => (f.measured_ci ? f.measured_ci[1] - f.measured_exponent : 0)),
          arrayminus: measured.map((f) => (f.measured_ci ? f.measured_exponent - f.measured_ci[0] : 0)) } },
      { x: fams.filter((f) => f.se_exponent !== null).map((f) => f.decay),
        y: fams.filter((f) => f.se_exponent !== null).map((f) => f.se_exponent),
        mode: "lines+markers", name: "state evolution", line: { dash: "dash", color: "#d62728" } },
      { x: fams.filter((f) => f.heuristic_exponent !== null).map((f) => f.decay),
        y: fams.filter((f) => f.heuristic_exponent !== null).map((f) => f.heuristic_exponent),
        mode: "lines", name: "heuristic (asymptotic)", line: { dash: "dot", color: "#2ca02c" } },
    ];
    const cols = [
      { key: "decay", label: "l", num: true, render: (f) => num(f.decay, 4) },
      { key: "regime", label: "regime", render: (f) => f.regime || f.heuristic_regime },
      { key: "measured_exponent", label: "measured", num: true, render: (f) => num(f.measured_exponent, 4) },
      { key: "measured_ci", label: "95% interval", render: (f) => interval(f.measured_ci) },
      { key: "measured_form", label: "form", render: (f) => f.measured_form || "" },
      { key: "se_exponent", label: "state ev.", num: true, render: (f) => num(f.se_exponent, 4) },
      { key: "heuristic_exponent", label: "heuristic", num: true, render: (f) => num(f.heuristic_exponent, 4) },
      { key: "df_over_n", label: "df/n", num: true, render: (f) => num(f.df_over_n, 3) },
      { key: "n_runs", label: "runs", num: true },
      { key: "error", label: "note", wrap: true, render: (f) => f.error || "" },
    ];
    app.replaceChildren(
      el("h1", {}, "Phase diagram: ", el("a", { href: `/sweeps/${sweepId}` }, sweep.name || `sweep ${sweepId}`)),
      el("p", { class: "muted" }, `model ${sweep.spec.model}; exponent of R against ${phase.x} ` +
        `along λ = λ0 ${phase.x}^-l`),
      node, dataTable(cols, fams, { id: "phase-table", pageSize: 50 }),
      el("p", { class: "note" }, phase.regime_rule));
    await plot(node, traces, {
      margin: { l: 70, r: 20, t: 30, b: 60 }, height: 480,
      xaxis: { title: { text: "l  (λ ∝ x^-l)" } },
      yaxis: { title: { text: "exponent of R" } },
      legend: { orientation: "h", y: -0.2 },
    });
  }

  if (!Number.isFinite(sweepId)) fail(app, "no sweep id");
  else load().catch((e) => fail(app, e));
})();
