// <div data-lag-chart="#json-id"> + a <script type="application/json"> block with
// {history: {t, lag, oldest_age}, marks: [{t, label}], window: {from, to}}: the consumer's lag
// and the age of its oldest unprocessed message over the window (uPlot, two y axes), with
// the timeline's events drawn as vertical marks.
import uPlot from "uplot";

/** Seconds as a person reads them on an axis: 45 s, 12 min, 3.5 h. */
export function formatAge(seconds) {
  if (seconds == null) return "—";
  if (seconds < 120) return `${Math.round(seconds)} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${(seconds / 3600).toFixed(1)} h`;
  return `${(seconds / 86400).toFixed(1)} d`;
}

/** The uPlot data arrays for a history: [times, lag, oldest age]; gaps stay null. */
export function chartData(history) {
  const times = history.t || [];
  const pick = (values) => times.map((_, index) => (values && values[index] != null ? values[index] : null));
  return [times, pick(history.lag), pick(history.oldest_age)];
}

function drawMarks(marks) {
  return (u) => {
    const { ctx } = u;
    const top = u.bbox.top;
    const height = u.bbox.height;
    ctx.save();
    ctx.strokeStyle = "#b45309";
    ctx.fillStyle = "#b45309";
    ctx.lineWidth = 1;
    ctx.font = `${Math.round(10 * devicePixelRatio)}px sans-serif`;
    for (const mark of marks) {
      const x = Math.round(u.valToPos(mark.t, "x", true));
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.beginPath();
      ctx.setLineDash([4, 3]);
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      ctx.fillText(mark.label, x + 3, top + 12 * devicePixelRatio);
    }
    ctx.restore();
  };
}

export function initLagChart(root) {
  for (const holder of root.querySelectorAll("[data-lag-chart]")) {
    const source = document.querySelector(holder.getAttribute("data-lag-chart"));
    if (!source) continue;
    const spec = JSON.parse(source.textContent);
    const data = chartData(spec.history || {});
    const width = Math.max(320, holder.clientWidth || 800);
    const options = {
      width,
      height: 260,
      scales: { x: { time: true, range: () => [spec.window.from, spec.window.to] }, lag: {}, age: {} },
      series: [
        {},
        { label: "Lag (messages)", scale: "lag", stroke: "#2563eb", width: 2, spanGaps: false },
        { label: "Oldest unprocessed", scale: "age", stroke: "#dc2626", width: 1.5, spanGaps: false, value: (u, v) => formatAge(v) },
      ],
      axes: [
        {},
        { scale: "lag", label: "messages" },
        { scale: "age", side: 1, label: "oldest age", grid: { show: false }, values: (u, ticks) => ticks.map(formatAge) },
      ],
      hooks: { draw: [drawMarks(spec.marks || [])] },
    };
    holder.textContent = "";
    const chart = new uPlot(options, data, holder);
    holder.lagChart = chart;
    window.addEventListener("resize", () => chart.setSize({ width: Math.max(320, holder.clientWidth), height: 260 }));
  }
}
