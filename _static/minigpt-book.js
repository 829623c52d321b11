/* The minigpt book's fixes to the theme (pydata-sphinx-theme 0.17.1, sphinx-book-theme 1.3.0),
   loaded on every page by Jupyter Book from _static/. Checked by tools/browser_test.py.

   1. The menu button. The themes bind their click handlers to the first ".primary-toggle" on
      the page, which is the hidden button of pydata's own header, so the visible ☰ button
      neither opened the chapter list on a phone nor hid the sidebar on a desktop (upstream:
      pydata/pydata-sphinx-theme#2451, executablebooks/sphinx-book-theme#988). Each visible
      button now forwards its click to that first button, which does the right thing at either
      width. The same holds for ".secondary-toggle" (the page's contents on a phone).
   2. A first visit logged "Got invalid theme mode: ." as a console error: the page sets the
      mode from localStorage, empty on a first visit. It now starts from "auto".
*/
(function () {
  "use strict";
  var root = document.documentElement;
  if (!root.dataset.mode) {
    root.dataset.mode = root.dataset.defaultMode || "auto";
  }

  function forwardToggles() {
    ["primary-toggle", "secondary-toggle"].forEach(function (kind) {
      var all = document.querySelectorAll("." + kind);
      if (all.length < 2) return;
      var bound = all[0];
      Array.prototype.slice.call(all, 1).forEach(function (button) {
        if (button.dataset.minigptForward) return;
        button.dataset.minigptForward = "1";
        button.addEventListener("click", function (event) {
          event.preventDefault();
          event.stopPropagation();
          bound.click();
          button.blur();
        });
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", forwardToggles);
  } else {
    forwardToggles();
  }
})();

/* 3. Cells stored with ipywidgets output. The site loads no widget manager (no require.js,
   nothing from a CDN: nb_ipywidgets_js is empty in _config.yml), and without a kernel such
   controls could not change anything anyway. Instead of an empty area, say where they work.
   Chapters replace these cells with minigpt.widgets.static_controls, which works on the page. */
(function () {
  "use strict";
  function explainKernelWidgets() {
    var sel = "script[type='application/vnd.jupyter.widget-view+json']";
    document.querySelectorAll(sel).forEach(function (script) {
      var area = script.parentElement;
      if (!area || area.querySelector(".minigpt-kernel-widget")) return;
      var note = document.createElement("p");
      note.className = "minigpt-kernel-widget";
      note.textContent = "Interactive controls: they run in a live notebook. Open this " +
        "chapter in Colab (the rocket icon at the top) or in Jupyter to use them.";
      area.appendChild(note);
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", explainKernelWidgets);
  } else {
    explainKernelWidgets();
  }
})();
