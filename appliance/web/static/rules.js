// Live preview of a job's selection rules: while the operator types, the draft rules
// are sent to the panel's own JSON API (POST .../rules/preview, which saves nothing)
// and the table shows which rule matched each asset. Local file, no framework.
"use strict";
(function () {
  const form = document.getElementById("rules-form");
  if (!form) return;
  const include = document.getElementById("rules-include");
  const exclude = document.getElementById("rules-exclude");
  const body = document.getElementById("rules-assets");
  const count = document.getElementById("rules-count");
  const error = document.getElementById("rules-error");
  const unmatched = document.getElementById("rules-unmatched");
  const token = document.querySelector('meta[name="csrf-token"]').content;
  const DELAY_MS = 250;
  let timer = null;
  let sequence = 0;

  function lines(area) {
    return area.value.split("\n").map((s) => s.trim()).filter((s) => s.length > 0);
  }
  function cell(row, value) {
    const td = document.createElement("td");
    td.textContent = value;
    row.appendChild(td);
  }
  function show(result) {
    body.replaceChildren();
    for (const a of result.assets) {
      const row = document.createElement("tr");
      row.className = a.selected ? "selected" : (a.excluded_by ? "excluded" : "unmatched");
      row.dataset.asset = a.name;
      cell(row, a.name);
      cell(row, a.kind);
      cell(row, a.selected ? "selected" : (a.excluded_by ? "excluded" : "not matched"));
      cell(row, a.reason);
      body.appendChild(row);
    }
    if (!result.assets.length) {
      const row = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = 4;
      td.className = "empty";
      td.textContent = "No asset known: register and discover an endpoint under Inventory.";
      row.appendChild(td);
      body.appendChild(row);
    }
    count.textContent = result.selected + " selected, " + result.excluded + " excluded";
    unmatched.textContent = result.unmatched_rules.length
      ? "No present asset matches " + result.unmatched_rules.join(", ") + "." : "";
    error.hidden = true;
  }
  async function preview() {
    const mine = ++sequence;
    const response = await fetch(form.dataset.preview, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": token },
      body: JSON.stringify({ include: lines(include), exclude: lines(exclude) }),
    });
    const result = await response.json();
    if (mine !== sequence) return; // an answer to older text: a newer request is on its way
    if (!response.ok) {
      error.textContent = result.error || ("preview failed: " + response.status);
      error.hidden = false;
      count.textContent = "";
      return;
    }
    show(result);
  }
  function later() {
    clearTimeout(timer);
    timer = setTimeout(() => preview().catch((e) => {
      error.textContent = String(e);
      error.hidden = false;
    }), DELAY_MS);
  }
  include.addEventListener("input", later);
  exclude.addEventListener("input", later);
})();
