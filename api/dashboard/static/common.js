/* scalesweep dashboard: what every page shares.
 *
 * - api(path): fetch JSON from this server with the tab's token (sessionStorage), asking
 *   for a token on a 401; the token travels only in the Authorization header.
 * - el(tag, attrs, ...children): DOM nodes; strings become text nodes (textContent), so
 *   user input is never parsed as HTML.
 * - sse(path, handlers): server-sent events read through fetch (EventSource cannot send
 *   an Authorization header).
 * - helpers for numbers, tables with sorting and paging, plots on log axes.
 */
"use strict";

const SS = (() => {
  const TOKEN_KEY = "scalesweep.token";

  class ApiError extends Error {
    constructor(status, detail) {
      super(`${status}: ${detail}`);
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

  async function detailOf(response) {
    try {
      const body = await response.json();
      if (typeof body.detail === "string") return body.detail;
      return JSON.stringify(body.detail ?? body);
    } catch (_) {
      return response.statusText;
    }
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
    throw new ApiError(401, "no valid token given");
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
   * {key, label, value(row) -> sortable, render(row) -> node|string, num: bool}.
   * Every row is reachable: the pager says which rows of how many are shown.
   */
  function dataTable(columns, rows, options) {
    const opts = Object.assign({ pageSize: 50, id: null }, options || {});
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
      const pages = Math.max(1, Math.ceil(all.length / opts.pageSize));
      page = Math.min(page, pages - 1);
      const start = page * opts.pageSize;
      const shown = all.slice(start, start + opts.pageSize);
      const head = el("tr", {}, columns.map((c) => el("th", {
        class: "sortable", title: "sort",
        onclick: () => {
          ascending = sortKey === c.key ? !ascending : true;
          sortKey = c.key;
          draw();
        },
      }, c.label + (sortKey === c.key ? (ascending ? " ▲" : " ▼") : ""))));
      const body = shown.map((r) => el("tr", {}, columns.map((c) => {
        const content = c.render ? c.render(r) : r[c.key];
        return el("td", { class: c.num ? "num" : c.wrap ? "wrap" : null },
          typeof content === "number" ? num(content) : content);
      })));
      wrap.replaceChildren(el("table", {}, el("thead", {}, head), el("tbody", {}, body)));
      pager.replaceChildren(
        el("span", { class: "muted pager-label" }, all.length
          ? `rows ${start + 1}–${start + shown.length} of ${all.length}`
          : "no rows"),
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
      default: return undefined;
    }
  }

  const AXIS_LABEL = {
    n: "n (samples)", d: "d (dimension)", alpha: "α = n / d² (quadratic), n / d (diagonal)",
    weight_decay: "λ (weight decay)", gamma: "γ", noise: "Δ (noise)",
  };

  function groupLabel(group) {
    const parts = Object.entries(group || {}).map(([k, v]) => `${k}=${num(v, 4)}`);
    return parts.length ? parts.join(", ") : "all runs";
  }

  function groupKey(values) {
    return JSON.stringify(values.map((v) => (v === null || v === undefined ? null : Number(v))));
  }

  const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];

  function logLayout(xTitle, yTitle, extra) {
    return Object.assign({
      margin: { l: 70, r: 20, t: 30, b: 60 },
      xaxis: { type: "log", title: { text: xTitle }, exponentformat: "power" },
      yaxis: { type: "log", title: { text: yTitle }, exponentformat: "power" },
      legend: { orientation: "h", y: -0.22 },
      hovermode: "closest",
      font: { size: 12 },
    }, extra || {});
  }

  function plot(node, traces, layout) {
    // Plotly from the installed package (/static/vendor/plotly.min.js)
    return window.Plotly.react(node, traces, layout, {
      displaylogo: false, responsive: true,
      toImageButtonOptions: { format: "svg", filename: "scalesweep" },
    });
  }

  function fail(container, err) {
    const status = err && err.status;
    const text = status === 404 ? `Not found: ${err.detail}` : `Error: ${err && err.message ? err.message : err}`;
    container.replaceChildren(el("p", { class: "error", id: "page-error" }, text));
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
    kv, dataTable, axisValue, AXIS_LABEL, groupLabel, groupKey, COLORS, logLayout, plot, fail,
    mean, stderr, token, askToken,
  };
})();
