// Runs first: every error of the page goes into #report-errors, which the reader sees at the
// top and a test reads from the DOM (a headless browser's console is not a reliable witness).
(() => {
  const seen = [];
  const show = () => {
    const box = document.getElementById("report-errors");
    if (box) {
      box.textContent = seen.join("\n");
      box.hidden = !seen.length;
    }
  };
  const add = (text) => {
    seen.push(text);
    show();
  };
  window.addEventListener("error", (e) => add(e.message
    ? `error: ${e.message} (${e.filename}:${e.lineno})`
    : `could not load ${e.target.src || e.target.href || e.target.tagName}`), true);
  window.addEventListener("unhandledrejection", (e) => add(`unhandled rejection: ${e.reason}`));
  document.addEventListener("securitypolicyviolation",
    (e) => add(`blocked by the page's policy: ${e.blockedURI} (${e.violatedDirective})`));
  const consoleError = console.error;
  console.error = (...args) => {
    add(`console.error: ${args.join(" ")}`);
    consoleError.apply(console, args);
  };
  document.addEventListener("DOMContentLoaded", show);
})();
