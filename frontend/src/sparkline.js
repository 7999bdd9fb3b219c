// <svg class="sparkline" data-values="1,2,3">: a small line of the values, drawn
// here unless the server already put one inside the svg.

const SVG_NS = "http://www.w3.org/2000/svg";
const DEFAULT_SIZE = [100, 24];

/** Numbers from "1,2, 3"; anything that is not a number is left out. */
export function parseValues(text) {
  return (text || "")
    .split(/[\s,]+/)
    .filter((part) => part !== "")
    .map(Number)
    .filter(Number.isFinite);
}

function round(number) {
  return Math.round(number * 10) / 10;
}

/**
 * The polyline points for counts in a width × height box: zero on the bottom line, the
 * highest value on the top one, so a small change on a large count stays small. A single
 * value is a level line. The server draws with the same formula
 * (dashboard/presenters.py sparkline_points), so a row looks the same whoever drew it.
 */
export function sparklinePoints(values, width, height, padding = 1) {
  if (values.length === 0) return "";
  const series = values.length === 1 ? [values[0], values[0]] : values;
  const highest = Math.max(...series);
  const peak = highest > 0 ? highest : 1;
  const step = width / (series.length - 1);
  const span = height - 2 * padding;
  return series
    .map((value, index) => `${round(index * step)},${round(height - padding - (value / peak) * span)}`)
    .join(" ");
}

function boxOf(svg) {
  const viewBox = (svg.getAttribute("viewBox") || "").trim().split(/[\s,]+/).map(Number);
  if (viewBox.length === 4 && viewBox[2] > 0 && viewBox[3] > 0) return [viewBox[2], viewBox[3]];
  const width = parseFloat(svg.getAttribute("width"));
  const height = parseFloat(svg.getAttribute("height"));
  return width > 0 && height > 0 ? [width, height] : DEFAULT_SIZE;
}

/** Draw every sparkline under `root` that has no content yet; live views call it for new ones. */
export function drawSparklines(root) {
  for (const svg of root.querySelectorAll("svg.sparkline[data-values]")) {
    if (svg.childElementCount > 0) continue;
    const values = parseValues(svg.getAttribute("data-values"));
    if (values.length === 0) continue;
    const [width, height] = boxOf(svg);
    if (!svg.hasAttribute("viewBox")) svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const line = document.createElementNS(SVG_NS, "polyline");
    line.setAttribute("points", sparklinePoints(values, width, height));
    svg.append(line);
    if (!svg.hasAttribute("aria-label")) {
      svg.setAttribute("role", "img");
      svg.setAttribute(
        "aria-label",
        `${values.length} values, lowest ${Math.min(...values)}, highest ${Math.max(...values)}, last ${values[values.length - 1]}`,
      );
    }
  }
}
