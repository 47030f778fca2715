// Lethe console: the one script. It keeps the dashboard's job table live from the server-sent events at
// /api/v1/jobs/events; every other page works without it. No inline script anywhere (the CSP forbids it).
"use strict";

function renderJobs(table, jobs) {
  const body = table.tBodies[0];
  const rows = jobs.map(function (j) {
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
    const cells = [j.id, j.kind, j.state, null, j.error || j.message || ""];
    cells.forEach(function (text, i) {
      const td = document.createElement("td");
      if (i === 3) {
        const p = document.createElement("progress");
        p.max = 1;
        p.value = j.state === "succeeded" ? 1 : (j.progress || 0);
        td.appendChild(p);
      } else {
        td.textContent = text; // text, never HTML: job messages may hold anything
      }
      if (i === 2) td.className = "state";
      if (i === 4) td.className = "message";
      tr.appendChild(td);
    });
    return tr;
  });
  body.replaceChildren.apply(body, rows);
}

document.addEventListener("DOMContentLoaded", function () {
  const table = document.querySelector("table[data-live]");
  if (!table || !window.EventSource) return;
  const source = new EventSource(table.dataset.live);
  source.addEventListener("jobs", function (ev) {
    try {
      renderJobs(table, JSON.parse(ev.data));
      table.dataset.updated = String(Date.now());
    } catch (e) {
      // A malformed event leaves the last good table in place.
    }
  });
});
