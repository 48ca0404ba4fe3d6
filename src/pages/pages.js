// Live refresh for the built-in pages, and nothing else: every page works without it.
// When the "Live" box is ticked (off by default; the choice is remembered for the tab), the
// page's own HTML is fetched every few seconds and its <main> replaced, without a reload.
// Served from the pages' path; the CSP allows scripts from there only (no inline script).
(function () {
  "use strict";
  var PERIOD_MS = 2000;
  var KEY = "service-tracing-live";
  var toggle = document.getElementById("live");
  var box = document.getElementById("live-refresh");
  if (!toggle || !box || !window.fetch || !window.DOMParser) {
    return;
  }
  toggle.hidden = false;
  var timer = null;
  var busy = false;

  function editing() {
    // Leave the page alone while a filter is being typed into.
    var active = document.activeElement;
    return active && active.form && document.querySelector("main").contains(active);
  }

  function refresh() {
    if (busy || document.hidden || editing()) {
      return;
    }
    busy = true;
    fetch(window.location.href, {
      headers: { Accept: "text/html" },
      credentials: "same-origin",
      cache: "no-store",
    })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status " + response.status);
        }
        return response.text();
      })
      .then(function (text) {
        var fresh = new DOMParser().parseFromString(text, "text/html").querySelector("main");
        var current = document.querySelector("main");
        if (fresh && current) {
          current.replaceWith(document.adoptNode(fresh));
          toggle.removeAttribute("data-error");
        }
      })
      .catch(function () {
        toggle.setAttribute("data-error", "");
      })
      .then(function () {
        busy = false;
      });
  }

  function set(on) {
    box.checked = on;
    try {
      window.sessionStorage.setItem(KEY, on ? "on" : "off");
    } catch (e) {
      // Storage refused: the choice lasts for this page only.
    }
    if (on && timer === null) {
      timer = window.setInterval(refresh, PERIOD_MS);
    } else if (!on && timer !== null) {
      window.clearInterval(timer);
      timer = null;
    }
  }

  box.addEventListener("change", function () {
    set(box.checked);
  });
  var remembered = null;
  try {
    remembered = window.sessionStorage.getItem(KEY);
  } catch (e) {
    remembered = null;
  }
  set(remembered === "on");
})();
