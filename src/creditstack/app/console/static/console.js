/* creditstack console: draws every chart on the page with vega-embed.
 *
 * A chart is a container `<div data-chart="ID">` and a data block `<script type="application/json" id="ID">`
 * holding its Vega-Lite specification (data, never code: the page's Content-Security-Policy allows no
 * inline script and no eval). Vega's expressions run in its AST interpreter (`ast: true`, the interpreter
 * that vega-embed bundles), so Vega needs no `unsafe-eval` either. Charts in content that htmx swaps in
 * are drawn when it arrives.
 */
(function () {
  "use strict";

  function draw(container) {
    if (container.dataset.state) {
      return;
    }
    var source = document.getElementById(container.dataset.chart);
    if (!source) {
      return;
    }
    container.dataset.state = "drawing";
    var spec = JSON.parse(source.textContent);
    window
      .vegaEmbed(container, spec, { actions: false, ast: true, renderer: "svg", mode: "vega-lite" })
      .then(function () {
        container.dataset.state = "drawn";
      })
      .catch(function (error) {
        container.dataset.state = "failed";
        container.textContent = "This chart could not be drawn.";
        console.error("chart " + container.dataset.chart + ": " + error);
      });
  }

  function drawAll(root) {
    var scope = root && root.querySelectorAll ? root : document;
    Array.prototype.forEach.call(scope.querySelectorAll("[data-chart]"), draw);
  }

  document.addEventListener("DOMContentLoaded", function () {
    drawAll(document);
  });
  document.addEventListener("htmx:load", function (event) {
    drawAll(event.target);
  });
})();
