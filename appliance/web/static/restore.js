// The restore wizard's item tree: one folder at a time from the panel's JSON API
// (GET /api/v1/recovery-points/{id}/items?path=). Local file, no framework.
//
// Seam for other item kinds: window.tapirRestoreTree.register(kind, expander) makes
// items of that kind expandable. expander(pointId, item) resolves to a list of
// {path, name, kind, size, folder} children; a child's checkbox posts its path as
// "paths". Single-file restore from disk images (issue #10) registers "disk" here.
"use strict";
(function () {
  const expanders = {};
  window.tapirRestoreTree = {
    register(kind, expander) { expanders[kind] = expander; },
  };

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }

  async function folderItems(pointId, item) {
    const path = item ? item.path : "";
    const url = "/api/v1/recovery-points/" + encodeURIComponent(pointId) +
      "/items?path=" + encodeURIComponent(path);
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.status);
    return body;
  }

  function expanderFor(item) {
    if (item.folder) return folderItems;
    return expanders[item.kind] || null;
  }

  function chooseItems() {
    const radio = document.querySelector("input[name=what][value=items]");
    if (radio) radio.checked = true;
  }

  function node(pointId, item) {
    const li = document.createElement("li");
    li.className = "item kind-" + item.kind;
    li.dataset.path = item.path;
    const expand = expanderFor(item);
    const toggle = document.createElement("button");
    toggle.type = "button";
    toggle.className = "toggle";
    toggle.textContent = expand ? "+" : "";
    toggle.disabled = !expand;
    const box = document.createElement("input");
    box.type = "checkbox";
    box.name = "paths";
    box.value = item.path;
    box.addEventListener("change", chooseItems);
    const label = document.createElement("label");
    label.append(box, " " + item.name + (item.folder ? "/" : ""));
    const size = document.createElement("small");
    size.textContent = item.folder ? "" : " " + bytes(item.size);
    li.append(toggle, label, size);
    if (expand) {
      let list = null;
      toggle.addEventListener("click", async () => {
        if (list) {
          list.hidden = !list.hidden;
          toggle.textContent = list.hidden ? "+" : "−";
          return;
        }
        toggle.disabled = true;
        try {
          list = render(pointId, await expand(pointId, item));
          li.append(list);
          toggle.textContent = "−";
        } catch (err) {
          li.append(errorLine(err));
        } finally {
          toggle.disabled = false;
        }
      });
    }
    return li;
  }

  function errorLine(err) {
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = "Could not list the items: " + err.message;
    return p;
  }

  function render(pointId, items) {
    const ul = document.createElement("ul");
    for (const item of items) ul.append(node(pointId, item));
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "(empty)";
      ul.append(li);
    }
    return ul;
  }

  async function start(tree) {
    const loading = document.getElementById("tree-loading");
    try {
      tree.append(render(tree.dataset.point, await folderItems(tree.dataset.point, null)));
      loading.remove();
    } catch (err) {
      loading.replaceWith(errorLine(err));
    }
  }

  const tree = document.getElementById("tree");
  // Deferred a tick so that a script loaded after this one can register expanders first.
  if (tree) setTimeout(() => start(tree), 0);
})();
