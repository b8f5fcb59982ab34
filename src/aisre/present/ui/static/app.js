// Live refresh without a framework: every few seconds re-fetch this page and swap in the
// elements marked data-live (same id), so new runs show up while the rest of the page,
// scroll position and form fields stay put. Pauses while the tab is hidden or unticked.
// Pages without a live refresh still keep their "needs attention" strip current, from
// /ui/attention alone.
(function () {
  "use strict";

  function swap(fresh) {
    document.querySelectorAll("[data-live]").forEach(function (el) {
      var next = el.id && fresh.getElementById(el.id);
      if (next && next.innerHTML !== el.innerHTML) el.replaceWith(document.importNode(next, true));
    });
  }

  function every(seconds, url, live) {
    async function tick() {
      if (document.hidden || (live && !live.checked)) return;
      try {
        var response = await fetch(url(), { cache: "no-store", headers: { Accept: "text/html" } });
        if (!response.ok) return;
        swap(new DOMParser().parseFromString(await response.text(), "text/html"));
      } catch (err) {
        // The server may be restarting; the next tick tries again.
      }
    }
    setInterval(tick, seconds * 1000);
  }

  var seconds = Number(document.body.dataset.refresh || 0);
  if (seconds && document.querySelector("[data-live]")) {
    var toggle = document.getElementById("live-toggle");
    if (toggle) toggle.parentElement.hidden = false;
    every(seconds, function () { return location.href; }, toggle);
    return;
  }
  var strip = Number(document.body.dataset.attention || 0);
  if (strip && document.getElementById("attention")) {
    every(strip, function () { return "/ui/attention"; }, null);
  }
})();
