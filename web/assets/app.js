// hookflow UI behaviour that htmx does not cover: copy buttons, inserting template paths into
// the field being edited, reading an import file into its textarea, closing menus. Delegated
// listeners on the document, so they keep working after htmx swaps. No inline scripts (CSP).
(function () {
  "use strict";

  function flash(button, text) {
    button.classList.add("done");
    button.setAttribute("title", "Copied");
    setTimeout(function () { button.classList.remove("done"); button.removeAttribute("title"); }, 1200);
  }

  function copy(text, button) {
    function fallback() {
      var ta = document.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.className = "offscreen";
      document.body.appendChild(ta);
      ta.select();
      try { document.execCommand("copy"); } catch (e) { /* nothing else to try */ }
      document.body.removeChild(ta);
      flash(button, "✓");
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { flash(button, "✓"); }, fallback);
    } else {
      fallback();
    }
  }

  // The last template-capable field the user was in, for path insertion.
  var lastField = null;
  document.addEventListener("focusin", function (e) {
    var t = e.target;
    if (t && t.closest && t.closest("#panel") && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type === "text") || (t.tagName === "INPUT" && !t.type))) {
      lastField = t;
    }
  });

  function insertPath(path) {
    var field = lastField && document.body.contains(lastField) ? lastField : document.querySelector("#panel .tpl");
    if (!field) return;
    var text = "{{ " + path + " }}";
    var start = field.selectionStart != null ? field.selectionStart : field.value.length;
    var end = field.selectionEnd != null ? field.selectionEnd : field.value.length;
    field.value = field.value.slice(0, start) + text + field.value.slice(end);
    field.focus();
    field.selectionStart = field.selectionEnd = start + text.length;
    field.dispatchEvent(new Event("input", { bubbles: true }));
  }

  document.addEventListener("click", function (e) {
    var t = e.target.closest ? e.target : e.target.parentElement;
    if (!t) return;
    var c = t.closest("[data-copy]");
    if (c) { e.preventDefault(); copy(c.getAttribute("data-copy"), c); return; }
    var p = t.closest(".copy-pre");
    if (p) {
      e.preventDefault();
      var pre = p.parentElement.querySelector("pre");
      if (pre) copy(pre.textContent, p);
      return;
    }
    var h = t.closest(".hint[data-path]");
    if (h) { e.preventDefault(); insertPath(h.getAttribute("data-path")); return; }
    // Close open menus when clicking elsewhere.
    document.querySelectorAll("details.more[open], details.user[open]").forEach(function (d) {
      if (!d.contains(t)) d.removeAttribute("open");
    });
  });

  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape") {
      document.querySelectorAll("details.more[open], details.user[open]").forEach(function (d) { d.removeAttribute("open"); });
    }
  });

  document.addEventListener("change", function (e) {
    var input = e.target;
    if (input && input.type === "file" && input.hasAttribute("data-fill")) {
      var target = document.getElementById(input.getAttribute("data-fill"));
      var file = input.files && input.files[0];
      if (!target || !file) return;
      var reader = new FileReader();
      reader.onload = function () { target.value = String(reader.result || ""); };
      reader.readAsText(file);
    }
  });

  // A request that failed without an answer (server down, network): say so in the flash area.
  document.addEventListener("htmx:sendError", function () {
    var f = document.getElementById("flash");
    if (f) { f.textContent = "The server could not be reached. Check that hookflow is running, then try again."; }
  });
  document.addEventListener("htmx:beforeRequest", function () {
    var f = document.getElementById("flash");
    if (f) f.textContent = "";
  });
})();
