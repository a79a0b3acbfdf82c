// The status page reads whole without this. With it, the page asks every few seconds whether
// anything changed, and if so swaps in the new content without a reload, unless a form on
// it is being filled in.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var live = document.getElementById("live");
  if (!main || !main.dataset.generation || !window.fetch) return;
  var generation = main.dataset.generation;
  function busy() {
    var a = document.activeElement;
    return a && a.form && main.contains(a) && a.value !== "" && a.type !== "submit";
  }
  function refresh() {
    return fetch(location.href, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        if (!fresh) return;
        main.replaceChildren.apply(main, Array.prototype.slice.call(fresh.childNodes));
        generation = fresh.dataset.generation;
        main.dataset.generation = generation;
        if (live) live.textContent = "Updated at " + new Date().toLocaleTimeString();
      });
  }
  function tick() {
    fetch("/ui/changes", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (j) {
        if (j && String(j.generation) !== generation && !busy()) return refresh();
      })
      .catch(function () {})
      .then(function () { setTimeout(tick, 2000); });
  }
  setTimeout(tick, 2000);
})();
