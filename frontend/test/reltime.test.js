import assert from "node:assert/strict";
import { test } from "node:test";

import { parseTime, relativeTime } from "../src/reltime.js";

const now = new Date("2026-11-27T12:00:00Z");
const before = (seconds) => new Date(now.getTime() - seconds * 1000);

test("relative times read as seconds, minutes, hours and days ago", () => {
  assert.equal(relativeTime(before(3), now), "just now");
  assert.equal(relativeTime(before(42), now), "42 s ago");
  assert.equal(relativeTime(before(3 * 60 + 59), now), "3 min ago");
  assert.equal(relativeTime(before(5 * 3600), now), "5 h ago");
  assert.equal(relativeTime(before(2 * 86400), now), "2 d ago");
});

test("future times read as 'in'", () => {
  assert.equal(relativeTime(before(-4 * 60), now), "in 4 min");
});

test("times older than two months show their day instead", () => {
  assert.match(relativeTime(before(90 * 86400), now), /^2026-08-2\d$/);
});

test("Django's ISO format with microseconds and an offset parses to the right instant", () => {
  const parsed = parseTime("2026-11-27T13:00:00.123456+01:00");
  assert.equal(parsed.toISOString(), "2026-11-27T12:00:00.123Z");
});

test("a space between day and time is accepted and nonsense gives null", () => {
  assert.equal(parseTime("2026-11-27 12:00:00Z").toISOString(), "2026-11-27T12:00:00.000Z");
  assert.equal(parseTime("yesterday-ish"), null);
  assert.equal(parseTime(""), null);
});
