/* GET /sweeps/{id}/phase: measured, state-evolution and heuristic exponents against the
 * power l of lambda ~ x^-l, with the regime of each family. A sweep without a scaling path
 * (no link) has no phase diagram: the page says so in a sentence. */
"use strict";

(() => {
  const { el, api, num, interval, dataTable, plot, emptyState, fail, formName, symbol,
    axisLabel, groupLabel } = SS;
  const app = document.getElementById("app");
  const sweepId = Number(document.body.dataset.sweepId);

  function noLink(sweep) {
    const name = sweep.name || `sweep ${sweepId}`;
    app.replaceChildren(
      el("h1", {}, "Phase diagram: ", el("a", { href: `/sweeps/${sweepId}` }, name)),
      el("p", { class: "error", id: "page-error" },
        `This sweep has no phase diagram: its weight decay is not linked to n (a scaling ` +
        "path λ = λ₀ n⁻ˡ with several powers l), so there are no families to compare."),
      el("p", { class: "note" }, "A spec draws one with ",
        el("code", {}, "link: {weight_decay: {coef: 0.1, of: n, power: [0, -0.5, -1]}}"),
        "; this sweep's risk plot and exponents are on ",
        el("a", { href: `/sweeps/${sweepId}` }, "its page"), "."));
  }

  async function load() {
    const sweep = await api(`/v1/sweeps/${sweepId}`);
    if (!sweep.spec.link) {
      noLink(sweep);
      return;
    }
    const phase = await api(`/v1/sweeps/${sweepId}/phase-diagram`);
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
    // the other axes a family is one value of (d, width, ...): said where there are any
    const others = (f) => Object.fromEntries(Object.entries(f.group || {})
      .filter(([k]) => k !== "link_power"));
    const split = fams.some((f) => Object.keys(others(f)).length);
    const cols = [
      { key: "decay", label: symbol("decay"), num: true, render: (f) => num(f.decay, 4) },
      split ? { key: "family", label: "family", value: (f) => groupLabel(others(f)),
        render: (f) => groupLabel(others(f)) } : null,
      { key: "regime", label: "regime", render: (f) => f.regime || f.heuristic_regime },
      { key: "measured_exponent", label: "measured", num: true, render: (f) => num(f.measured_exponent, 4) },
      { key: "measured_ci", label: "95% interval", render: (f) => interval(f.measured_ci) },
      { key: "measured_form", label: "form", render: (f) => formName(f.measured_form) },
      { key: "se_exponent", label: "state ev.", num: true, render: (f) => num(f.se_exponent, 4) },
      { key: "heuristic_exponent", label: "heuristic", num: true, render: (f) => num(f.heuristic_exponent, 4) },
      { key: "df_over_n", label: "df/n", num: true, render: (f) => num(f.df_over_n, 3) },
      { key: "n_runs", label: "runs", num: true },
      { key: "error", label: "note", wrap: true, render: (f) => f.error || "" },
    ].filter(Boolean);
    app.replaceChildren(
      el("h1", {}, "Phase diagram: ", el("a", { href: `/sweeps/${sweepId}` }, sweep.name || `sweep ${sweepId}`)),
      el("p", { class: "muted" }, `model ${sweep.spec.model}; the exponent β of R ∝ ${symbol(phase.x)}⁻ᵝ ` +
        `of each family λ = λ₀ ${symbol(phase.x)}⁻ˡ`),
      node, dataTable(cols, fams, { id: "phase-table", pageSize: 50,
        empty: "No family of the scaling path has finished runs yet." }),
      el("p", { class: "note" }, phase.regime_rule));
    if (!traces.some((t) => t.x.length)) {
      emptyState(node, "No exponent yet: the plot appears when a family has runs at enough " +
        `values of ${phase.x} to be fitted.`);
      return;
    }
    await plot(node, traces, {
      margin: { l: 70, r: 20, t: 30, b: 60 }, height: 480,
      xaxis: { title: { text: axisLabel("decay").replace("x⁻", `${symbol(phase.x)}⁻`) } },
      yaxis: { title: { text: axisLabel("exponent").replace("x⁻", `${symbol(phase.x)}⁻`) } },
      legend: { orientation: "h", y: -0.2 },
    });
  }

  if (!Number.isFinite(sweepId)) fail(app, "no sweep id");
  else load().catch((e) => fail(app, e));
})();
