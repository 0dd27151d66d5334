// The thresholds page (templates/workflows/thresholds.html).
(function () {
  "use strict";
  // A form with errors comes back as 400 (409 when the workflow changed meanwhile): show it.
  document.addEventListener("htmx:beforeSwap", function (event) {
    var status = event.detail.xhr.status;
    if (status === 400 || status === 409) {
      event.detail.shouldSwap = true;
      event.detail.isError = false;
    }
  });
  // After a save, focus the first field in error, else the confirmation.
  document.addEventListener("htmx:afterSettle", function () {
    var marked = document.querySelectorAll("[data-focus-after-swap]");
    marked.forEach(function (el) { el.removeAttribute("data-focus-after-swap"); });
    if (marked.length) marked[0].focus();
  });
})();
