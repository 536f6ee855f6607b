// Polls GET /pipelines and redraws the pipelines as the server rendered
// them; without JavaScript the page reloads itself instead.
"use strict";
(function () {
  const poll = Number(document.body.dataset.pollMs) || 1000;
  const main = document.getElementById("pipelines");
  const updated = document.getElementById("updated");
  const live = document.getElementById("live");

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
    return e;
  }
  const clock = (t) => new Date(t).toISOString().slice(11, 19) + " UTC";
  const rate = (x) => x.toFixed(1);
  const opt = (x) => (x === undefined || x === null ? "–" : x);

  function table(cls, caption, head, rows) {
    return h("table", { class: cls }, h("caption", null, caption),
      h("thead", null, h("tr", null, ...head.map((c) => h("th", null, c)))),
      h("tbody", null, ...rows.map((r) => h("tr", null, ...r.map((c) => h("td", null, c))))));
  }

  function pipeline(p) {
    const stat = (label, field, value) => h("div", null, h("dt", null, label), h("dd", { "data-field": field }, value));
    const s = h("section", { class: "pipeline", "data-name": p.name },
      h("h2", null, h("span", { class: "name" }, p.name), " ", h("span", { class: "state state-" + p.state }, p.state)),
      h("p", { class: "file" }, p.file),
      h("dl", { class: "stats" },
        stat("in/s", "in_per_sec", rate(p.in_per_sec)),
        stat("out/s", "out_per_sec", rate(p.out_per_sec)),
        stat("records in", "records_in", p.records_in),
        stat("records out", "records_out", p.records_out),
        stat("rejected", "records_rejected", p.records_rejected),
        stat("epoch", "epoch", p.epoch),
        stat("last commit", "last_commit", p.last_commit ? clock(p.last_commit) : "–"),
        stat("restarts", "restarts", p.restarts)));
    if (p.retrying) s.append(h("p", { class: "error" }, "retrying: " + p.retrying));
    else if (p.error) s.append(h("p", { class: "error" }, p.error));
    if (p.lag && p.lag.length) {
      s.append(table("lag", "lag per partition", ["topic", "partition", "position", "end", "lag"],
        p.lag.map((l) => [l.topic, l.partition, opt(l.position), l.end, opt(l.lag)])));
    }
    if (p.tasks && p.tasks.length) {
      s.append(table("tasks", "tasks this process runs", ["task", "epoch", "lag"],
        p.tasks.map((t) => [t.task, t.epoch, opt(t.lag)])));
    }
    if (p.plugins && p.plugins.length) {
      s.append(h("ul", { class: "plugins" }, ...p.plugins.map((g) =>
        h("li", null, h("span", { class: "plugin" }, g.name), " pid " + g.pids.join(", ")))));
    }
    return s;
  }

  async function refresh() {
    try {
      // Relative, so the page also works behind a proxy that serves it
      // under a path of its own.
      const r = await fetch("pipelines", { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const list = await r.json();
      main.replaceChildren(...(list.length ? list.map(pipeline) : [h("p", { class: "empty" }, "No pipelines yet.")]));
      const now = new Date();
      updated.textContent = "updated " + clock(now);
      updated.title = now.toISOString();
      live.textContent = "live";
      live.className = "";
    } catch (e) {
      live.textContent = "not updating (" + e.message + "); retrying";
      live.className = "stale";
    }
    setTimeout(refresh, poll);
  }
  setTimeout(refresh, poll);
})();
