// Reelforge's small amount of page glue. No polling: live changes arrive over the one
// EventSource that htmx-ext-sse holds open for the page.
(function () {
  "use strict";

  // CSRF: every htmx request carries the token from the meta tag.
  document.addEventListener("htmx:configRequest", function (e) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) e.detail.headers["x-csrftoken"] = meta.content;
  });

  // Fragments that add something (a new job card, a toast, a library tile) are upserts:
  // when an element with the fragment's id is already on the page, it is replaced in place,
  // so the form's answer and the stream, which both carry a new job, never make two.
  function upsert(html, container, position) {
    var tpl = document.createElement("template");
    tpl.innerHTML = (html || "").trim();
    var node = tpl.content.firstElementChild;
    if (!node) return;
    var existing = node.id && document.getElementById(node.id);
    if (existing) {
      existing.replaceWith(node);
    } else if (container) {
      container.insertAdjacentElement(position || "afterbegin", node);
      var empty = container.querySelector(":scope > .empty-state");
      if (empty) empty.remove();
    } else {
      return;
    }
    htmx.process(node);
  }

  var INSERTS = { jobs: "afterbegin", toasts: "beforeend", library: "afterbegin" };
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var position = INSERTS[e.detail.type];
    if (!position) return;  // in-place events swap their own element (outerHTML)
    e.preventDefault();
    upsert(e.detail.data, e.target, position);
  });

  // A form's answer may carry <template data-upsert="#job-list" data-position="…">.
  document.addEventListener("htmx:load", function (e) {
    var root = e.detail.elt;
    var found = root.matches && root.matches("template[data-upsert]") ? [root] : [];
    if (root.querySelectorAll) found = found.concat([].slice.call(root.querySelectorAll("template[data-upsert]")));
    found.forEach(function (t) {
      upsert(t.innerHTML, document.querySelector(t.dataset.upsert), t.dataset.position);
      t.remove();
    });
  });

  // Form answers with a 4xx carry HTML to show (field errors, the form as typed); JSON
  // errors become a toast.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var xhr = e.detail.xhr;
    if (xhr.status < 400) return;
    var type = xhr.getResponseHeader("content-type") || "";
    if (type.indexOf("text/html") === 0) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
      return;
    }
    e.detail.shouldSwap = false;
    var message = "Something went wrong. Please try again.";
    try { message = JSON.parse(xhr.responseText).message || message; } catch (_) { /* keep */ }
    showToast("error", message);
    if (e.detail.requestConfig && e.detail.requestConfig.elt.closest("#upload")) {
      var err = document.getElementById("upload-error");
      if (err) { err.textContent = message; err.hidden = false; }
    }
  });

  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.detail.successful && e.detail.elt.closest && e.detail.elt.closest("#upload")) {
      var err = document.getElementById("upload-error");
      if (err) err.hidden = true;
      var empty = document.getElementById("library-empty");
      if (empty) empty.remove();
      e.detail.elt.closest("#upload").reset();
      // The new image becomes the selected one in the workspace panel.
      var tile = document.querySelector("#library-grid > .tile[data-kind=image]");
      if (tile && document.getElementById("workspace-panel")) {
        htmx.ajax("GET", "/fragments/panel?image=" + encodeURIComponent(tile.dataset.key),
                  { target: "#workspace-panel", swap: "outerHTML" });
      }
    }
  });

  function showToast(kind, message) {
    var box = document.getElementById("toasts");
    if (!box) return;
    var t = document.createElement("div");
    t.className = "toast toast-" + kind + " fade";
    t.setAttribute("role", "status");
    var body = document.createElement("div");
    body.className = "toast-body";
    var strong = document.createElement("strong");
    strong.textContent = message;
    body.appendChild(strong);
    var close = document.createElement("button");
    close.className = "toast-close";
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.textContent = "×";
    close.onclick = function () { t.remove(); };
    t.appendChild(body);
    t.appendChild(close);
    box.appendChild(t);
  }

  // Faded toasts leave the DOM once their animation ends.
  document.addEventListener("animationend", function (e) {
    if (e.target.classList && e.target.classList.contains("toast") &&
        e.target.classList.contains("fade")) e.target.remove();
  });

  // Drag and drop onto the library's drop zone.
  document.addEventListener("dragover", function (e) {
    var zone = e.target.closest && e.target.closest(".dropzone");
    if (zone) { e.preventDefault(); zone.classList.add("dragover"); }
  });
  document.addEventListener("dragleave", function (e) {
    var zone = e.target.closest && e.target.closest(".dropzone");
    if (zone) zone.classList.remove("dragover");
  });
  document.addEventListener("drop", function (e) {
    var zone = e.target.closest && e.target.closest(".dropzone");
    if (!zone) return;
    e.preventDefault();
    zone.classList.remove("dragover");
    var input = zone.querySelector('input[type="file"]');
    if (input && e.dataTransfer.files.length) {
      input.files = e.dataTransfer.files;
      htmx.trigger(zone, "drop-file");
    }
  });

  // Elapsed time on running job cards ticks locally (a clock, not a request).
  setInterval(function () {
    var now = Date.now() / 1000;
    document.querySelectorAll(".elapsed[data-since]").forEach(function (el) {
      var s = Math.max(0, Math.floor(now - Number(el.dataset.since)));
      el.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    });
  }, 1000);
})();
