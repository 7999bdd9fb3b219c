// Pure helpers of the live tail and the live summaries (tested by node --test).

/** The live socket's URL on this page's own origin (the CSP allows connect-src 'self'). */
export function socketUrl(location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws/events/`;
}

/** Reconnect waits: 0.5 s, 1 s, 2 s ... up to `max` ms. */
export function nextWait(wait, max = 15_000) {
  return Math.min(max, Math.max(500, wait * 2));
}

/**
 * Where a row goes in a newest-first list of {rx, id}: after every row received later
 * (or at the same time with a higher id). Binary search: rows mostly arrive in order,
 * backfilled ones land further down.
 */
export function insertionIndex(rows, rx, id) {
  let low = 0;
  let high = rows.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    const row = rows[middle];
    if (row.rx > rx || (row.rx === rx && row.id > id)) low = middle + 1;
    else high = middle;
  }
  return low;
}

function perSecond(count, seconds) {
  return seconds > 0 ? count / seconds : 0;
}

/** "1,234" with thousands separators, whole numbers. */
export function formatCount(value) {
  return Math.round(value).toLocaleString("en-US");
}

/** The rate line: "42/s", or "showing 200/s of 5,300/s matching" when sampled. */
export function rateText(stats) {
  const matching = perSecond(stats.matching, stats.seconds);
  const shown = perSecond(stats.shown, stats.seconds);
  if (stats.skipped > 0) {
    return `showing ${formatCount(shown)}/s of ${formatCount(matching)}/s matching`;
  }
  return `${formatCount(matching)}/s matching`;
}

/** Django's filesizeformat: "12 bytes", "1.5 KB", "3.0 MB". */
export function fileSize(bytes) {
  const units = ["KB", "MB", "GB", "TB", "PB"];
  if (bytes < 1024) return `${bytes}\u00a0byte${bytes === 1 ? "" : "s"}`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)}\u00a0${units[unit]}`;
}

/** How many events the page may hold back while paused, dropping the oldest: a bounded list. */
export function holdNewest(held, events, max) {
  const all = held.concat(events);
  return all.length > max ? all.slice(all.length - max) : all;
}
