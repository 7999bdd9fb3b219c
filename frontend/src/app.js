// The one script every page loads. Pages are rendered by Django and work without
// it; this wires the extras to data- attributes, because the Content-Security-Policy
// allows no inline script.
import { initConfirm } from "./confirm.js";
import { initCopyButtons } from "./copy.js";
import { initLagChart } from "./lagchart.js";
import { initLiveTail } from "./live.js";
import { initLiveSummaries } from "./livesummary.js";
import { initAutoRefresh } from "./refresh.js";
import { initRelativeTimes } from "./reltime.js";
import { initSortableTables } from "./sortable.js";
import { drawSparklines } from "./sparkline.js";
import { initTimeWindow } from "./timewindow.js";
import { initToggles } from "./toggle.js";
import { initVersions } from "./versions.js";
import { initWaterfall } from "./waterfall.js";

// Named here because minification renames the functions themselves.
const behaviours = {
  "time window": initTimeWindow,
  "copy buttons": initCopyButtons,
  "relative times": initRelativeTimes,
  "sortable tables": initSortableTables,
  "auto-refresh": initAutoRefresh,
  confirm: initConfirm,
  toggles: initToggles,
  sparklines: drawSparklines,
  waterfall: initWaterfall,
  "lag chart": initLagChart,
  "live tail": initLiveTail,
  "live summaries": initLiveSummaries,
  versions: initVersions,
};

function start() {
  for (const [name, init] of Object.entries(behaviours)) {
    // One broken behaviour must not take the others down with it.
    try {
      init(document);
    } catch (error) {
      console.error(`Eventscope: ${name} failed`, error);
    }
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
