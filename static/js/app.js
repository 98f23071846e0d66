/* The few behaviours the pages add when JavaScript runs (each page works without it too):
   - a menu button that opens and closes the main navigation on narrow screens;
   - confirmation before destructive actions: a form with data-confirm="…" asks, and sends confirm=yes when
     the answer is yes (without JavaScript the server asks on a page of its own instead);
   - keyboard focus kept after htmx replaces part of the page: the element that had focus, or the one with the
     same id in the new content, gets it back, so keyboard and screen-reader users stay where they were.
   Loaded as a file from this site: the Content-Security-Policy allows no inline script. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    var button = document.getElementById("menu-button");
    var nav = document.getElementById("main-nav");
    if (button && nav) {
      button.addEventListener("click", function () {
        var open = button.getAttribute("aria-expanded") === "true";
        button.setAttribute("aria-expanded", open ? "false" : "true");
        document.body.classList.toggle("nav-open", !open);
      });
      document.addEventListener("keydown", function (event) {
        if (event.key === "Escape" && document.body.classList.contains("nav-open")) {
          button.setAttribute("aria-expanded", "false");
          document.body.classList.remove("nav-open");
          button.focus();
        }
      });
    }
  });

  // Capture phase on the document: runs before htmx's own submit handler on the form.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
    var answer = form.querySelector("input[name=confirm]");
    if (answer && answer.value === "yes") return;
    if (!window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation();
      return;
    }
    if (!answer) {
      answer = document.createElement("input");
      answer.type = "hidden";
      answer.name = "confirm";
      form.appendChild(answer);
    }
    answer.value = "yes";
  }, true);

  var focusedId = null;
  document.addEventListener("htmx:beforeSwap", function () {
    var active = document.activeElement;
    focusedId = active && active !== document.body && active.id ? active.id : null;
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    var active = document.activeElement;
    if (active && active !== document.body && document.contains(active)) return; // focus survived the swap
    var swapped = event.detail && event.detail.target;
    if (swapped && !document.contains(swapped) && swapped.id) swapped = document.getElementById(swapped.id);
    var target = (focusedId && document.getElementById(focusedId)) ||
      (swapped && swapped.querySelector && swapped.querySelector("[data-focus-after-swap]")) || swapped;
    if (target && target !== document.body) {
      if (!target.hasAttribute("tabindex") && !/^(A|BUTTON|INPUT|SELECT|TEXTAREA)$/.test(target.tagName)) {
        target.setAttribute("tabindex", "-1");
      }
      target.focus({ preventScroll: true });
    }
    focusedId = null;
  });
})();
