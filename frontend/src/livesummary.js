// [data-live-summary="kind"] (optional data-live-params='{"seconds": 900}'): the
// elements inside marked data-live-field="name" show that field of the summary, kept
// current over the live socket instead of reloading the page. data-live-format="bytes"
// formats a size; a <time> gets its datetime set (and its relative text refreshed).
import { fileSize, formatCount } from "./livecore.js";
import { liveSocket } from "./livesocket.js";
import { updateTimes } from "./reltime.js";

function show(element, value) {
  if (element.tagName === "TIME") {
    if (!value) return;
    element.setAttribute("datetime", value);
    element.removeAttribute("title");
    updateTimes(element.parentElement);
    return;
  }
  if (value === null || value === undefined) return;
  if (element.dataset.liveFormat === "bytes") element.textContent = fileSize(value);
  else if (typeof value === "number") element.textContent = formatCount(value);
  else element.textContent = String(value);
  element.classList.toggle("live-zero", value === 0);
}

export function initLiveSummaries(root) {
  const holders = [...root.querySelectorAll("[data-live-summary]")];
  if (!holders.length) return;
  const kinds = {};
  for (const holder of holders) {
    kinds[holder.dataset.liveSummary] = JSON.parse(holder.dataset.liveParams || "{}");
  }
  const socket = liveSocket();
  socket.whenOpen(() => socket.send({ type: "summaries", kinds }));
  socket.on("summary", (message) => {
    for (const holder of holders) {
      if (holder.dataset.liveSummary !== message.kind) continue;
      for (const element of holder.querySelectorAll("[data-live-field]")) {
        show(element, message.data[element.dataset.liveField]);
      }
      holder.dataset.liveUpdated = new Date().toISOString();
    }
  });
}
