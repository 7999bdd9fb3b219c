// <time datetime="ISO">: the title shows the absolute local time; with class
// "relative" the text becomes "3 min ago", kept fresh every 30 s.

const REFRESH_MS = 30_000;
const MINUTE = 60;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** A Date from an ISO 8601 text, or null. */
export function parseTime(text) {
  const normalized = (text || "")
    .trim()
    .replace(/^(\d{4}-\d\d-\d\d) (?=\d)/, "$1T")
    // Django's "c" format carries microseconds; not every engine parses more than milliseconds.
    .replace(/(\.\d{3})\d+/, "$1");
  const millis = Date.parse(normalized);
  return Number.isNaN(millis) ? null : new Date(millis);
}

function pad(number) {
  return String(number).padStart(2, "0");
}

/** "2026-11-27 19:30:12 UTC+01:00" in the browser's time zone. */
export function localTimestamp(date) {
  const offset = -date.getTimezoneOffset();
  const sign = offset < 0 ? "-" : "+";
  const zone = `UTC${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)}`;
  const day = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
  const time = `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `${day} ${time} ${zone}`;
}

/** "just now", "42 s ago", "3 min ago", "5 h ago", "2 d ago", "in 4 min"; old dates as the day. */
export function relativeTime(date, now) {
  const seconds = Math.round((now.getTime() - date.getTime()) / 1000);
  const size = Math.abs(seconds);
  if (size < 10) return "just now";
  let amount;
  if (size < MINUTE) amount = `${size} s`;
  else if (size < HOUR) amount = `${Math.floor(size / MINUTE)} min`;
  else if (size < DAY) amount = `${Math.floor(size / HOUR)} h`;
  else if (size < 60 * DAY) amount = `${Math.floor(size / DAY)} d`;
  else return localTimestamp(date).slice(0, 10);
  return seconds > 0 ? `${amount} ago` : `in ${amount}`;
}

/** Fill titles and relative texts under `root`; live views call it for rows they add. */
export function updateTimes(root, now = new Date()) {
  for (const element of root.querySelectorAll("time[datetime]")) {
    const date = parseTime(element.getAttribute("datetime"));
    if (!date) continue;
    if (!element.hasAttribute("title")) element.title = localTimestamp(date);
    if (element.classList.contains("relative")) element.textContent = relativeTime(date, now);
  }
}

export function initRelativeTimes(root) {
  updateTimes(root);
  setInterval(() => updateTimes(root), REFRESH_MS);
}
