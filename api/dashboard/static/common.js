/* scalesweep dashboard: what every page shares.
 *
 * - api(path): fetch JSON from this server with the tab's token (sessionStorage), asking
 *   for a token on a 401; the token travels only in the Authorization header. An answer
 *   that is not 2xx becomes an ApiError whose message is the API's own sentence (its
 *   ``detail``, or the ``msg`` of each item of a 422), never its raw JSON.
 * - el(tag, attrs, ...children): DOM nodes; strings become text nodes (textContent), so
 *   user input is never parsed as HTML.
 * - sse(path, handlers): server-sent events read through fetch (EventSource cannot send
 *   an Authorization header).
 * - display names (symbol, axisLabel, groupLabel, formName, spectrumName) from the table
 *   of service/display.py (/static/display-names.js, the one the paper figures use);
 * - helpers for numbers, tables with sorting and paging, empty states, plots on log axes
 *   with readable ticks (the grid's own values, or 1-2-5 per decade, as plain numbers).
 */
"use strict";

const SS = (() => {
  const TOKEN_KEY = "scalesweep.token";

  /** A sentence: capital first letter, a full stop unless it ends in punctuation. */
  function sentence(text) {
    const t = String(text ?? "").trim();
    if (!t) return "";
    const s = t[0].toUpperCase() + t.slice(1);
    return /[.!?)]$/.test(s) ? s : `${s}.`;
  }

  class ApiError extends Error {
    /** ``detail``: the API's message, already text (see messageOf). */
    constructor(status, detail) {
      super(sentence(detail));
      this.status = status;
      this.detail = detail;
    }
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on") && typeof value === "function") {
        node.addEventListener(key.slice(2), value);
      } else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  function showAuthState() {
    const box = document.getElementById("auth-state");
    if (!box) return;
    box.replaceChildren();
    if (token()) {
      box.append("token set for this tab",
        el("button", { type: "button", id: "forget-token", onclick: () => {
          sessionStorage.removeItem(TOKEN_KEY);
          location.reload();
        } }, "forget"));
    }
  }

  let asking = null;
  function askToken(message) {
    if (asking) return asking;
    asking = new Promise((resolve) => {
      const input = el("input", { type: "password", id: "token-input", autocomplete: "off",
        placeholder: "ss_..." });
      const form = el("form", { class: "dialog", id: "token-form" },
        el("h2", {}, "API token"),
        el("p", { class: "muted" }, message ||
          "This server needs a token (SCALESWEEP_AUTH=on). It is kept in this tab only."),
        input,
        el("div", { class: "row" }, el("button", { type: "submit", class: "primary" }, "Use token")));
      const backdrop = el("div", { class: "dialog-backdrop" }, form);
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const value = input.value.trim();
        if (!value) return;
        sessionStorage.setItem(TOKEN_KEY, value);
        backdrop.remove();
        asking = null;
        showAuthState();
        resolve(value);
      });
      document.body.append(backdrop);
      input.focus();
    });
    return asking;
  }

  function headers(extra) {
    const h = Object.assign({ Accept: "application/json" }, extra || {});
    const t = token();
    if (t) h.Authorization = `Bearer ${t}`;
    return h;
  }

  const SOURCES = ["query", "path", "body"];

  /** The human message of an error body: FastAPI's ``detail`` string, or the ``msg`` of
   * each item of a 422 list (naming the field where the message does not); null if none. */
  function messageOf(detail) {
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      const parts = detail.map((item) => {
        if (typeof item === "string") return item;
        if (!item || typeof item.msg !== "string") return null;
        const msg = item.msg.replace(/^Value error, /, "");
        const loc = (item.loc || []).filter((p) => !SOURCES.includes(p));
        return loc.length && item.type !== "value_error" && item.type !== "limit_error"
          ? `${loc.join(".")}: ${msg}` : msg;
      }).filter(Boolean);
      return parts.length ? parts.join("; ") : null;
    }
    if (detail && typeof detail === "object") {
      return messageOf(detail.detail) || (typeof detail.message === "string" ? detail.message : null);
    }
    return null;
  }

  async function detailOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null; // not JSON: say what the status says
    }
    return messageOf(body) ||
      `the server answered ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
  }

  async function request(path, options) {
    // with SCALESWEEP_AUTH=on the page says so: ask before the first request, not after a 401
    if (document.body.dataset.auth === "on" && !token()) await askToken(null);
    for (let attempt = 0; attempt < 5; attempt += 1) {
      const response = await fetch(path, Object.assign({}, options, {
        headers: headers((options || {}).headers),
      }));
      if (response.status === 401) {
        const had = token();
        if (had) sessionStorage.removeItem(TOKEN_KEY);
        await askToken(had ? "That token was refused; give another." : null);
        continue;
      }
      if (!response.ok) throw new ApiError(response.status, await detailOf(response));
      return response;
    }
    throw new ApiError(401, "no valid token was given");
  }

  async function api(path, options) {
    return (await request(path, options)).json();
  }

  /** Every item of a paginated list (follows next_cursor). */
  async function allPages(path, params) {
    const items = [];
    let cursor = null;
    do {
      const query = new URLSearchParams(Object.assign({ limit: "1000" }, params || {}));
      if (cursor) query.set("cursor", cursor);
      const page = await api(`${path}?${query}`);
      items.push(...page.items);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }

  /** Download an authenticated response as a file (the token stays in the header). */
  async function download(path, filename) {
    const blob = await (await request(path)).blob();
    const url = URL.createObjectURL(blob);
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  /** Server-sent events through fetch; returns a function that stops the stream. */
  function sse(path, handlers) {
    const controller = new AbortController();
    (async () => {
      const response = await request(path, { signal: controller.signal,
        headers: { Accept: "text/event-stream" } });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = "message";
          const data = [];
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) event = line.slice(6).trim();
            else if (line.startsWith("data:")) data.push(line.slice(5).trim());
          }
          if (data.length && handlers[event]) handlers[event](JSON.parse(data.join("\n")));
        }
      }
      if (handlers.end) handlers.end();
    })().catch((err) => {
      if (err.name !== "AbortError" && handlers.error) handlers.error(err);
    });
    return () => controller.abort();
  }

  function num(value, digits) {
    if (value === null || value === undefined || value === "") return "";
    if (typeof value !== "number") return String(value);
    if (!Number.isFinite(value)) return String(value);
    if (Number.isInteger(value) && Math.abs(value) < 1e6) return String(value);
    const a = Math.abs(value);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return value.toExponential((digits || 4) - 1);
    return Number(value.toPrecision(digits || 4)).toString();
  }

  function interval(ci) {
    return ci ? `[${num(ci[0], 3)}, ${num(ci[1], 3)}]` : "";
  }

  function badge(text) {
    const t = text === true ? "yes" : text === false ? "no" : String(text ?? "");
    return el("span", { class: `badge ${t.replace(/[^a-z_]/gi, "")}` }, t);
  }

  function progressBar(counts, nRuns) {
    const c = counts || {};
    const total = Math.max(1, nRuns || 0);
    const ok = c.succeeded || 0;
    const bad = (c.failed || 0) + (c.cancelled || 0);
    const run = c.running || 0;
    const bar = el("div", { class: "progress", title: JSON.stringify(c) },
      el("span", { class: "ok", style: `left:0;width:${(100 * ok) / total}%` }),
      el("span", { class: "bad", style: `left:${(100 * ok) / total}%;width:${(100 * bad) / total}%` }),
      el("span", { class: "run",
        style: `left:${(100 * (ok + bad)) / total}%;width:${(100 * run) / total}%` }));
    const label = el("span", { class: "progress-label" },
      `${ok + bad} / ${nRuns} ended (${ok} succeeded, ${c.failed || 0} failed, ${run} running, ` +
      `${c.queued || 0} queued)`);
    return el("div", { class: "row progress-row" }, bar, label);
  }

  function kv(pairs) {
    const dl = el("dl", { class: "kv" });
    for (const [k, v] of pairs) dl.append(el("dt", {}, k), el("dd", {}, v));
    return dl;
  }

  /**
   * A table over rows with sortable columns and pages: columns are
   * {key, label, value(row) -> sortable, render(row) -> node|string, num, wrap: bool}; only
   * wrap columns (long text) wrap, the table scrolls sideways on a narrow screen.
   * Every row is reachable: the pager says which rows of how many are shown. Without rows
   * the table is one line, ``options.empty`` (a string, or a function of nothing), saying
   * why there is nothing yet.
   */
  function dataTable(columns, rows, options) {
    const opts = Object.assign({ pageSize: 50, id: null, empty: "Nothing to show." }, options || {});
    let sortKey = opts.sortKey || null;
    let ascending = true;
    let page = 0;
    const wrap = el("div", { class: "tablewrap", id: opts.id });
    const pager = el("div", { class: "pager" });
    const holder = el("div", {}, pager, wrap);

    function sorted() {
      if (!sortKey) return rows;
      const col = columns.find((c) => c.key === sortKey);
      const value = col.value || ((r) => r[col.key]);
      const out = rows.slice();
      out.sort((a, b) => {
        const x = value(a);
        const y = value(b);
        if (x === y) return 0;
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * (ascending ? 1 : -1);
      });
      return out;
    }

    function draw() {
      const all = sorted();
      if (!all.length) {
        const text = typeof opts.empty === "function" ? opts.empty() : opts.empty;
        pager.replaceChildren();
        wrap.replaceChildren(el("p", { class: "muted empty-state" }, text));
        return;
      }
      const pages = Math.max(1, Math.ceil(all.length / opts.pageSize));
      page = Math.min(page, pages - 1);
      const start = page * opts.pageSize;
      const pageRows = all.slice(start, start + opts.pageSize);
      const head = el("tr", {}, columns.map((c) => el("th", {
        class: "sortable", title: "sort",
        onclick: () => {
          ascending = sortKey === c.key ? !ascending : true;
          sortKey = c.key;
          draw();
        },
      }, c.label + (sortKey === c.key ? (ascending ? " ▲" : " ▼") : ""))));
      const body = pageRows.map((r) => el("tr", {}, columns.map((c) => {
        const content = c.render ? c.render(r) : r[c.key];
        return el("td", { class: c.num ? "num" : c.wrap ? "wrap" : null },
          typeof content === "number" ? num(content) : content);
      })));
      wrap.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
      const label = el("span", { class: "muted pager-label" }, pages === 1
        ? `${all.length} ${all.length === 1 ? "row" : "rows"}`
        : `rows ${start + 1}–${start + pageRows.length} of ${all.length}`);
      if (pages === 1) {
        pager.replaceChildren(label);
        return;
      }
      pager.replaceChildren(
        label,
        el("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; draw(); } },
          "‹ previous"),
        el("span", {}, `page ${page + 1} of ${pages}`),
        el("button", { type: "button", disabled: page >= pages - 1,
          onclick: () => { page += 1; draw(); } }, "next ›"));
    }

    holder.update = (newRows) => {
      rows = newRows;
      draw();
    };
    draw();
    return holder;
  }

  /** The value of a grid axis for a run's config. */
  function axisValue(config, axis) {
    switch (axis) {
      case "n": return config.n;
      case "d": return config.d;
      case "alpha": return config.n / (config.model === "quadratic" ? config.d * config.d : config.d);
      case "weight_decay": return config.weight_decay;
      case "gamma": return config.teacher.gamma;
      case "noise": return config.teacher.noise;
      case "rank": return config.teacher.rank;
      case "seed": return config.seed;
      case "link_power": return config.link_power;
      case "width": return effectiveWidth(config);
      default: return undefined;
    }
  }

  /** The run's hidden width m (RunConfig.width): training.width, else d (2d with a signed
   * second layer); the diagonal net's is d. */
  function effectiveWidth(config) {
    if (config.model === "diagonal") return config.d;
    const t = config.training || {};
    if (t.width !== null && t.width !== undefined) return t.width;
    return t.second_layer === "signed" ? 2 * config.d : config.d;
  }

  // --- display names: the table of service/display.py, served as /static/display-names.js

  const DISPLAY = window.SS_DISPLAY || { fields: {}, spectra: {}, forms: {} };

  function nameOf(key) {
    return DISPLAY.fields[key] || DISPLAY.spectra[key] || null;
  }

  /** λ for weight_decay, |θ| for abs_theta (an unknown key as it is). */
  function symbol(key) {
    const n = nameOf(key);
    return n ? n.symbol : String(key);
  }

  /** "λ (weight decay)": the symbol and its words. */
  function axisLabel(key) {
    const n = nameOf(key);
    return n ? `${n.symbol} (${n.meaning})` : String(key).replace(/_/g, " ");
  }

  /** The value as shown: link_power -0.5 is l = 0.5 (λ ∝ x^-l). */
  function shown(key, value) {
    const n = DISPLAY.fields[key];
    if (value === null || value === undefined || !n || n.sign === 1) return value;
    return n.sign * value;
  }

  /** "power law" for power_law, "broken power law (1 break)" for broken_power_law_1. */
  function formName(form) {
    if (!form) return "";
    if (DISPLAY.forms[form]) return DISPLAY.forms[form];
    const k = /^broken_power_law_(\d+)$/.exec(form);
    if (k) return `${DISPLAY.forms.broken_power_law} (${k[1]} ${k[1] === "1" ? "break" : "breaks"})`;
    return String(form).replace(/_/g, " ");
  }

  /** A text of the API (a fit's notes) with every form's name written for people. */
  function formsIn(text) {
    return String(text ?? "").replace(/\b(?:broken_power_law(?:_\d+)?|power_law)\b/g, formName);
  }

  function trimZeros(text) {
    return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
  }

  /** Python's "%.{digits}g" with a short exponent (1e-5): service/display.py's number(). */
  function fmtG(value, digits) {
    if (value === null || value === undefined) return "–";
    if (typeof value !== "number") return String(value);
    if (value === 0) return "0";
    if (!Number.isFinite(value)) return String(value);
    const p = digits || 4;
    const rounded = Number(value.toPrecision(p));
    const e = Math.floor(Math.log10(Math.abs(rounded)));
    if (e < -4 || e >= p) {
      const [m, x] = rounded.toExponential(p - 1).split("e");
      return `${trimZeros(m)}e${Number(x)}`;
    }
    return trimZeros(rounded.toFixed(Math.max(0, p - 1 - e)));
  }

  /** "λ = 0.01, l = 0.5" (or "all runs"): service/display.py's group_label(). */
  function groupLabel(group) {
    const parts = Object.entries(group || {}).map(([k, v]) => `${symbol(k)} = ${fmtG(shown(k, v), 4)}`);
    return parts.length ? parts.join(", ") : "all runs";
  }

  function groupKey(values) {
    return JSON.stringify(values.map((v) => (v === null || v === undefined ? null : Number(v))));
  }

  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

  // --- log axes with readable ticks

  const SUPERSCRIPT = { "-": "⁻", 0: "⁰", 1: "¹", 2: "²", 3: "³", 4: "⁴", 5: "⁵", 6: "⁶",
    7: "⁷", 8: "⁸", 9: "⁹" };

  /** A tick's text: a plain number from 0.001 to 99999 (200, 1600, 0.005), else 2×10⁻⁵. */
  function tickLabel(v) {
    const a = Math.abs(v);
    if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(4)));
    const e = Math.floor(Math.log10(a) + 1e-9);
    const m = Number((v / 10 ** e).toPrecision(3));
    const pow = `10${String(e).split("").map((c) => SUPERSCRIPT[c]).join("")}`;
    return m === 1 ? pow : `${fmtG(m, 3)}×${pow}`;
  }

  /** mantissas x 10^k for every k around [lo, hi] (every ``every``-th decade). */
  function decadeTicks(lo, hi, mantissas, every) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)) - 1; e <= Math.ceil(Math.log10(hi)) + 1; e += 1) {
      if (every > 1 && ((e % every) + every) % every !== 0) continue;
      for (const m of mantissas) out.push(Number((m * 10 ** e).toPrecision(12)));
    }
    return out;
  }

  /**
   * Tick values and texts for a log axis over ``values`` drawn ``pixels`` long: the grid's
   * own values where there are 3 to 10 and they fit (x axes: 200, 400, 800, 1600), else 1-2-5 per
   * decade, else 1-3, every decade, every 2nd, 3rd, 5th... decade: the first set whose
   * labels do not touch. One value: that value, on a range of ±0.3 decade.
   */
  function logTicks(values, pixels, horizontal, gridValues) {
    const positive = (v) => typeof v === "number" && v > 0 && Number.isFinite(v);
    const vs = values.filter(positive);
    if (!vs.length) return null;
    const lo = vs.reduce((a, b) => Math.min(a, b));
    const hi = vs.reduce((a, b) => Math.max(a, b));
    if (hi / lo < 1.0001) {
      const c = Math.log10(lo);
      return { tickvals: [lo], ticktext: [tickLabel(lo)], range: [c - 0.3, c + 0.3] };
    }
    const span = Math.log10(hi / lo);
    const pad = 10 ** (0.06 * span);
    const perDecade = pixels / (span * 1.12);
    const visible = (ticks) => ticks.filter((t) => t >= lo / pad && t <= hi * pad);
    const room = (ticks) => (horizontal
      ? Math.max(...ticks.map((t) => tickLabel(t).length)) * 7.5 + 14 : 20);
    const fits = (ticks) => {
      const t = visible(ticks);
      if (t.length < 2) return false;
      const need = room(t);
      for (let i = 1; i < t.length; i += 1) {
        if (Math.log10(t[i] / t[i - 1]) * perDecade < need) return false;
      }
      return true;
    };
    const candidates = [];
    if (horizontal) {
      const grid = (gridValues || vs).filter(positive);
      const distinct = [...new Set(grid.map((v) => Number(v.toPrecision(10))))].sort((a, b) => a - b);
      if (distinct.length >= 3 && distinct.length <= 10) candidates.push(distinct);
    }
    candidates.push(decadeTicks(lo, hi, [1, 2, 5], 1), decadeTicks(lo, hi, [1, 3], 1));
    for (const every of [1, 2, 3, 5, 10, 20]) candidates.push(decadeTicks(lo, hi, [1], every));
    let chosen = candidates.find(fits);
    if (!chosen) {
      const fine = decadeTicks(lo, hi, [1, 2, 3, 4, 5, 6, 7, 8, 9], 1);
      chosen = fits(fine) ? fine : candidates[candidates.length - 1];
      if (visible(chosen).length < 2) chosen = [lo, hi];
    }
    return { tickvals: chosen, ticktext: chosen.map(tickLabel) };
  }

  /** A count axis: integer ticks (never 0.5, 1.5) from 0, about 30 px apart at least. */
  function countAxis(maxCount, pixels, title) {
    const most = Math.max(1, Math.floor(pixels / 30));
    let dtick = 1;
    for (const step of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000]) {
      dtick = step;
      if (maxCount / step <= most) break;
    }
    return { type: "linear", title: { text: title }, rangemode: "tozero", tick0: 0, dtick,
      tickformat: "d" };
  }

  function logLayout(xTitle, yTitle, extra) {
    return Object.assign({
      margin: { l: 70, r: 20, t: 30, b: 60 },
      xaxis: { type: "log", title: { text: xTitle } },
      yaxis: { type: "log", title: { text: yTitle } },
      legend: { orientation: "h", y: -0.22 },
      hovermode: "closest",
      font: { size: 12 },
    }, extra || {});
  }

  /** Every value traces put on an axis ("x" or "y"), bands and lines included; with
   * ``markersOnly``, those of traces drawn with markers (the measured grid points). */
  function axisValues(traces, letter, ref, markersOnly) {
    const out = [];
    for (const t of traces) {
      if ((t[`${letter}axis`] || letter) !== ref) continue;
      if (markersOnly && !String(t.mode || "").includes("markers")) continue;
      for (const v of t[letter] || []) out.push(v);
    }
    return out;
  }

  /** Log axes without explicit ticks get readable ones for the data they show; a legend
   * below the plot hangs from a fixed distance under the x axis (its title included), so
   * that more rows of it (a narrow screen) grow downwards, never into the axis. */
  function finishLayout(node, traces, layout) {
    const margin = layout.margin || { l: 80, r: 80, t: 100, b: 80 };
    const width = Math.max(200, (node.clientWidth || 600) - (margin.l || 0) - (margin.r || 0));
    const height = Math.max(150, 0.75 * ((layout.height || node.clientHeight || 450) -
      (margin.t || 0) - (margin.b || 0)));
    const out = Object.assign({}, layout);
    const legend = layout.legend;
    if (legend && legend.orientation === "h" && legend.y < 0) {
      const area = (layout.height || node.clientHeight || 450) - (margin.t || 0) - (margin.b || 0);
      out.legend = Object.assign({}, legend, { yanchor: "top", y: -72 / Math.max(area, 100) });
    }
    for (const key of Object.keys(layout)) {
      const m = /^([xy])axis(\d*)$/.exec(key);
      const axis = layout[key];
      if (!m || !axis || axis.type !== "log" || axis.tickvals) continue;
      const ref = `${m[1]}${m[2]}`;
      const ticks = logTicks(axisValues(traces, m[1], ref), m[1] === "x" ? width : height,
        m[1] === "x", axisValues(traces, m[1], ref, true));
      if (!ticks) continue;
      out[key] = Object.assign({ tickmode: "array" }, axis, ticks,
        ticks.range && !axis.range ? { autorange: false } : {});
    }
    return out;
  }

  function plot(node, traces, layout) {
    // Plotly from the installed package (/static/vendor/plotly.min.js)
    if (node.classList.contains("empty")) {
      node.replaceChildren();
      node.classList.remove("empty");
    }
    return window.Plotly.react(node, traces, finishLayout(node, traces, layout), {
      displaylogo: false, responsive: true,
      toImageButtonOptions: { format: "svg", filename: "scalesweep" },
    });
  }

  /**
   * Where a plot or table has nothing to show: one line that says what is coming (the
   * block collapses to it). Returns the node.
   */
  function emptyState(node, text) {
    if (window.Plotly && node._fullLayout) window.Plotly.purge(node);
    node.replaceChildren(el("p", { class: "muted empty-state" }, text));
    node.classList.add("empty");
    return node;
  }

  /** The human sentence of any error: the API's message, or what went wrong in the page. */
  function errorText(err) {
    if (err instanceof ApiError) {
      return err.message; // e.g. "Sweep 12 not found.", "The phase diagram needs ..."
    }
    if (err instanceof TypeError && /fetch/i.test(err.message)) {
      return `Could not reach the server: ${sentence(err.message)}`;
    }
    if (typeof err === "string") return sentence(err);
    return `This page could not be drawn: ${sentence(err && err.message ? err.message : err)}`;
  }

  function fail(container, err) {
    container.replaceChildren(el("p", { class: "error", id: "page-error" }, errorText(err)));
  }

  function mean(values) {
    return values.reduce((a, b) => a + b, 0) / values.length;
  }

  function stderr(values) {
    if (values.length < 2) return 0;
    const m = mean(values);
    const v = values.reduce((a, b) => a + (b - m) ** 2, 0) / (values.length - 1);
    return Math.sqrt(v / values.length);
  }

  document.addEventListener("DOMContentLoaded", showAuthState);

  return {
    ApiError, el, api, allPages, request, download, sse, num, interval, badge, progressBar,
    kv, dataTable, axisValue, effectiveWidth, symbol, axisLabel, shown, formName, formsIn, fmtG,
    groupLabel, groupKey, COLORS, tickLabel, logTicks, countAxis, logLayout, plot, emptyState, errorText, fail,
    sentence, mean, stderr, token, askToken,
  };
})();
