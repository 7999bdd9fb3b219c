// <section data-live-tail>: the /live/ page. Subscribes with the filters of the URL,
// draws each event as a row (newest first, at most data-max-rows), grants the server
// credit for what it drew, pauses/resumes/clears, and after a reconnect resumes from the
// last cursor: the server backfills what was missed and those rows are marked.
import { fileSize, formatCount, holdNewest, insertionIndex, rateText } from "./livecore.js";
import { liveSocket } from "./livesocket.js";
import { localTimestamp } from "./reltime.js";

const CREDIT = 1000; // events the server may send before the page acknowledges them

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function clock(date) {
  const pad = (n, size = 2) => String(n).padStart(size, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

function rowFor(event, eventUrl, backfilled) {
  const tr = document.createElement("tr");
  tr.dataset.id = String(event.id);
  if (backfilled) tr.classList.add("backfilled");
  if (event.note) tr.classList.add("error");
  const first = document.createElement("td");
  first.className = "nowrap";
  const link = document.createElement("a");
  link.href = eventUrl.replace(/\/0\/$/, `/${event.id}/`);
  const received = new Date(event.rx / 1000);
  const time = document.createElement("time");
  time.dateTime = received.toISOString();
  time.title = localTimestamp(received);
  time.textContent = clock(received);
  link.append(time);
  first.append(link);
  if (backfilled) {
    const badge = document.createElement("span");
    badge.className = "badge warn";
    badge.textContent = "backfilled";
    badge.title = "Missed while the connection was down; read back from the store";
    first.append(" ", badge);
  }
  tr.append(
    first,
    cell(event.subject, "mono"),
    cell(event.type || "—"),
    cell(event.version || "—"),
    cell(event.service || "—"),
    cell(fileSize(event.size), "num"),
    cell(event.note ? `${event.note} · ${event.preview}` : event.preview, "mono truncate"),
  );
  return tr;
}

export function initLiveTail(root) {
  const section = root.querySelector("[data-live-tail]");
  if (!section) return;
  const maxRows = Number(section.dataset.maxRows) || 1000;
  const eventUrl = section.dataset.eventUrl || "/events/0/";
  const filters = JSON.parse(section.dataset.filters || "{}");
  const tbody = section.querySelector("#live-rows tbody");
  const status = section.querySelector("#live-status");
  const rate = section.querySelector("#live-rate");
  const pauseButton = section.querySelector("#live-pause");
  const clearButton = section.querySelector("#live-clear");
  const heldText = section.querySelector("#live-held");
  const missedText = section.querySelector("#live-missed");
  const empty = section.querySelector("#live-empty");

  const rows = []; // newest first: {rx, id, tr}
  const shown = new Set(); // ids of the rows on the page
  let cursor = null;
  let paused = false;
  let held = [];
  let arrivedWhilePaused = 0;
  let drawn = 0;
  let missed = 0;

  const setStatus = (state, text) => {
    status.textContent = text;
    status.className = `badge ${state === "live" ? "ok" : state === "interrupted" ? "error" : "warn"}`;
    section.dataset.state = state;
  };

  const draw = (events, backfilled) => {
    for (const event of events) {
      if (shown.has(event.id)) continue; // a resume's overlap brings back rows already here
      const index = insertionIndex(rows, event.rx, event.id);
      const tr = rowFor(event, eventUrl, backfilled || event.backfilled);
      tbody.insertBefore(tr, rows[index] ? rows[index].tr : null);
      rows.splice(index, 0, { rx: event.rx, id: event.id, tr });
      shown.add(event.id);
    }
    while (rows.length > maxRows) {
      const oldest = rows.pop();
      oldest.tr.remove();
      shown.delete(oldest.id);
    }
    empty.hidden = rows.length > 0;
  };

  const grant = (count) => {
    drawn += count;
    if (drawn >= CREDIT / 4) {
      liveSocket().send({ type: "credit", n: drawn });
      drawn = 0;
    }
  };

  const socket = liveSocket();
  socket.whenOpen(() => {
    drawn = 0;
    const have = rows.slice(0, 5000).map((row) => row.id);
    socket.send({ type: "subscribe", filters, credit: CREDIT, since: cursor, have });
    setStatus("live", "live");
  });
  socket.whenClosed((event, wait) => {
    setStatus("interrupted", `interrupted: connection lost, reconnecting in ${Math.round(wait / 1000)} s…`);
  });
  socket.on("subscribed", (message) => {
    if (!cursor) cursor = message.cursor;
  });
  socket.on("events", (message) => {
    if (message.cursor) cursor = message.cursor;
    const events = message.backfill ? message.events.map((e) => ({ ...e, backfilled: true })) : message.events;
    if (paused) {
      held = holdNewest(held, events, maxRows);
      arrivedWhilePaused += events.length;
      heldText.textContent = `${formatCount(arrivedWhilePaused)} arrived while paused`;
    } else {
      draw(events, message.backfill);
    }
    if (message.backfill && message.missed) {
      missed += message.missed;
      missedText.textContent = `${formatCount(missed)}${message.more ? "+" : ""} missed events not shown (over the limit)`;
    }
    grant(message.events.length);
  });
  socket.on("stats", (message) => {
    if (message.cursor) cursor = message.cursor;
    rate.textContent = rateText(message);
    if (message.interrupted) setStatus("interrupted", `interrupted: ${message.interrupted}`);
    else setStatus("live", "live");
  });
  socket.on("error", (message) => {
    missedText.textContent = message.reason;
  });

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pauseButton.setAttribute("aria-pressed", String(paused));
    if (!paused) {
      draw(held, false);
      held = [];
      arrivedWhilePaused = 0;
      heldText.textContent = "";
    } else {
      heldText.textContent = "0 arrived while paused";
    }
  });
  clearButton.addEventListener("click", () => {
    for (const row of rows) row.tr.remove();
    rows.length = 0;
    shown.clear();
    held = [];
    missed = 0;
    missedText.textContent = "";
    if (paused) heldText.textContent = "0 arrived while paused";
    empty.hidden = false;
  });
}
