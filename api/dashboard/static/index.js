/* GET / : every sweep (name, model, status, progress, tags), live; filter by tag, show
 * archived ones, pick sweeps to compare. */
"use strict";

(() => {
  const { el, allPages, badge, progressBar, dataTable, fail } = SS;
  const app = document.getElementById("app");
  const params = new URLSearchParams(location.search);
  const state = { tag: params.get("tag") || "", archived: params.get("archived") || "false" };
  const picked = new Set();
  let table = null;
  let timer = null;

  function columns() {
    return [
      { key: "pick", label: "compare", value: (s) => picked.has(s.id),
        render: (s) => el("input", { type: "checkbox", class: "pick", "data-id": s.id,
          checked: picked.has(s.id), onchange: (e) => {
            if (e.target.checked) picked.add(s.id); else picked.delete(s.id);
            compareLink();
          } }) },
      { key: "id", label: "id", num: true, render: (s) => el("a", { href: `/sweeps/${s.id}` }, String(s.id)) },
      { key: "name", label: "name", wrap: true, value: (s) => s.name.toLowerCase(),
        render: (s) => el("a", { href: `/sweeps/${s.id}`, class: "sweep-name" }, s.name || "(unnamed)") },
      { key: "model", label: "model", value: (s) => s.spec.model, render: (s) => s.spec.model },
      { key: "status", label: "status", render: (s) => badge(s.status) },
      { key: "progress", label: "progress", value: (s) => ended(s) / Math.max(1, s.n_runs),
        render: (s) => progressBar(s.counts, s.n_runs) },
      { key: "tags", label: "tags", value: (s) => s.tags.join(","), wrap: true,
        render: (s) => s.tags.map((t) => el("a", { class: "tag", href: `/?tag=${encodeURIComponent(t)}` }, t)) },
      { key: "archived", label: "archived", render: (s) => (s.archived ? "archived" : "") },
      { key: "created_at", label: "created", render: (s) => new Date(s.created_at).toLocaleString() },
    ];
  }

  function ended(s) {
    return (s.counts.succeeded || 0) + (s.counts.failed || 0) + (s.counts.cancelled || 0);
  }

  const compare = el("a", { id: "compare-link", class: "muted" }, "pick two or more sweeps to compare");
  function compareLink() {
    if (picked.size >= 2) {
      compare.setAttribute("href", `/compare?ids=${[...picked].sort((a, b) => a - b).join(",")}`);
      compare.textContent = `compare ${picked.size} sweeps`;
      compare.className = "";
    } else {
      compare.removeAttribute("href");
      compare.textContent = "pick two or more sweeps to compare";
      compare.className = "muted";
    }
  }

  function emptyText() {
    const which = state.archived === "true" ? "archived sweep" : "sweep";
    if (state.tag) return `No ${which} is tagged “${state.tag}”.`;
    if (state.archived === "true") return "No sweep is archived.";
    return "No sweeps yet: submit one with scalesweep submit spec.yaml.";
  }

  async function load() {
    const query = { archived: state.archived };
    if (state.tag) query.tag = state.tag;
    const sweeps = await allPages("/v1/sweeps", query);
    if (!table) {
      table = dataTable(columns(), sweeps, { id: "sweeps-table", pageSize: 50,
        empty: emptyText });
      app.replaceChildren(
        el("h1", {}, "Sweeps"),
        el("div", { class: "controls" },
          el("label", {}, "tag ", el("input", { id: "tag-filter", value: state.tag, size: 14,
            placeholder: "any", onchange: (e) => { state.tag = e.target.value.trim(); reload(); } })),
          el("label", {}, "archived ", el("select", { id: "archived-filter",
            onchange: (e) => { state.archived = e.target.value; reload(); } },
            ["false", "true", "all"].map((v) => el("option", { value: v, selected: v === state.archived },
              { false: "hidden", true: "only archived", all: "shown too" }[v])))),
          compare),
        table,
        el("p", { class: "note" }, "Progress updates while sweeps run. Submit with ",
          el("code", {}, "scalesweep submit spec.yaml"), "; figures with ",
          el("code", {}, "scalesweep plot ID --kind risk --out risk.pdf"), "."));
    } else {
      table.update(sweeps);
    }
    const active = sweeps.some((s) => s.status === "queued" || s.status === "running");
    clearTimeout(timer);
    if (active) timer = setTimeout(() => load().catch((e) => fail(app, e)), 2000);
  }

  function reload() {
    const q = new URLSearchParams();
    if (state.tag) q.set("tag", state.tag);
    if (state.archived !== "false") q.set("archived", state.archived);
    history.replaceState(null, "", q.toString() ? `/?${q}` : "/");
    load().catch((e) => fail(app, e));
  }

  load().catch((e) => fail(app, e));
})();
