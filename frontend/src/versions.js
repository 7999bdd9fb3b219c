// The version pages. <div data-version-chart="#json-id"> + a json_script block with
// {t: [epoch seconds], series: [{label, share: [percent]}], window: {from, to}}: the share of each
// version over the window (uPlot). <form data-diff-switcher> with two <select>s: picking a
// version loads the diff between them (the server renders it; without script the form's
// button does the same).
import uPlot from "uplot";

const COLOURS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#be185d", "#4b5563"];

/** The uPlot data arrays: [times, share of each series...]. */
export function shareData(spec) {
  const times = spec.t || [];
  return [times, ...(spec.series || []).map((s) => times.map((_, i) => (s.share && s.share[i] != null ? s.share[i] : null)))];
}

/** The query string that shows the diff between `left` and `right`, keeping the others. */
export function diffQuery(search, left, right) {
  const params = new URLSearchParams(search);
  params.set("left", left);
  params.set("right", right);
  return params.toString();
}

function initChart(holder) {
  const source = document.querySelector(holder.getAttribute("data-version-chart"));
  if (!source) return;
  const spec = JSON.parse(source.textContent);
  if (!(spec.t || []).length) return;
  const width = Math.max(320, holder.clientWidth || 800);
  const options = {
    width,
    height: 220,
    scales: { x: { time: true, range: () => [spec.window.from, spec.window.to] }, y: { range: [0, 100] } },
    series: [
      {},
      ...spec.series.map((s, i) => ({
        label: s.label, stroke: COLOURS[i % COLOURS.length], width: 2, points: { show: spec.t.length < 60 },
        value: (u, v) => (v == null ? "—" : `${v}%`),
      })),
    ],
    axes: [{}, { label: "share of messages", values: (u, ticks) => ticks.map((v) => `${v}%`) }],
  };
  holder.textContent = "";
  const chart = new uPlot(options, shareData(spec), holder);
  holder.versionChart = chart;
  window.addEventListener("resize", () => chart.setSize({ width: Math.max(320, holder.clientWidth), height: 220 }));
}

export function initVersions(root) {
  for (const holder of root.querySelectorAll("[data-version-chart]")) initChart(holder);
  for (const form of root.querySelectorAll("form[data-diff-switcher]")) {
    form.addEventListener("change", () => {
      const left = form.elements.left.value;
      const right = form.elements.right.value;
      const url = new URL(window.location.href);
      url.search = diffQuery(url.search, left, right);
      url.hash = "diff";
      window.location.assign(url.href);
    });
  }
}
