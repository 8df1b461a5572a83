// Reelforge's small amount of page glue. No polling: live changes arrive over the one
// EventSource that htmx-ext-sse holds open for the page.
(function () {
  "use strict";

  // CSRF: every htmx request carries the token from the meta tag.
  document.addEventListener("htmx:configRequest", function (e) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) e.detail.headers["x-csrftoken"] = meta.content;
  });

  // Inserted fragments are upserts: if an element with the fragment's id is already on the
  // page (the form's answer and the stream both carry a new job), replace it in place.
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var tpl = document.createElement("template");
    tpl.innerHTML = (e.detail.data || "").trim();
    var node = tpl.content.firstElementChild;
    if (!node || !node.id) return;
    var existing = document.getElementById(node.id);
    if (existing && existing !== e.target) {
      e.preventDefault();
      existing.replaceWith(node);
      htmx.process(node);
    }
    var empty = e.target.querySelector(":scope > .empty-state");
    if (empty) empty.remove();
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
