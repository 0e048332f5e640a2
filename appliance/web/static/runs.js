// Live progress of runs: polls the panel's own JSON API (/api/v1) while a run is
// queued or running. Local file, no framework: appliances are often offline.
"use strict";
(function () {
  const FINISHED = ["succeeded", "warning", "failed", "canceled"];
  const POLL_MS = 1000;

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function duration(s) {
    if (s === null || s === undefined) return "";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + (s % 60) + "s";
  }
  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso), pad = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function amount(r) {
    return bytes(r.bytes_done) + (r.bytes_total ? " / " + bytes(r.bytes_total) : "");
  }
  function text(id, value) {
    const el = document.getElementById(id);
    if (el) el.textContent = value;
  }
  async function fetchJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + ": " + response.status);
    return response.json();
  }

  async function followRun(box) {
    const r = await fetchJSON("/api/v1/runs/" + box.dataset.run);
    const state = document.getElementById("run-state");
    state.textContent = r.state;
    state.className = "state-" + r.state;
    document.getElementById("run-progress").value = Math.round(r.percent || 0);
    text("run-bytes", amount(r));
    text("run-rate", r.rate ? bytes(r.rate) + "/s" : "");
    text("run-eta", duration(r.eta));
    text("run-current", r.current || "");
    text("run-error", r.error || "");
    text("run-log", r.log.map((l) => when(l.at) + " " + l.level + " " + l.message).join("\n"));
    if (FINISHED.includes(r.state)) {
      const cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
      return;
    }
    setTimeout(() => followRun(box).catch(console.error), POLL_MS);
  }

  function cell(row, value, cls) {
    const td = row.insertCell();
    td.textContent = value;
    if (cls) td.className = cls;
  }

  async function followJob(table) {
    const runs = await fetchJSON("/api/v1/runs?limit=20&job=" + encodeURIComponent(table.dataset.job));
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const r of runs) {
      const row = body.insertRow();
      row.className = "state-" + r.state;
      row.dataset.run = r.id;
      const link = document.createElement("a");
      link.href = "/jobs/runs/" + r.id;
      link.textContent = r.id;
      row.insertCell().append(link);
      cell(row, r.level);
      cell(row, when(r.queued_at));
      cell(row, r.state + (r.error ? " !" : ""));
      cell(row, (r.percent !== null ? Math.round(r.percent) + "% " : "") + amount(r));
      cell(row, r.rate ? bytes(r.rate) + "/s" : "", "num");
      cell(row, duration(r.eta), "num");
    }
    if (runs.some((r) => !FINISHED.includes(r.state))) {
      setTimeout(() => followJob(table).catch(console.error), POLL_MS);
    }
  }

  const run = document.getElementById("run");
  if (run) followRun(run).catch(console.error);
  const table = document.getElementById("runs");
  if (table && table.dataset.job) followJob(table).catch(console.error);
})();
