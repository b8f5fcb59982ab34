// Live refresh without a framework: every few seconds re-fetch this page and swap in the
// elements marked data-live (same id), so new runs show up while the rest of the page,
// scroll position and form fields stay put. Pauses while the tab is hidden or unticked.
(function () {
  "use strict";
  var seconds = Number(document.body.dataset.refresh || 0);
  if (!seconds || !document.querySelector("[data-live]")) return;
  var toggle = document.getElementById("live-toggle");
  if (toggle) toggle.parentElement.hidden = false;

  async function refresh() {
    if (document.hidden || (toggle && !toggle.checked)) return;
    try {
      var response = await fetch(location.href, { cache: "no-store", headers: { Accept: "text/html" } });
      if (!response.ok) return;
      var fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      document.querySelectorAll("[data-live]").forEach(function (el) {
        var next = el.id && fresh.getElementById(el.id);
        if (next && next.innerHTML !== el.innerHTML) el.replaceWith(document.importNode(next, true));
      });
    } catch (err) {
      // The server may be restarting; the next tick tries again.
    }
  }
  setInterval(refresh, seconds * 1000);
})();
