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
})();
