// cutover dashboard: live regions over Server-Sent Events, ages kept current, and actions
// sent with the bearer token after a confirmation. Hand-written, no dependencies.
"use strict";
(function () {
  var body = document.body;
  var TOKEN_KEY = "cutover-dashboard-token";

  // The token arrives once in the URL's fragment (never sent to a server); keep it for this
  // tab and take it out of the address bar and history.
  function takeTokenFromUrl() {
    var m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (m) {
      try { sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1])); } catch (e) { /* storage off */ }
      history.replaceState(null, "", location.pathname + location.search);
    }
  }
  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  function setToken(t) {
    try { if (t) { sessionStorage.setItem(TOKEN_KEY, t); } else { sessionStorage.removeItem(TOKEN_KEY); } } catch (e) { /* storage off */ }
  }

  // kubectl's compact durations, as the server writes them.
  function compact(s) {
    var m = Math.floor(s / 60), h = Math.floor(s / 3600), d = Math.floor(s / 86400);
    function pair(a, ua, b, ub) { return b === 0 ? a + ua : a + ua + b + ub; }
    if (s < 120) return s + "s";
    if (m < 10) return pair(m, "m", s % 60, "s");
    if (m < 180) return m + "m";
    if (h < 8) return pair(h, "h", m % 60, "m");
    if (h < 48) return h + "h";
    if (h < 192) return pair(d, "d", h % 24, "h");
    return d + "d";
  }
  function refreshTimes() {
    var now = Date.now();
    document.querySelectorAll("time[data-age]").forEach(function (t) {
      var at = Date.parse(t.getAttribute("datetime"));
      if (!isNaN(at)) t.textContent = compact(Math.max(0, Math.floor((now - at) / 1000)));
    });
    document.querySelectorAll("time[data-until]").forEach(function (t) {
      var at = Date.parse(t.getAttribute("datetime"));
      if (isNaN(at)) return;
      var left = Math.floor((at - now) / 1000);
      t.textContent = left > 0 ? "in " + compact(left) : "now";
    });
  }

  // Live regions: "inner ID\nHTML" replaces the content of #ID, "outer ID\nHTML" the element.
  var conn = document.getElementById("conn");
  function status(text, cls) {
    if (!conn) return;
    conn.textContent = text;
    conn.className = "conn " + (cls || "");
  }
  function apply(data) {
    var nl = data.indexOf("\n");
    var head = (nl < 0 ? data : data.slice(0, nl)).split(" ");
    var html = nl < 0 ? "" : data.slice(nl + 1);
    var el = document.getElementById(head[1]);
    if (!el) return;
    if (head[0] === "outer") { el.outerHTML = html; } else { el.innerHTML = html; }
  }
  function live() {
    var url = body.getAttribute("data-live");
    if (!url || !window.EventSource) { status(""); return; }
    var lost = false;
    var source = new EventSource(url);
    source.onopen = function () {
      status(lost ? "Live again (reconnected)" : "Live", "live");
      lost = false;
    };
    source.addEventListener("region", function (e) {
      apply(e.data);
      refreshTimes();
      body.setAttribute("data-updated", String(Date.now()));
    });
    source.onerror = function () {
      lost = true;
      status("Connection lost: reconnecting…", "lost");
      // The browser retries by itself unless the server answered with an error; then retry
      // here, a little later.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(function () { live(); }, 2000);
      }
    };
  }

  // Filters apply as soon as a choice changes.
  function filters() {
    document.querySelectorAll("form.filters select").forEach(function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
  }

  // Actions: confirm, then POST the operation with the token; show the answer as given.
  function actions() {
    var section = document.querySelector("section.actions");
    var dialog = document.getElementById("confirm");
    if (!section || !dialog) return;
    var endpoint = section.getAttribute("data-endpoint");
    var outcome = document.getElementById("outcome");
    var text = document.getElementById("confirm-text");
    var tokenRow = document.getElementById("token-row");
    var tokenInput = document.getElementById("token");
    var pending = null;

    function show(message, cls) {
      outcome.textContent = message;
      outcome.className = "outcome " + cls;
    }
    function ask(op, sentence) {
      pending = op;
      text.textContent = sentence;
      tokenRow.hidden = token() !== "";
      tokenInput.value = "";
      dialog.returnValue = "";
      dialog.showModal();
    }
    dialog.addEventListener("close", function () {
      var op = pending;
      pending = null;
      if (dialog.returnValue !== "ok" || !op) return;
      if (tokenInput.value) setToken(tokenInput.value.trim());
      send(op);
    });
    function send(op) {
      var buttons = section.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      show("Sending " + op.op + "…", "progress");
      fetch(endpoint, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + token() },
        body: JSON.stringify(op)
      }).then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (j) {
          if (r.ok) {
            show(j.message || "Done.", "ok");
          } else {
            if (r.status === 401) setToken("");
            show("Refused (" + r.status + "): " + (j.error || r.statusText), "bad");
          }
        });
      }).catch(function (e) {
        show("No answer from the dashboard: " + e, "bad");
      }).then(function () {
        buttons.forEach(function (b) { b.disabled = false; });
      });
    }
    section.addEventListener("click", function (e) {
      var b = e.target.closest("button[data-op]");
      if (!b) return;
      var op = b.getAttribute("data-op");
      ask(op === "promoteFull" ? { op: "promote", full: true } : { op: op }, b.getAttribute("data-confirm"));
    });
    section.addEventListener("submit", function (e) {
      var form = e.target.closest("form[data-op]");
      if (!form) return;
      e.preventDefault();
      var kind = form.getAttribute("data-op");
      var sentence = form.getAttribute("data-confirm");
      if (kind === "undo") {
        var revision = Number(form.elements.revision.value);
        if (!revision) { show("Pick a revision to go back to.", "bad"); return; }
        ask({ op: "undo", to_revision: revision }, sentence.replace("{revision}", String(revision)));
      } else if (kind === "setImage") {
        var image = form.elements.image.value.trim();
        ask({ op: "setImage", container: form.elements.container.value, image: image },
          sentence.replace("{image}", image));
      }
    });
  }

  takeTokenFromUrl();
  refreshTimes();
  setInterval(refreshTimes, 1000);
  live();
  filters();
  actions();
}());
