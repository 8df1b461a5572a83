// Reelforge's small amount of page glue. No polling: live changes arrive over the one
// EventSource that htmx-ext-sse holds open for the page.
(function () {
  "use strict";

  // A refused form post: a 200 whose X-Refused-Status holds what a JSON client gets (a 4xx
  // would be logged as a console error for every typo; see app/web/api.py refused_form).
  function refused(xhr) { return !!(xhr && xhr.getResponseHeader("X-Refused-Status")); }

  // CSRF: every htmx request carries the token from the meta tag.
  document.addEventListener("htmx:configRequest", function (e) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) e.detail.headers["x-csrftoken"] = meta.content;
  });

  // Idempotency-Key on every job submission (Generate, Retry on a card): a fresh key per
  // press, kept on the element until an answer arrives. A press that got no answer (network
  // error, timeout) leaves it, so pressing again with the same inputs resends the same key:
  // if the first request did reach the server, its job is answered again, not made twice.
  function newKey() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);  // unlike randomUUID, also on plain-http hosts
    return Array.prototype.map.call(bytes, function (b) {
      return (b + 256).toString(16).slice(1);
    }).join("");
  }
  document.addEventListener("htmx:configRequest", function (e) {
    if (e.detail.path !== "/api/templates/video" || e.detail.verb !== "post") return;
    var elt = e.detail.elt;
    var inputs = new URLSearchParams(e.detail.formData).toString();
    if (!elt._idempotency || elt._idempotency.inputs !== inputs) {
      elt._idempotency = { key: newKey(), inputs: inputs };
    }
    e.detail.headers["Idempotency-Key"] = elt._idempotency.key;
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    var elt = (e.detail.requestConfig && e.detail.requestConfig.elt) || e.detail.elt;
    if (elt && elt._idempotency && e.detail.xhr && e.detail.xhr.status > 0) {
      elt._idempotency = null;  // answered: the next press is a new submission
    }
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
    if (existing && Number(existing.dataset.updated) > Number(node.dataset.updated)) {
      return;  // the page already shows a newer state (the stream can beat a form's answer)
    }
    if (existing) {
      if (existing.matches(".batch-card")) keepBatchRows(existing, node);
      existing.replaceWith(node);
    } else if (!container || (container.dataset.only && !node.matches(container.dataset.only))) {
      return;  // a list of one kind (the Batches tab, the Active jobs) takes only that kind
    } else if (container.id === "toasts") {
      placeToast(container, node);
    } else if (node.matches(".job-card")) {
      fileCard(container, node);
    } else {
      container.insertAdjacentElement(position || "afterbegin", node);
    }
    if (container) {
      var empty = container.querySelector(":scope > .empty-state");
      if (empty && container.querySelector(":scope > :not(.empty-state)")) empty.remove();
    }
    if (node.matches(".toast")) trimToasts(node.parentElement);
    if (node.isConnected) htmx.process(node);
  }

  // Job cards are always newest first, in every list and however late a card arrives (a
  // job that ended while the person was away is older than the ones made since): a new
  // card goes before the first one made at or before it (data-created, epoch seconds, to
  // the millisecond where app/web/render.py precise_created wrote it). A
  // list with data-limit ("Recent videos") keeps only that many, the newest.
  function fileCard(list, node) {
    var created = Number(node.dataset.created);
    var cards = list.querySelectorAll(":scope > .job-card");
    var next = [].find.call(cards, function (c) { return Number(c.dataset.created) <= created; });
    if (next) next.before(node);
    else if (cards.length) cards[cards.length - 1].after(node);
    else list.prepend(node);
    var limit = Number(list.dataset.limit);
    if (!limit) return;
    list.querySelectorAll(":scope > .job-card").forEach(function (c, i) {
      if (i >= limit) c.remove();
    });
  }

  // A batch card is sent again after every change of one of its rows, without the rows'
  // cards (each updates itself): the new card keeps the rows already loaded and stays open.
  function keepBatchRows(old, fresh) {
    var open = old.querySelector("details.batch-details");
    var rows = old.querySelector(".batch-rows");
    var slot = fresh.querySelector(".batch-rows");
    if (!open || !open.open || !rows || !slot) return;
    slot.replaceWith(rows);  // loaded, or loading: its answer lands in it all the same
    fresh.querySelector("details.batch-details").open = true;
  }

  // Notices are one stack, newest on top, at most MAX_TOASTS shown (static/app.css places
  // the stack where it covers neither the generate form nor the job cards). The one notice
  // about work in progress (#toast-progress, hidden while nothing runs) keeps the first
  // place and is never dropped; the other toasts go under it, newest first, and the oldest
  // drop off.
  var MAX_TOASTS = 3;
  function placeToast(box, node) {
    var progress = box.querySelector(":scope > #toast-progress");
    if (progress && node.id !== "toast-progress") progress.after(node);
    else box.prepend(node);
    trimToasts(box);
  }
  function trimToasts(box) {
    if (!box || box.id !== "toasts") return;
    var shown = [].filter.call(box.children, function (t) { return !t.hidden; });
    for (var i = shown.length - 1; i >= 0 && shown.length > MAX_TOASTS; i--) {
      if (shown[i].id !== "toast-progress") shown.splice(i, 1)[0].remove();
    }
  }

  var INSERTS = { jobs: "afterbegin", toasts: "afterbegin", "toast-progress": "afterbegin",
                  library: "afterbegin" };
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    var position = INSERTS[e.detail.type];
    if (!position) {
      // In-place events swap their own element (outerHTML), but never over a newer state:
      // another process's change can arrive after this one's newer one.
      var m = /data-updated="(\d+)"/.exec(e.detail.data || "");
      var shown = e.target && e.target.dataset && e.target.dataset.updated;
      if (m && shown && Number(shown) > Number(m[1])) e.preventDefault();
      return;
    }
    e.preventDefault();
    if (e.detail.type === "library") insertTile(e.detail.data, e.target);
    else upsert(e.detail.data, e.target, position);
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

  // Generate shows the work-in-progress notice the moment it is pressed, as a stand-in
  // (with the notice's id and version) until the answer or the stream brings the real one.
  // When the notice is already showing running jobs, it stays as it is until then.
  function submitsJob(elt) {
    return elt && elt.getAttribute && elt.getAttribute("hx-post") === "/api/templates/video";
  }
  document.addEventListener("htmx:beforeRequest", function (e) {
    var box = document.getElementById("toasts");
    var shown = document.getElementById("toast-progress");
    if (!submitsJob(e.detail.elt) || !box || (shown && !shown.hidden)) return;
    var t = document.createElement("div");
    t.id = "toast-progress";
    t.className = "toast toast-info toast-progress";
    t.setAttribute("role", "status");
    t.setAttribute("data-sending", "");
    t.dataset.updated = shown ? shown.dataset.updated : "0";
    t.innerHTML = '<span class="spinner" aria-hidden="true"></span><div class="toast-body">' +
      '<strong>Generating video…</strong><span class="toast-detail">Sending your request…</span></div>';
    if (shown) shown.replaceWith(t);
    else placeToast(box, t);
    trimToasts(box);
    e.detail.elt._sendingToast = t;
  });

  // Controls outside the generate form (Retry on a job card, on any page) swap nothing
  // themselves: their answer's parts go where they fit. The generate form is replaced
  // where the page has one, and the new card and toast are upserted (the credit balance
  // is an out-of-band swap, which htmx does itself).
  document.addEventListener("htmx:afterRequest", function (e) {
    var elt = e.detail.elt;
    var xhr = e.detail.xhr;
    if (!elt || !elt.hasAttribute || !elt.hasAttribute("data-apply-answer") || !xhr) return;
    if ((xhr.getResponseHeader("content-type") || "").indexOf("text/html") !== 0) return;
    var tpl = document.createElement("template");
    tpl.innerHTML = xhr.responseText;
    var form = tpl.content.querySelector("#generate");
    var current = document.getElementById("generate");
    if (form && current) {
      current.replaceWith(form);
      htmx.process(form);
      syncSelection();
    } else if (form && (xhr.status >= 400 || refused(xhr))) {
      var problem = form.querySelector(".field-error");
      if (problem) showToast("error", problem.textContent);
    }
    tpl.content.querySelectorAll("template[data-upsert]").forEach(function (t) {
      upsert(t.innerHTML, document.querySelector(t.dataset.upsert), t.dataset.position);
    });
  });

  document.addEventListener("htmx:afterRequest", function (e) {
    // The form may have been replaced by its answer: htmx then fires this event on a
    // parent, and requestConfig still names the element that made the request.
    var elt = (e.detail.requestConfig && e.detail.requestConfig.elt) || e.detail.elt;
    var t = elt && elt._sendingToast;
    if (!t) return;
    elt._sendingToast = null;
    if (t.isConnected && t.hasAttribute("data-sending")) {
      // Nothing replaced the stand-in (a refusal, no answer): back to the hidden stub.
      t.hidden = true;
      t.className = "toast-progress";  // a stub, not a toast
      t.removeAttribute("data-sending");
      t.removeAttribute("role");
      t.replaceChildren();
    }
  });

  // Form answers with a 4xx carry HTML to show (field errors, the form as typed); JSON
  // errors become a toast. A refused form post (a 200 with X-Refused-Status, see
  // app/web/api.py refused_form) is handled the same way.
  document.addEventListener("htmx:beforeSwap", function (e) {
    var xhr = e.detail.xhr;
    if (xhr.status < 400 && !refused(xhr)) return;
    var type = xhr.getResponseHeader("content-type") || "";
    if (type.indexOf("text/html") === 0) {
      e.detail.shouldSwap = true;
      e.detail.isError = false;
      return;
    }
    e.detail.shouldSwap = false;
    var message = "Something went wrong. Please try again.";
    try { message = JSON.parse(xhr.responseText).message || message; } catch (_) { /* keep */ }
    // An upload's error is shown once, under the drop zone where the file was dropped (a
    // role="alert" paragraph, so it is announced too); any other error becomes a toast.
    var err = document.getElementById("upload-error");
    var upload = e.detail.requestConfig && e.detail.requestConfig.elt.closest("#upload");
    if (err && upload) {
      err.textContent = message;
      err.hidden = false;
      upload.reset();  // so that choosing the same file again is a change, and is sent
    } else {
      showToast("error", message);
    }
  });

  document.addEventListener("htmx:afterRequest", function (e) {
    if (e.detail.successful && !refused(e.detail.xhr) && e.detail.elt.closest &&
        e.detail.elt.closest("#upload")) {
      var err = document.getElementById("upload-error");
      if (err) err.hidden = true;
      var empty = document.getElementById("library-empty");
      if (empty) empty.remove();
      e.detail.elt.closest("#upload").reset();
      // The new image becomes the selected one in the workspace panel.
      var tile = document.querySelector("#library-grid > .tile[data-kind=image]");
      if (tile && document.getElementById("workspace-panel")) {
        var form = document.getElementById("generate");
        var values = form ? htmx.values(form) : {};
        delete values.startKey;
        values.image = tile.dataset.key;
        htmx.ajax("GET", "/fragments/panel", { target: "#workspace-panel", swap: "outerHTML",
                                               values: values });
      }
    }
  });

  // What is chosen in the generate form is shown everywhere: the start image is ringed in
  // the library grid and shown large in the workspace panel, and the template's card is
  // highlighted in the gallery.
  function syncSelection() {
    var image = document.getElementById("gen-image");
    var key = image ? image.value : "";
    document.querySelectorAll("#library-grid > .tile").forEach(function (tile) {
      var on = !!key && tile.dataset.key === key;
      tile.classList.toggle("selected", on);
      var link = tile.querySelector(":scope > a");
      if (link) link.setAttribute("aria-current", on ? "true" : "false");
    });
    var template = document.getElementById("gen-template");
    var slug = template ? template.value : "";
    document.querySelectorAll(".template-card").forEach(function (card) {
      var on = card.id === "template-" + slug;
      card.classList.toggle("selected", on);
      var link = card.querySelector(".template-link");
      if (link) link.setAttribute("aria-current", on ? "true" : "false");
    });
  }
  document.addEventListener("DOMContentLoaded", syncSelection);
  document.addEventListener("htmx:load", syncSelection);

  // On a narrow screen the form sits under the gallery: picking a template brings it up.
  document.addEventListener("htmx:afterSettle", function (e) {
    var elt = e.detail.requestConfig && e.detail.requestConfig.elt;
    var form = document.getElementById("generate");
    if (elt && elt.closest && elt.closest(".template-card") && form && window.innerWidth < 1100) {
      form.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  });

  // The generate form's "You have N available" follows the header's badge (balance less
  // what running jobs hold), which the stream keeps current (and says when the price is
  // more than that).
  function syncAvailable() {
    var badge = document.getElementById("credits");
    if (!badge || badge.dataset.creditsAvailable === undefined) return;
    var available = Number(badge.dataset.creditsAvailable);
    document.querySelectorAll("[data-available]").forEach(function (el) {
      el.textContent = String(available);
    });
    document.querySelectorAll("[data-price]").forEach(function (footer) {
      var short = footer.parentElement.querySelector("[data-short]");
      if (short) short.hidden = Number(footer.dataset.price) <= available;
    });
  }
  document.addEventListener("DOMContentLoaded", syncAvailable);
  document.addEventListener("htmx:load", syncAvailable);

  // Times come from the server in UTC (it does not know the reader's time zone), marked
  // <time datetime="…" data-local>; they are shown in the reader's own zone, also in
  // fragments that arrive later (job cards from the stream, Load more).
  var LOCAL_TIME = new Intl.DateTimeFormat(undefined, {
    month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  // A video tile's labels (what a screen reader names its buttons, the player's title)
  // carry its time as text, "2 Dec 2026, 21:59 UTC" (data-local-when): the same moment
  // (its caption's <time>) in the reader's zone takes its place there.
  var LOCAL_DATE_TIME = new Intl.DateTimeFormat(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  function within(root, selector) {
    var found = [].slice.call(root.querySelectorAll(selector));
    if (root.matches && root.matches(selector)) found.push(root);
    return found;
  }
  function localTimes(root) {
    if (!root.querySelectorAll) return;
    within(root, "time[data-local]").forEach(function (t) {
      var when = new Date(t.getAttribute("datetime"));
      if (!isNaN(when)) t.textContent = LOCAL_TIME.format(when);
    });
    within(root, "[data-local-when]").forEach(function (el) {
      var utc = el.getAttribute("data-local-when"), time = el.querySelector("time[datetime]");
      var when = new Date(time ? time.getAttribute("datetime") : NaN);
      el.removeAttribute("data-local-when");  // once: the observer may see it again
      if (isNaN(when)) return;
      var local = LOCAL_DATE_TIME.format(when);
      within(el, "[aria-label], [data-title]").forEach(function (n) {
        ["aria-label", "data-title"].forEach(function (name) {
          var text = n.getAttribute(name);
          if (text) n.setAttribute(name, text.replace(utc, local));
        });
      });
    });
  }
  localTimes(document);
  new MutationObserver(function (records) {
    records.forEach(function (r) { r.addedNodes.forEach(localTimes); });
  }).observe(document.documentElement, { childList: true, subtree: true });

  // Choosing another start image in the form shows it in the panel at once (no request,
  // so nothing typed is lost).
  function showImage(select) {
    var option = select.options[select.selectedIndex];
    var panel = document.getElementById("workspace-panel");
    var thumb = select.closest("form") && select.closest("form").querySelector(".start-thumb");
    if (thumb && option && option.dataset.url) thumb.src = option.dataset.url;
    if (panel && option) {
      var img = panel.querySelector(".preview-large img");
      if (img && option.dataset.url) img.src = option.dataset.url;
      panel.dataset.imageKey = option.value;
      if (location.pathname === "/") {
        history.replaceState(null, "", "/?image=" + encodeURIComponent(option.value));
      }
    }
    syncSelection();
  }
  document.addEventListener("change", function (e) {
    if (e.target.id === "gen-image" && e.target.tagName === "SELECT") showImage(e.target);
  });

  // A click on a library image picks it in the form when the form offers it; otherwise
  // the tile's own htmx request fetches a fresh panel.
  document.addEventListener("click", function (e) {
    var link = e.target.closest && e.target.closest("#library-grid > .tile > a");
    var select = document.getElementById("gen-image");
    if (!link || !select || select.tagName !== "SELECT" || e.ctrlKey || e.metaKey ||
        e.shiftKey || e.button !== 0) return;
    var key = link.closest(".tile").dataset.key;
    var known = [].some.call(select.options, function (o) { return o.value === key; });
    if (!known) return;
    e.preventDefault();
    e.stopPropagation();
    select.value = key;
    showImage(select);
    var panel = document.getElementById("workspace-panel");
    if (panel && panel.scrollIntoView && window.innerWidth < 960) {
      panel.scrollIntoView({ behavior: "smooth", block: "start" });
    }
  }, true);

  // A request that never reached the server says so (the form keeps what was typed).
  document.addEventListener("htmx:sendError", function () {
    showToast("error", "Couldn't reach Reelforge. Check your connection and try again.");
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
    close.textContent = "×";  // dismissed by the delegated click handler below
    t.appendChild(body);
    t.appendChild(close);
    placeToast(box, t);
  }

  // The CSP (app/web/security_headers.py) runs no inline handlers and applies no style="…"
  // attributes, so what the templates would have done inline is done here: Dismiss buttons,
  // confirmations of plain forms (data-confirm), progress widths (aria-valuenow) and the
  // delay before a toast says a job is slow (data-slow-in, seconds). Styles set through
  // the CSSOM are allowed.
  document.addEventListener("click", function (e) {
    var close = e.target.closest && e.target.closest(".toast-close");
    if (close && close.parentElement) close.parentElement.remove();
  });
  document.addEventListener("submit", function (e) {
    var message = e.target.dataset && e.target.dataset.confirm;
    if (message && !window.confirm(message)) e.preventDefault();
  });
  function applyStyles(root) {
    if (!root.querySelectorAll) return;
    var bars = [].slice.call(root.querySelectorAll(".progress[aria-valuenow] > .bar"));
    if (root.matches && root.matches(".progress[aria-valuenow] > .bar")) bars.push(root);
    bars.forEach(function (bar) {
      bar.style.width = Number(bar.parentElement.getAttribute("aria-valuenow")) + "%";
    });
    var segs = [].slice.call(root.querySelectorAll(".batch-seg[data-share]"));
    if (root.matches && root.matches(".batch-seg[data-share]")) segs.push(root);
    segs.forEach(function (seg) { seg.style.width = Number(seg.dataset.share) + "%"; });
    var slow = [].slice.call(root.querySelectorAll(".toast-slow[data-slow-in]"));
    if (root.matches && root.matches(".toast-slow[data-slow-in]")) slow.push(root);
    slow.forEach(function (el) { el.style.animationDelay = Number(el.dataset.slowIn) + "s"; });
  }
  applyStyles(document);
  // Every way a fragment arrives (htmx swaps, the stream, upsert()) adds nodes; the
  // observer runs before the next paint, so nothing shows unstyled.
  new MutationObserver(function (records) {
    records.forEach(function (r) { r.addedNodes.forEach(applyStyles); });
  }).observe(document.documentElement, { childList: true, subtree: true });

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

  // -- Library (workspace) ---------------------------------------------------------------
  // The grid holds images first, then videos, each newest first, so new videos never push
  // the start images down: a pushed video tile goes before the first video.
  function insertTile(html, grid) {
    var firstVideo = grid.querySelector(":scope > .tile[data-kind=video]");
    if (firstVideo) upsert(html, firstVideo, "beforebegin");
    else upsert(html, grid, "beforeend");
  }

  // Deleting an item, here (its Delete button) or in another tab (the stream's
  // `library-removed` event, whose data is the key): its tile goes, and when it was the
  // start image the next one (else the one before) becomes the start image in the form,
  // the panel's preview and the grid's ring; with none left the panel shows its empty
  // state. Focus moves to a neighbouring tile rather than being lost.
  function forgetItem(key) {
    var grid = document.getElementById("library-grid");
    var tile = grid && [].find.call(grid.children, function (t) { return t.dataset.key === key; });
    if (tile) {
      if (tile.contains(document.activeElement)) {
        var near = tile.nextElementSibling || tile.previousElementSibling;
        var target = near && near.querySelector(".tile-main");
        if (target) target.focus();
        else if ((target = document.getElementById("upload-file"))) target.focus();
      }
      tile.remove();
    }
    // A batch row that named it goes back to the batch's own start image.
    document.querySelectorAll("#generate select[data-start]").forEach(function (s) {
      [].forEach.call(s.options, function (o) { if (o.value === key) o.remove(); });
    });
    var select = document.getElementById("gen-image");
    if (!select || select.tagName !== "SELECT") return;
    var options = [].slice.call(select.options);
    var gone = options.filter(function (o) { return o.value === key; })[0];
    if (!gone) return;
    var chosen = select.value === key;
    var next = gone.nextElementSibling || gone.previousElementSibling;
    gone.remove();
    if (!chosen) return;
    if (next) {
      select.value = next.value;
      showImage(select);
    } else if (document.getElementById("workspace-panel")) {
      var values = htmx.values(document.getElementById("generate"));
      delete values.startKey;  // none left: the panel's empty state
      htmx.ajax("GET", "/fragments/panel", { target: "#workspace-panel", swap: "outerHTML",
                                             values: values });
    }
  }
  document.addEventListener("htmx:beforeSwap", function (e) {
    var config = e.detail.requestConfig;
    if (!config || config.verb !== "delete" || e.detail.xhr.status >= 300) return;
    var tile = config.elt.closest && config.elt.closest("#library-grid > .tile");
    if (!tile) return;
    e.detail.shouldSwap = false;  // forgetItem removes the tile, and moves what needs to
    forgetItem(tile.dataset.key);
  });
  document.addEventListener("htmx:sseBeforeMessage", function (e) {
    if (e.detail.type !== "library-removed") return;
    e.preventDefault();
    forgetItem((e.detail.data || "").trim());
  });

  // Library filters: All / Images / Videos, shown by the grid's data-show (app.css), with
  // counts, an empty state per filter, and the choice remembered in this browser.
  var FILTER_KEY = "reelforge.libraryFilter";
  function setFilter(value, remember) {
    var grid = document.getElementById("library-grid");
    if (!grid) return;
    grid.dataset.show = value;
    document.querySelectorAll(".library-filter [data-filter]").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.filter === value));
    });
    if (remember) {
      try { localStorage.setItem(FILTER_KEY, value); } catch (_) { /* private mode */ }
    }
    libraryChanged();
  }
  function libraryChanged() {
    var grid = document.getElementById("library-grid");
    if (!grid) return;
    var counts = { all: 0, image: 0, video: 0 };
    grid.querySelectorAll(":scope > .tile").forEach(function (t) {
      counts.all += 1;
      counts[t.dataset.kind] = (counts[t.dataset.kind] || 0) + 1;
    });
    document.querySelectorAll(".library-filter [data-count]").forEach(function (c) {
      c.textContent = String(counts[c.dataset.count] || 0);
    });
    if (!counts.all && !grid.querySelector(":scope > .empty-state")) {
      var empty = document.createElement("p");
      empty.className = "empty-state";
      empty.id = "library-empty";
      empty.textContent = "Your library is empty. Upload an image to get started.";
      grid.appendChild(empty);
    }
    document.querySelectorAll(".library-filter").forEach(function (f) { f.hidden = !counts.all; });
    var show = grid.dataset.show || "all";
    document.querySelectorAll(".library-filter-empty").forEach(function (p) {
      p.hidden = !(counts.all && p.dataset.emptyFor === show && !counts[show]);
    });
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest(".library-filter [data-filter]");
    if (button) setFilter(button.dataset.filter, true);
  });
  document.addEventListener("htmx:afterRequest", function (e) {
    // A new upload must be seen: "Videos" would hide it.
    var grid = document.getElementById("library-grid");
    if (e.detail.successful && e.detail.elt.closest && e.detail.elt.closest("#upload") &&
        grid && grid.dataset.show === "video") setFilter("all", true);
  });
  document.addEventListener("DOMContentLoaded", function () {
    var grid = document.getElementById("library-grid");
    if (!grid) return;
    var saved = null;
    try { saved = localStorage.getItem(FILTER_KEY); } catch (_) { /* private mode */ }
    setFilter(["all", "image", "video"].indexOf(saved) >= 0 ? saved : "all", false);
    new MutationObserver(libraryChanged).observe(grid, { childList: true });
  });

  // Library tiles: one Tab stop each (the tile's main control: use as start image, or
  // play); its Download and Delete buttons have tabindex -1 and are reached with the arrow
  // keys (Home/End too) from within the tile. The actions show while the tile has focus.
  document.addEventListener("keydown", function (e) {
    var step = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 }[e.key];
    if (!step && e.key !== "Home" && e.key !== "End") return;
    var tile = e.target.closest && e.target.closest("#library-grid > .tile");
    if (!tile) return;
    var stops = [].slice.call(tile.querySelectorAll(".tile-main, .tile-actions > .tile-action"));
    var at = stops.indexOf(e.target);
    if (at < 0) return;
    e.preventDefault();
    var to = e.key === "Home" ? 0 : e.key === "End" ? stops.length - 1
      : (at + step + stops.length) % stops.length;
    stops[to].focus();
  });

  // Player: one shared lightbox (<dialog id="player"> in base.html) instead of a <video
  // controls> squeezed into every tile or card. A click on anything with data-play="<url>"
  // (optional data-title, data-poster) opens it; the dialog is modal, so Escape, the close
  // button or a click on the backdrop closes it, the video stops and focus goes back to
  // what opened it.
  var playerOpener = null;
  function openPlayer(trigger) {
    var dialog = document.getElementById("player");
    if (!dialog || !dialog.showModal) { window.location.href = trigger.dataset.play; return; }
    var video = dialog.querySelector("video");
    video.src = trigger.dataset.play;
    if (trigger.dataset.poster) video.poster = trigger.dataset.poster;
    else video.removeAttribute("poster");
    dialog.querySelector(".player-title").textContent = trigger.dataset.title || "Video";
    playerOpener = trigger;
    dialog.showModal();
    var playing = video.play();
    if (playing && playing.catch) playing.catch(function () { /* the controls remain */ });
  }
  document.addEventListener("click", function (e) {
    if (!e.target.closest) return;
    var trigger = e.target.closest("[data-play]");
    if (trigger && !e.ctrlKey && !e.metaKey && !e.shiftKey && e.button === 0) {
      e.preventDefault();
      openPlayer(trigger);
    } else if (e.target.closest("[data-close-player]") || e.target.id === "player") {
      document.getElementById("player").close();  // the button, or the backdrop
    }
  });
  // "close" does not bubble: listen in the capture phase.
  document.addEventListener("close", function (e) {
    if (e.target.id !== "player") return;
    var video = e.target.querySelector("video");
    video.pause();
    video.removeAttribute("src");
    video.load();  // release the stream
    if (playerOpener && playerOpener.isConnected) playerOpener.focus();
    playerOpener = null;
  }, true);

  // -- Batch rows (the generate form's "Many variants" mode) ----------------------------
  // The table is edited here, without requests: rows are added, duplicated and removed,
  // and a spreadsheet pasted into a cell fills the rows from there down. Each change
  // renumbers the fields (rows[i].…, as app/web/batch_form.py reads them) and the labels,
  // and recounts the total price. The server still checks every row and the row limit.

  // Text copied from a spreadsheet (TSV) or a CSV file, as rows of cells; null for a plain
  // value (one line without tabs: a sentence with commas is not a table). Quoted fields may
  // hold the separator, doubled quotes and line breaks; CRLF and a final newline are fine.
  function parseTable(text) {
    text = String(text || "").replace(/\r\n?/g, "\n").replace(/\n$/, "");
    if (text.indexOf("\n") < 0 && text.indexOf("\t") < 0) return null;
    var sep = text.indexOf("\t") >= 0 ? "\t" : ",";
    var rows = [], row = [], cell = "", quoted = false;
    for (var i = 0; i < text.length; i++) {
      var c = text[i];
      if (quoted) {
        if (c !== '"') cell += c;
        else if (text[i + 1] === '"') { cell += '"'; i++; }
        else quoted = false;
      } else if (c === '"' && cell === "") {
        quoted = true;  // only a quote that opens a cell quotes it (5" stays as typed)
      } else if (c === sep || c === "\n") {
        row.push(cell.trim());
        cell = "";
        if (c === "\n") { rows.push(row); row = []; }
      } else {
        cell += c;
      }
    }
    row.push(cell.trim());
    rows.push(row);
    return rows;
  }

  function batchRows(table) { return [].slice.call(table.tBodies[0].rows); }
  function cellsOf(tr) { return [].slice.call(tr.querySelectorAll("input[data-var]")); }

  // Counted as the server counts: a row with a value or its own start image is a video.
  function isBlank(tr) {
    var select = tr.querySelector("select[data-start]");
    return !(select && select.value) && cellsOf(tr).every(function (i) { return !i.value.trim(); });
  }

  function renumberRows(table) {
    batchRows(table).forEach(function (tr, i) {
      var n = i + 1;
      tr.querySelector(".batch-num").textContent = String(n);
      cellsOf(tr).forEach(function (input) {
        input.name = "rows[" + i + "].variables." + input.dataset.var;
        input.setAttribute("aria-label", input.dataset.label + ", row " + n);
      });
      var select = tr.querySelector("select[data-start]");
      select.name = "rows[" + i + "].startKey";
      select.setAttribute("aria-label", "Start image, row " + n);
      tr.querySelector("[data-row-action=duplicate]").setAttribute("aria-label", "Duplicate row " + n);
      tr.querySelector("[data-row-action=remove]").setAttribute("aria-label", "Remove row " + n);
    });
  }

  // The total ("5 videos × 80 credits = 400 credits") and the button's count; the footer's
  // data-price becomes the total, so syncAvailable says when it is more than is available.
  // Add row and Duplicate stop at the limit; the only row left cannot be removed.
  function updateBatch(table) {
    var form = table.closest("form");
    var footer = form && form.querySelector(".generate-footer[data-unit-price]");
    if (!footer) return;
    var rows = batchRows(table);
    var n = rows.filter(function (tr) { return !isBlank(tr); }).length;
    var unit = Number(footer.dataset.unitPrice);
    var videos = n + (n === 1 ? " video" : " videos");
    footer.dataset.price = String(n * unit);
    form.querySelector("[data-batch-total]").textContent = n ?
      videos + " × " + unit + " credits = " + n * unit + " credits" : unit + " credits per video";
    form.querySelector("[data-batch-submit]").textContent = n ? "Generate " + videos : "Generate videos";
    var full = rows.length >= Number(table.dataset.maxRows);
    form.querySelectorAll("[data-row-action=add], [data-row-action=duplicate]").forEach(function (b) {
      b.disabled = full;
    });
    rows.forEach(function (tr) {
      tr.querySelector("[data-row-action=remove]").disabled = rows.length === 1;
    });
    syncAvailable();
  }

  // A new row after `after`: a copy of it (Duplicate) or an empty one (Add row, a paste).
  function insertRow(table, after, copy) {
    var tr = after.cloneNode(true);
    tr.classList.remove("has-error");
    tr.querySelectorAll("[aria-invalid]").forEach(function (el) {
      el.removeAttribute("aria-invalid");
      el.removeAttribute("aria-describedby");
    });
    var from = after.querySelectorAll("input, select");
    tr.querySelectorAll("input, select").forEach(function (el, k) {
      el.value = copy ? from[k].value : "";  // a clone keeps an input's value, not a select's
    });
    after.after(tr);
    return tr;
  }

  function note(table, text) {
    var el = table.closest("form").querySelector("[data-batch-note]");
    if (el) el.textContent = text;
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest && e.target.closest("#generate [data-row-action]");
    if (!button || button.disabled) return;
    var table = document.getElementById("batch-rows");
    var rows = batchRows(table);
    var tr = button.closest("tr");
    var action = button.dataset.rowAction;
    var focus;
    if (action === "add") {
      focus = cellsOf(insertRow(table, rows[rows.length - 1], false))[0];
    } else if (action === "duplicate") {
      focus = insertRow(table, tr, true).querySelector("[data-row-action=duplicate]");
    } else if (action === "remove" && rows.length > 1) {
      var next = tr.nextElementSibling || tr.previousElementSibling;
      tr.remove();
      focus = next.querySelector("[data-row-action=remove]");
    }
    renumberRows(table);
    updateBatch(table);
    if (focus && focus.disabled) focus = cellsOf(focus.closest("tr"))[0];  // at a limit
    if (focus) focus.focus();  // focus stays in the table, on the row acted on
  });

  // A paste of several cells fills the table from the cell pasted into: down the rows
  // (added as needed, up to the limit) and rightwards along the columns, or by the first
  // line's names when it is a header (the columns' labels or the variables' names, any
  // case). The start image column takes an image's name from the library.
  function columnsOf(tr) {
    var cells = {};
    cellsOf(tr).forEach(function (i) { cells[i.dataset.var] = i; });
    cells["@start"] = tr.querySelector("select[data-start]");
    return cells;
  }
  function setCell(el, value) {  // false for an image name the library does not have
    if (el.tagName === "SELECT") {
      var wanted = value.toLowerCase();
      var option = [].filter.call(el.options, function (o) {
        return o.value.toLowerCase() === wanted || o.text.toLowerCase() === wanted;
      })[0];
      el.value = option ? option.value : "";  // none: "Same as above"
      if (!option && value) return false;
    } else {
      el.value = value;
    }
    el.removeAttribute("aria-invalid");
    return true;
  }
  document.addEventListener("paste", function (e) {
    var input = e.target.closest && e.target.closest("#batch-rows input[data-var]");
    var data = input && parseTable(e.clipboardData && e.clipboardData.getData("text/plain"));
    if (!data) return;  // a plain value: the browser pastes it into the cell
    e.preventDefault();
    var table = input.closest("table");
    var start = input.closest("tr");
    var names = Object.keys(columnsOf(start));  // the table's order, start image last
    var known = { "start image": "@start", "startkey": "@start" };
    cellsOf(start).forEach(function (i) {
      known[i.dataset.var.toLowerCase()] = known[i.dataset.label.toLowerCase()] = i.dataset.var;
    });
    var first = data[0].filter(function (c) { return c; });
    var header = first.length && first.every(function (c) { return known[c.toLowerCase()]; });
    var columns = header ? data[0].map(function (c) { return known[c.toLowerCase()]; }) :
      names.slice(names.indexOf(input.dataset.var));
    var lines = header ? data.slice(1) : data;
    var max = Number(table.dataset.maxRows);
    var tr = start, filled = 0, unknown = 0;
    for (var k = 0; k < lines.length; k++) {
      if (k > 0) {
        tr = tr.nextElementSibling;
        if (!tr) {
          if (batchRows(table).length >= max) break;
          tr = insertRow(table, batchRows(table).pop(), false);
        }
      }
      var cells = columnsOf(tr);
      lines[k].forEach(function (value, c) {
        var cell = columns[c] && cells[columns[c]];
        if (cell && !setCell(cell, value)) unknown++;
      });
      filled++;
    }
    renumberRows(table);
    updateBatch(table);
    var left = lines.length - filled;
    note(table, (left ? "A batch has at most " + max + " rows: the last " + left +
      (left === 1 ? " pasted row was" : " pasted rows were") + " left out." :
      "Filled " + filled + (filled === 1 ? " row" : " rows") + " from the paste.") +
      (unknown ? " " + unknown + (unknown === 1 ? " start image is" : " start images are") +
       " not in your library: " + (unknown === 1 ? "its row uses" : "those rows use") +
       " the one above." : ""));
  });

  document.addEventListener("input", function (e) {
    var table = e.target.closest && e.target.closest("#batch-rows");
    if (!table) return;
    e.target.removeAttribute("aria-invalid");  // edited: no longer the refused value
    updateBatch(table);
  });
  document.addEventListener("change", function (e) {
    var table = e.target.matches && e.target.matches("select[data-start]") &&
      e.target.closest("#batch-rows");
    if (table) updateBatch(table);
  });
  function initBatch(e) {
    var table = document.getElementById("batch-rows");
    if (!table) return;
    updateBatch(table);
    // A refused batch comes back with the cell in error marked: go there, to fix it.
    var bad = e.type === "htmx:load" && e.detail.elt.id === "generate" &&
      table.querySelector("[aria-invalid=true]");
    if (bad) bad.focus();
  }
  document.addEventListener("DOMContentLoaded", initBatch);
  document.addEventListener("htmx:load", initBatch);

  // Re-renders of the form asked for from outside it (a template card, a library tile)
  // keep its mode and its rows: the form's own controls send them already.
  document.addEventListener("htmx:configRequest", function (e) {
    var path = e.detail.path.split("?")[0];
    var form = document.getElementById("generate");
    if (e.detail.verb !== "get" || (path !== "/fragments/generate" && path !== "/fragments/panel") ||
        !form || !form.classList.contains("generate-batch") || e.detail.formData.has("mode")) return;
    new FormData(form).forEach(function (value, key) {
      if (key === "mode" || key === "name" || key.indexOf("rows[") === 0) {
        e.detail.formData.append(key, value);
      }
    });
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
