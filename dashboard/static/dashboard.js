// Draws every <canvas data-chart="..."> with Chart.js (vendored next to this file).
// A canvas with data-zero-line gets its y axis's 0 drawn as a darker line (NPS runs -100..100).
// Sets <body data-charts="N"> when done, so browser tests know the charts are drawn.
(function () {
  var GRID = "rgba(0, 0, 0, 0.1)";
  var ZERO = "#4b5563";

  function atZero(context) {
    return context.tick !== undefined && context.tick.value === 0;
  }

  function withZeroLine(config) {
    var y = config.options.scales.y;
    y.grid = Object.assign({}, y.grid, {
      color: function (context) { return atZero(context) ? ZERO : GRID; },
      lineWidth: function (context) { return atZero(context) ? 2 : 1; }
    });
    return config;
  }

  function draw() {
    var canvases = document.querySelectorAll("canvas[data-chart]");
    canvases.forEach(function (canvas) {
      var config = JSON.parse(canvas.dataset.chart);
      if (canvas.dataset.zeroLine !== undefined) {
        config = withZeroLine(config);
      }
      new window.Chart(canvas, config);
    });
    document.body.dataset.charts = String(canvases.length);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
