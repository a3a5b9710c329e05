// Draws every <canvas data-chart="..."> with Chart.js (vendored next to this file).
// Sets <body data-charts="N"> when done, so browser tests know the charts are drawn.
(function () {
  function draw() {
    var canvases = document.querySelectorAll("canvas[data-chart]");
    canvases.forEach(function (canvas) {
      new window.Chart(canvas, JSON.parse(canvas.dataset.chart));
    });
    document.body.dataset.charts = String(canvases.length);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
