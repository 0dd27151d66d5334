// The thresholds page (templates/workflows/thresholds.html).
(function () {
  "use strict";
  // A form with errors comes back as 400 (409 when the workflow changed meanwhile): show it.
  // The answer is always the whole page; the form's hx-select takes its own section out of it.
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

  // The browser refuses what the server refuses: min/max cover the inclusive bounds, this the
  // exclusive ones ("more than 0": 0 itself is refused too).
  function checkExclusive(input) {
    if (!input.matches || !input.matches("input[type=number]")) return;
    var low = input.getAttribute("data-exclusive-min");
    var high = input.getAttribute("data-exclusive-max");
    var text = input.value.trim();
    var value = Number(text);
    var wrong = text !== "" && !isNaN(value) &&
      ((low !== null && value <= Number(low)) || (high !== null && value >= Number(high)));
    input.setCustomValidity(
      wrong ? "Out of range: enter " + (input.getAttribute("data-range-text") || "an allowed value") + "." : ""
    );
  }
  document.addEventListener("input", function (event) { checkExclusive(event.target); });
  function checkAll(root) {
    (root || document).querySelectorAll("input[data-range-text]").forEach(checkExclusive);
  }
  document.addEventListener("DOMContentLoaded", function () { checkAll(); });
  document.addEventListener("htmx:afterSettle", function () { checkAll(); });
})();
