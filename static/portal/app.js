// The portal's own behaviour, kept out of the templates: the Content-Security-Policy runs no
// inline script or event handler (onchange="..."), only files served from here.
(function () {
  "use strict";

  // A <select data-submit-on-change> sends its form as soon as a choice is made (the language
  // switch); <noscript> beside it keeps a button for browsers without JavaScript.
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (!(field instanceof HTMLSelectElement) || !field.hasAttribute("data-submit-on-change") || !field.form) {
      return;
    }
    if (typeof field.form.requestSubmit === "function") {
      field.form.requestSubmit();
    } else {
      field.form.submit();
    }
  });

  // The invoice table's selection (<form data-selection>): "select all" ticks every row on the
  // page, and the buttons that act on the selection ([data-needs-selection]) are disabled while
  // nothing is ticked. Without JavaScript they stay enabled and the server says what is missing.
  function syncSelection(form) {
    var boxes = form.querySelectorAll("input[type=checkbox][name=invoice]");
    var ticked = 0;
    boxes.forEach(function (box) { if (box.checked) { ticked += 1; } });
    var all = form.querySelector("[data-select-all]");
    if (all) {
      all.closest("label").hidden = false;  // of no use without this script
      all.checked = boxes.length > 0 && ticked === boxes.length;
      all.indeterminate = ticked > 0 && ticked < boxes.length;
    }
    form.querySelectorAll("[data-needs-selection]").forEach(function (button) {
      button.disabled = ticked === 0;
    });
  }

  function syncAllSelections() {
    document.querySelectorAll("form[data-selection]").forEach(syncSelection);
  }

  document.addEventListener("change", function (event) {
    var box = event.target;
    if (!(box instanceof HTMLInputElement) || !box.form || !box.form.hasAttribute("data-selection")) {
      return;
    }
    if (box.hasAttribute("data-select-all")) {
      box.form.querySelectorAll("input[type=checkbox][name=invoice]").forEach(function (row) {
        row.checked = box.checked;
      });
    }
    syncSelection(box.form);
  });

  // Open menus (<details data-menu>) close with Escape and with a click elsewhere.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") { return; }
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (getComputedStyle(menu.querySelector("summary")).display === "none") { return; }
      menu.open = false;
      if (menu.contains(document.activeElement)) { menu.querySelector("summary").focus(); }
    });
  });
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details[data-menu][open]").forEach(function (menu) {
      if (!menu.contains(event.target) && getComputedStyle(menu.querySelector("summary")).display !== "none") {
        menu.open = false;
      }
    });
  });

  // Browsers without ::details-content cannot show the closed filter panel on a wide screen
  // (app.css): open it there instead.
  function openFiltersOnWideScreens() {
    var supported = window.CSS && CSS.supports && CSS.supports("selector(::details-content)");
    if (!supported && window.matchMedia("(min-width: 48rem)").matches) {
      document.querySelectorAll("details.filters-panel").forEach(function (panel) { panel.open = true; });
    }
  }

  function start() {
    syncAllSelections();
    openFiltersOnWideScreens();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
  // The invoice list's sort choice in the filter form follows the results (a header was clicked),
  // without replacing the field (the focus stays where it is).
  function syncSortChoice() {
    var shown = document.querySelector("#results [data-sort]");
    var field = document.querySelector("form[role=search] select[name=sort]");
    if (shown && field && field.value !== shown.getAttribute("data-sort")) {
      field.value = shown.getAttribute("data-sort");
    }
  }

  // htmx swapped in new results: their buttons start disabled again.
  document.addEventListener("htmx:afterSettle", function () {
    syncAllSelections();
    syncSortChoice();
  });
})();
