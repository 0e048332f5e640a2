// Files inside the disk images of an image recovery point, in the restore wizard's tree
// (issues #8 and #10). Local file, no framework; loaded after restore.js on the
// "what and where" page of image points.
//
// restore.js makes a disk item expandable through the seam
// window.tapirRestoreTree.register(kind, expander). Here a disk opens into its volumes
// and a volume or folder into its entries, one level at a time, through the image API
// (GET /api/v1/recovery-points/{id}/image/disks, .../disks/{n}/volumes,
// .../entries?address=). Every child's path is its address DISK:VOLUME/PATH: a ticked
// box posts it as "paths", which the wizard restores with the imagefs reader.
// Children are never "folder" items: that would make restore.js list them through the
// point's item API, which knows only the disks.
"use strict";
(function () {
  if (!window.tapirRestoreTree) return;

  function base(pointId) {
    return "/api/v1/recovery-points/" + encodeURIComponent(pointId) + "/image";
  }

  async function getJson(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      throw new Error("the panel answered " + response.status + " without JSON");
    }
    if (!response.ok) throw new Error((body && body.error) || String(response.status));
    return body;
  }

  function volumeName(volume) {
    if (!volume.fs) {
      return volume.name + " (cannot be opened: " + (volume.error || "no file system") + ")";
    }
    const facts = [volume.fs, volume.kind];
    if (volume.label) facts.push("label " + volume.label);
    return volume.name + " (" + facts.join(", ") + ")";
  }

  async function volumes(pointId, disk) {
    // A disk item's path (disks/N-NAME) is matched to its number: the volumes route
    // takes the number, as a path with a slash cannot be one URL segment.
    const disks = await getJson(base(pointId) + "/disks");
    const found = disks.find((d) => d.item_path === disk.path);
    if (!found) throw new Error("the image reader does not list the disk " + disk.path);
    const body = await getJson(base(pointId) + "/disks/" + found.index + "/volumes");
    return body.volumes.map((v) => ({
      path: v.address,
      name: volumeName(v),
      kind: v.fs ? "image-volume" : "image-unreadable",
      size: v.size,
      folder: false,
    }));
  }

  function entryName(entry) {
    if (entry.kind === "dir") return entry.name + "/";
    if (entry.kind === "symlink") return entry.name + " → " + entry.target;
    return entry.name;
  }

  async function entries(pointId, folder) {
    const url = base(pointId) + "/entries?address=" + encodeURIComponent(folder.path);
    const body = await getJson(url);
    const children = body.children.slice();
    children.sort((a, b) =>
      (a.kind !== "dir") - (b.kind !== "dir") || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return children.map((c) => ({
      path: c.address,
      name: entryName(c),
      kind: "image-" + c.kind,
      size: c.size,
      folder: false,
    }));
  }

  window.tapirRestoreTree.register("disk", volumes);
  window.tapirRestoreTree.register("image-volume", entries);
  window.tapirRestoreTree.register("image-dir", entries);
})();
