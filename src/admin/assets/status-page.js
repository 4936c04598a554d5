// meshkey status page: refreshes <main id="status"> from /?fragment=main (server-rendered,
// escaped HTML) every few seconds while the tab is visible. Without JavaScript the page
// reloads itself instead (<noscript> meta refresh). Served as a file: the page's
// Content-Security-Policy allows no inline script.
(function () {
  "use strict";
  var main = document.getElementById("status");
  var live = document.getElementById("live");
  if (!main || !live) return;
  var seconds = Number(main.getAttribute("data-refresh-seconds")) || 2;
  var timer;

  function say(state, message) {
    live.className = state;
    live.textContent = message;
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, seconds * 1000);
  }

  function refresh() {
    if (document.hidden) return schedule();
    fetch("/?fragment=main", { cache: "no-store", headers: { accept: "text/html" } })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString("<main>" + html + "</main>", "text/html");
        var fresh = doc.querySelector("main");
        if (fresh) main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
        say("ok", "live · every " + seconds + " s · updated " + new Date().toLocaleTimeString());
      })
      .catch(function (err) {
        say("down", "meshkey unreachable (" + err.message + ") · retrying");
      })
      .then(schedule);
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) refresh();
  });
  say("ok", "live · every " + seconds + " s");
  schedule();
})();
