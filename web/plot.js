// Curves of a run's history records (history.jsonl's lines), drawn on the page's canvases.
// A classic script, so that a page with `window.PAC_REPLAY = {metric, records}` set before it
// draws at once, without the wasm module (tests/browser.rs screenshots such a page).

const PLOTS = [
  { id: "plot-loss1", value: (r) => r.train_loss },
  { id: "plot-bound", value: (r) => r.bound },
  { id: "plot-dev", value: (r, metric) => (r.dev ? r.dev[metric] : undefined) },
];

function drawCurves(records, metric) {
  for (const plot of PLOTS) {
    const points = records
      .map((r) => [r.epoch, plot.value(r, metric)])
      .filter(([, y]) => typeof y === "number" && Number.isFinite(y));
    drawPlot(document.getElementById(plot.id), points);
  }
}

function drawPlot(canvas, points) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const pad = { left: 48, right: 10, top: 10, bottom: 24 };
  ctx.clearRect(0, 0, width, height);
  ctx.strokeStyle = "#888";
  ctx.strokeRect(pad.left, pad.top, width - pad.left - pad.right, height - pad.top - pad.bottom);
  if (points.length === 0) return;
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y1 - y0 < 1e-12) [y0, y1] = [y0 - 0.5, y1 + 0.5];
  const px = (x) => pad.left + ((x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const py = (y) => height - pad.bottom - ((y - y0) / (y1 - y0)) * (height - pad.top - pad.bottom);
  ctx.fillStyle = "#444";
  ctx.font = "11px sans-serif";
  ctx.fillText(y1.toPrecision(3), 2, pad.top + 10);
  ctx.fillText(y0.toPrecision(3), 2, height - pad.bottom);
  ctx.fillText(`epoch ${x0}`, pad.left, height - 6);
  ctx.fillText(`${x1}`, width - pad.right - 20, height - 6);
  ctx.strokeStyle = "#1f5fbf";
  ctx.lineWidth = 2;
  ctx.beginPath();
  points.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(px(x), py(y)) : ctx.lineTo(px(x), py(y))));
  ctx.stroke();
  ctx.fillStyle = "#1f5fbf";
  for (const [x, y] of points) ctx.fillRect(px(x) - 2, py(y) - 2, 4, 4);
}

// Loaded after the canvases, so they exist already.
if (window.PAC_REPLAY) drawCurves(window.PAC_REPLAY.records, window.PAC_REPLAY.metric);
