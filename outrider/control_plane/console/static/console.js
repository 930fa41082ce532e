// Outrider console: live updates on top of server-rendered pages. Without JS the pages still read fine.
(function () {
  "use strict";

  function humanize(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + "s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + "m";
    var hours = Math.floor(minutes / 60); minutes = minutes % 60;
    if (hours < 24) return hours + "h" + (minutes ? " " + minutes + "m" : "");
    var days = Math.floor(hours / 24); hours = hours % 24;
    return days + "d" + (hours ? " " + hours + "h" : "");
  }

  // Elapsed time of something still running: to the second under an hour, so it visibly ticks.
  function elapsed(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) return seconds + "s";
    if (seconds < 3600) return Math.floor(seconds / 60) + "m " + (seconds % 60) + "s";
    return humanize(seconds);
  }

  // Fact cards in balanced rows: as many columns as fit, then as few as keep the same number of rows, so a 9th card
  // never sits alone under eight (without JS the CSS grid's auto-fit still lays them out).
  var CARD_MIN = 140, CARD_GAP = 10;
  function balance() {
    document.querySelectorAll("dl.figures").forEach(function (list) {
      var cards = list.children.length;
      if (!cards) return;
      var fit = Math.max(1, Math.floor((list.clientWidth + CARD_GAP) / (CARD_MIN + CARD_GAP)));
      var rows = Math.ceil(cards / fit);
      list.style.gridTemplateColumns = "repeat(" + Math.ceil(cards / rows) + ", minmax(0, 1fr))";
    });
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-countdown]").forEach(function (el) {
      var left = (Date.parse(el.getAttribute("datetime")) - now) / 1000;
      el.textContent = left > 0 ? humanize(left) + " left" : "ended";
    });
    document.querySelectorAll("[data-elapsed]").forEach(function (el) {
      var since = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(since)) el.textContent = elapsed((now - since) / 1000);
    });
    document.querySelectorAll("[data-ago]").forEach(function (el) {
      var at = el.getAttribute("data-ago") || el.getAttribute("datetime");
      if (!at) return;
      var ago = (now - Date.parse(at)) / 1000;
      el.textContent = ago < 5 ? "just now" : humanize(ago) + " ago";
    });
  }

  var refreshTimer = null;
  function refreshStatus() {
    var box = document.getElementById("status-live");
    if (!box) return;
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      fetch(box.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) { box.innerHTML = html; balance(); tick(); } })
        .catch(function () {});
    }, 300);
  }

  // A running run's page: re-render its live part when one of its events arrives; reload once it finished.
  var runTimer = null;
  function refreshRun() {
    var box = document.getElementById("run-live");
    if (!box || runTimer) return;
    runTimer = setTimeout(function () {
      runTimer = null;
      fetch(box.getAttribute("data-refresh"), { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) {
          if (html === null) return;
          var holder = document.createElement("div");
          holder.innerHTML = html;
          if (holder.querySelector("[data-finished]")) { window.location.reload(); return; }
          var status = document.getElementById("live");
          box.innerHTML = html;
          if (status) box.appendChild(status);
          balance();
          tick();
        })
        .catch(function () {});
    }, 300);
  }

  function addActivity(seq) {
    var list = document.getElementById("activity");
    if (!list || list.querySelector('[data-seq="' + seq + '"]')) return;
    fetch("/console/partials/activity?seq=" + encodeURIComponent(seq), { credentials: "same-origin" })
      .then(function (r) { return r.status === 200 ? r.text() : null; })
      .then(function (html) {
        if (!html || list.querySelector('[data-seq="' + seq + '"]')) return;
        var holder = document.createElement("ul");
        holder.innerHTML = html.trim();
        var item = holder.firstElementChild;
        if (!item) return;
        item.classList.add("fresh");
        list.insertBefore(item, list.firstChild);
        while (list.children.length > 50) list.removeChild(list.lastChild);
        var empty = document.getElementById("activity-empty");
        if (empty) empty.remove();
        tick();
      })
      .catch(function () {});
  }

  function connect() {
    var live = document.getElementById("live");
    if (!live || !window.EventSource) return;
    live.textContent = "Connecting to live updates…";
    var source = new EventSource(live.getAttribute("data-stream"));
    source.addEventListener("open", function () {
      live.textContent = "Live";
      live.className = "live connected muted small";
    });
    source.addEventListener("error", function () {
      live.textContent = "Live updates interrupted; reconnecting…";
      live.className = "live lost muted small";
    });
    // The stream names each message after its event type (event: run.created, ...): listen to every known type.
    // Each message's data is the stored CloudEvent; its id (lastEventId) is the event's position (seq).
    function onStored(message) {
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      var type = event && event.type;
      if (!type) return;
      var list = document.getElementById("activity");
      var types = list ? (list.getAttribute("data-types") || "").split(" ") : [];
      if (types.indexOf(type) >= 0) addActivity(Number(message.lastEventId));
      var runBox = document.getElementById("run-live");
      if (runBox && event.runid === runBox.getAttribute("data-run")) refreshRun();
      if (type === "target.status" || type === "operator.heartbeat" || type === "autonomy.changed" ||
          type.indexOf("run.") === 0 || type.indexOf("target.") === 0 || type.indexOf("pr.") === 0) {
        refreshStatus();
      }
    }
    (live.getAttribute("data-types") || "").split(" ").forEach(function (type) {
      if (type) source.addEventListener(type, onStored);
    });
    source.addEventListener("message", onStored);
    source.addEventListener("dropped", function () { source.close(); setTimeout(connect, 2000); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    balance();
    window.addEventListener("resize", balance);
    tick();
    setInterval(tick, 1000);
    connect();
  });
})();
