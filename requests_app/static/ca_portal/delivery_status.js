// The delivery panel's live status: while a delivery is pending or being sent, fetch the
// deliveries table every few seconds and show it, until none is in flight. Without this
// script the table carries a "Refresh" link instead.
(function () {
  "use strict";
  var panel = document.getElementById("delivery");
  var box = panel && panel.querySelector(".deliveries-box");
  if (!box || !panel.dataset.statusUrl || !window.fetch) return;
  var started = Date.now();
  var last = "";
  var GIVE_UP_AFTER = 15 * 60 * 1000; // the backoff grows to an hour: a Refresh link then

  function inFlight() {
    return box.querySelector("[data-in-flight]") !== null;
  }

  function stop() {
    panel.classList.remove("live");
  }

  function next() {
    if (!inFlight() || Date.now() - started > GIVE_UP_AFTER) return stop();
    panel.classList.add("live");
    // Every 2 s for the first minute (a send takes seconds), then every 10 s.
    setTimeout(poll, Date.now() - started < 60 * 1000 ? 2000 : 10000);
  }

  function poll() {
    // A redirect means the session ended (login or second-factor page): stop, keep the link.
    fetch(panel.dataset.statusUrl, {
      credentials: "same-origin",
      cache: "no-store",
      redirect: "error",
      headers: { Accept: "text/html" },
    })
      .then(function (response) {
        if (!response.ok) throw new Error("status " + response.status);
        return response.text();
      })
      .then(function (html) {
        if (html !== last) box.innerHTML = last = html;
        next();
      })
      .catch(stop);
  }

  next();
})();
