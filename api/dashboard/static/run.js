/* GET /runs/{id}: metrics and certificate, configuration, the learning curve, and the
 * spectrum of the trained weights as a histogram and a rank plot on log axes with the tail
 * fit and the predicted spectrum. */
"use strict";

(() => {
  const { el, api, num, interval, badge, kv, logLayout, plot, emptyState, fail, symbol,
    axisLabel, shown, countAxis, effectiveWidth } = SS;
  const app = document.getElementById("app");
  const runId = Number(document.body.dataset.runId);

  function metricsPanel(run) {
    const m = run.metrics;
    if (!m) {
      return el("p", { class: "muted" }, run.error ? `No metrics: ${run.error}` : "No metrics yet.");
    }
    return kv([
      ["excess risk R", num(m.excess_risk, 6)],
      ["train loss", num(m.train_loss, 6)],
      ["objective", num(m.objective, 8)],
      ["test error", m.test_error === null ? "" : `${num(m.test_error, 5)} ± ${num(m.test_error_se, 2)}`],
      ["support (certified)", m.support],
      ["penalty norm (certified)", num(m.penalty_norm, 5)],
      ["device", m.device],
      ["batch size", m.batch_size ?? ""],
      ["wall time", `${num(m.wall_time_s, 4)} s`],
      ["time per phase", timings(m)],
    ]);
  }

  // Seconds per phase (data, train, certificate, corrections, spectra) and its share of the
  // run's wall time: where a slow run spends it.
  function timings(m) {
    const t = m.timings;
    if (!t) return "not recorded (stored before phases were timed)";
    const total = m.wall_time_s || Object.values(t).reduce((a, b) => a + b, 0);
    return Object.entries(t)
      .map(([phase, s]) => `${phase} ${num(s, 3)} s` + (total > 0 ? ` (${Math.round((100 * s) / total)}%)` : ""))
      .join(", ");
  }

  function certificatePanel(run) {
    const m = run.metrics;
    if (!m) return el("p", { class: "muted" }, "No certificate yet.");
    const present = (v) => v !== null && v !== undefined;
    return kv([
      ["converged", badge(m.converged)],
      ["certificate", certificateText(m)],
      ["duality gap", num(m.duality_gap, 3)],
      present(m.hessian_min_eig) ? ["Hessian's smallest eigenvalue", num(m.hessian_min_eig, 3)] : null,
      present(m.restarts) ? ["restarts compared", m.restarts] : null,
      present(m.restart_spread) ? ["restarts' objective spread", num(m.restart_spread, 3)] : null,
      ["stop reason", m.stop_reason],
      ["steps", m.steps],
      ["gradient norm", num(m.grad_norm, 3)],
      ["support corrections", m.corrections ?? ""],
      ["proven zero", m.screened ?? ""],
      ["resolution", m.resolution === null || m.resolution === undefined ? "not computed" : num(m.resolution, 3)],
      ["support estimator", m.support_method || "values above 1e-10 of the largest (stored before screening)"],
      ["unique minimiser", m.unique_minimizer === false ? `no: ${m.minimizer_note}` : (m.unique_minimizer ? "yes" : "")],
      ["attempts", run.attempts],
    ].filter(Boolean));
  }

  // What certifies the reported point: the convex problem's duality gap (a global minimum),
  // or, for a network narrower than the convex solution's rank, second-order stationarity
  // and agreeing restarts (not a global-minimum certificate). Runs stored before
  // certificates had kinds carry none: theirs is the duality gap.
  function certificateText(m) {
    if (m.certificate !== "second_order") return "duality gap (global minimum)";
    const restarts = m.restarts ?? "?";
    const spread = num(m.restart_spread, 2);
    return m.converged
      ? `second-order stationary, ${restarts} restarts agree (spread ${spread}) — not a global-minimum certificate`
      : `second-order check not met (${restarts} restarts, spread ${spread}) — not a global-minimum certificate`;
  }

  function widthText(c) {
    if (c.model === "diagonal") return `${c.d} (the diagonal net's width is d)`;
    const m = effectiveWidth(c);
    if (c.training.width !== null && c.training.width !== undefined) return String(m);
    return `${m} (default: ${c.training.second_layer === "signed" ? "2d, signed second layer" : "d"})`;
  }

  function configPanel(run) {
    const c = run.config;
    return kv([
      ["sweep", el("a", { href: `/sweeps/${run.sweep_id}` }, `sweep ${run.sweep_id}`)],
      ["model", c.model], [axisLabel("d"), c.d], [axisLabel("n"), c.n],
      [axisLabel("weight_decay"), num(c.weight_decay, 6)],
      ["seed", c.seed], [axisLabel("gamma"), c.teacher.gamma],
      [axisLabel("rank"), c.teacher.rank ?? "full"],
      [axisLabel("noise"), c.teacher.noise], ["optimizer", c.training.optimizer],
      [axisLabel("width"), widthText(c)], ["dtype", c.training.dtype],
      c.model === "quadratic"
        ? ["restarts asked", c.training.restarts ?? "default (SCALESWEEP_WIDTH_RESTARTS)"] : null,
      ["device", c.training.device],
      [axisLabel("link_power"), c.link_power === null || c.link_power === undefined
        ? "no scaling path" : num(shown("link_power", c.link_power), 4)],
      ["status", badge(run.status)], ["error", run.error || ""],
      ["reused from", run.reused_from ? el("a", { href: `/runs/${run.reused_from}` }, `run ${run.reused_from}`) : ""],
    ].filter(Boolean));
  }

  async function curvePlot(node, run) {
    const curve = run.curve || [];
    if (!curve.length) {
      emptyState(node, "No learning curve recorded (set measure.curve_every in the spec).");
      return;
    }
    const steps = curve.map((p) => Math.max(1, p.step));
    await plot(node, [
      { x: steps, y: curve.map((p) => p.train_loss), mode: "lines", name: "train loss" },
      { x: steps, y: curve.map((p) => p.excess_risk), mode: "lines", name: "excess risk" },
    ], logLayout("step", "value", { height: 360 }));
  }

  async function spectrumPlots(run, hist, rank, notes, spectra) {
    if (!spectra.spectra.length) {
      emptyState(hist, "No spectrum stored for this run" +
        (run.status === "succeeded" ? " (measure.spectrum was off)." : ": it is stored when the run succeeds."));
      rank.remove();
      return;
    }
    const s = spectra.spectra[0];
    const name = symbol(s.kind);
    // the certified minimum's zeros, and values within the certificate's resolution of zero,
    // have no place on a log axis (the fits leave them out too)
    const top = s.values.reduce((a, b) => Math.max(a, b), 0);
    const floor = Math.max(1e-8 * top, s.resolution || 0);
    const positive = s.values.filter((v) => v > floor);
    if (!positive.length) {
      emptyState(hist, `No value of ${name} is above the certificate's resolution ` +
        `(${s.values.length} values, all zero or within ${num(floor, 3)} of it): nothing to draw on a log axis.`);
      rank.remove();
      notes.replaceChildren();
      return;
    }
    const theory = spectra.theory;
    // histogram over log-spaced bins, drawn as steps on a log x axis
    const both = theory ? positive.concat(theory.predicted_values.filter((v) => v > floor)) : positive;
    const lo = Math.log10(both.reduce((a, b) => Math.min(a, b)));
    const hi = Math.log10(both.reduce((a, b) => Math.max(a, b)));
    const bins = Math.max(5, Math.min(40, Math.ceil(Math.sqrt(positive.length)) * 2));
    const width = Math.max(hi - lo, 1e-9) / bins;
    const edges = Array.from({ length: bins + 1 }, (_, i) => 10 ** (lo + i * width));
    const counts = (values) => {
      const c = new Array(bins).fill(0);
      for (const v of values) {
        const k = Math.floor((Math.log10(v) - lo) / width);
        if (k >= 0 && k <= bins) c[Math.min(k, bins - 1)] += 1;
      }
      return c;
    };
    const steps = (c) => ({ x: edges.flatMap((e, i) => (i < bins ? [e, edges[i + 1]] : [])),
      y: c.flatMap((v) => [v, v]) });
    const measuredCounts = counts(positive);
    const measured = steps(measuredCounts);
    const histTraces = [{ x: measured.x, y: measured.y, mode: "lines", fill: "tozeroy",
      name: `${name} (measured)`, line: { color: "#1f77b4", shape: "hv" } }];
    let most = Math.max(...measuredCounts);
    if (theory) {
      const predictedCounts = counts(theory.predicted_values.filter((v) => v > floor));
      most = Math.max(most, ...predictedCounts);
      const predicted = steps(predictedCounts);
      histTraces.push({ x: predicted.x, y: predicted.y, mode: "lines", name: "predicted",
        line: { color: "#d62728", dash: "dash", shape: "hv" } });
    }
    await plot(hist, histTraces, logLayout(axisLabel(s.kind), "count",
      { yaxis: countAxis(most, 200, "count"), height: 360 }));
    const ranks = positive.map((_, i) => i + 1);
    const traces = [{ x: ranks, y: positive, mode: "markers", name: `${name} (measured)`,
      marker: { size: 5, color: "#1f77b4" } }];
    if (theory) {
      const pred = theory.predicted_values.filter((v) => v > floor);
      traces.push({ x: pred.map((_, i) => i + 1), y: pred, mode: "lines", name: "predicted",
        line: { color: "#d62728", dash: "dash" } });
    }
    const tf = s.tail_fit;
    if (tf) {
      // a power-law tail with density exponent alpha above xmin: value ~ xmin (r / n_tail)^(-1/(alpha-1))
      const rs = [];
      // drawn over the measured values only: from xmin up to the largest value
      const at = (r) => tf.xmin * (r / tf.n_tail) ** (-1 / (tf.alpha - 1));
      for (let r = 1; r <= tf.n_tail; r += Math.max(1, Math.floor(tf.n_tail / 40))) {
        if (at(r) <= top) rs.push(r);
      }
      rs.push(tf.n_tail);
      traces.push({ x: rs, y: rs.map(at),
        mode: "lines", name: `tail fit α = ${num(tf.alpha, 3)}`, line: { color: "#2ca02c", width: 2 } });
    }
    if (s.rank_fit) {
      const rf = s.rank_fit;
      const rs = [1, rf.n_points];
      traces.push({ x: rs, y: rs.map((r) => rf.prefactor * r ** (-rf.exponent)), mode: "lines",
        name: `rank fit exponent ${num(rf.exponent, 3)}`, line: { color: "#9467bd", dash: "dot" } });
    }
    await plot(rank, traces, logLayout("rank", axisLabel(s.kind), { height: 360 }));
    notes.replaceChildren(
      el("p", { class: "note" }, `The certified minimum: ${positive.length} of ${s.n_values_total} values ` +
        (s.resolution ? `above the certificate's resolution ${num(s.resolution, 3)} ` : "non-zero ") +
        "are drawn (the certificate proves the others zero or cannot tell them from zero)" +
        (s.truncated ? ` (the ${s.values.length} largest are served)` : "") + "."),
      tf ? el("p", { class: "note", id: "tail-fit" }, `Tail fit: α = ${num(tf.alpha, 4)} ` +
        `${interval(tf.alpha_ci)} above xmin = ${num(tf.xmin, 4)} (${tf.n_tail} values, ` +
        `KS distance ${num(tf.ks_distance, 3)}` +
        (tf.p_value === null || tf.p_value === undefined ? "" : `, goodness-of-fit p = ${num(tf.p_value, 2)}`) + ").")
        : el("p", { class: "note" }, `No tail fit: ${s.tail_fit_error || "not made"}.`),
      theory ? el("p", { class: "note" }, `Predicted: support ${num(theory.predicted_support, 4)}, ` +
        `heavy-tail exponent 1 + 1/γ = ${num(theory.predicted_alpha_ww, 4)}` +
        (theory.note ? `. ${theory.note}` : "."))
        : el("p", { class: "note" }, `No prediction: ${spectra.theory_error || "not available"}.`));
  }

  async function load() {
    const run = await api(`/v1/runs/${runId}`);
    const hist = el("div", { class: "plot small", id: "spectrum-hist" });
    const rank = el("div", { class: "plot small", id: "spectrum-rank" });
    const curve = el("div", { class: "plot small", id: "curve-plot" });
    const notes = el("div", { id: "spectrum-notes" });
    app.replaceChildren(
      el("h1", {}, `Run ${run.id}`, " ", badge(run.status)),
      el("div", { class: "grid2" },
        el("section", { class: "panel", id: "metrics" }, el("h2", {}, "Metrics"), metricsPanel(run)),
        el("section", { class: "panel", id: "certificate" }, el("h2", {}, "Certificate"), certificatePanel(run))),
      el("section", { id: "config" }, el("h2", {}, "Configuration"), configPanel(run)),
      el("h2", {}, "Learning curve"), curve,
      el("h2", {}, "Spectrum of the trained weights"),
      el("div", { class: "grid2" }, hist, rank), notes);
    await curvePlot(curve, run);
    const spectra = await api(`/v1/runs/${runId}/spectrum?theory=true`);
    await spectrumPlots(run, hist, rank, notes, spectra);
  }

  load().catch((e) => fail(app, e));
})();
