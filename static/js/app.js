// Behaviour every page shares, kept out of the HTML so the Content-Security-Policy can forbid
// inline script and style (docs/security.md):
// - bars and markers carry their geometry as data-left / data-width (percent); it is applied
//   here through the CSSOM, which the policy allows, on load and on every htmx swap;
// - a button with data-open-dialog="ID" opens that <dialog>; data-close-dialog closes its own;
// - an element with data-pause-while-dialog skips its htmx requests (a polling refresh) while a
//   dialog is open, so the refresh does not replace the dialog under the user (an htmx event
//   filter such as [!document.querySelector(...)] would need eval, which the policy refuses).
(function () {
  "use strict";

  function percent(value) {
    var number = parseFloat(value);
    return isFinite(number) ? number + "%" : "";
  }

  function place(root) {
    var scope = root && root.querySelectorAll ? root : document;
    var marked = scope.querySelectorAll("[data-left], [data-width]");
    var all = scope.matches && scope.matches("[data-left], [data-width]") ? [scope] : [];
    Array.prototype.push.apply(all, marked);
    all.forEach(function (el) {
      if (el.dataset.left !== undefined) el.style.left = percent(el.dataset.left);
      if (el.dataset.width !== undefined) el.style.width = percent(el.dataset.width);
    });
  }

  document.addEventListener("click", function (event) {
    var opener = event.target.closest("[data-open-dialog]");
    if (opener) {
      var dialog = document.getElementById(opener.dataset.openDialog);
      if (dialog && !dialog.open) dialog.showModal();
      return;
    }
    var closer = event.target.closest("[data-close-dialog]");
    if (closer) {
      var own = closer.closest("dialog");
      if (own) own.close();
    }
  });

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail && event.detail.elt;
    if (elt && elt.closest && elt.closest("[data-pause-while-dialog]")
        && document.querySelector("dialog[open]")) {
      event.preventDefault();
    }
  });

  document.addEventListener("htmx:load", function (event) { place(event.target); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { place(document); });
  } else {
    place(document);
  }
})();
