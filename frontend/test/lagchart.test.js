import assert from "node:assert/strict";
import { test } from "node:test";

import { chartData, formatAge } from "../src/lagchart.js";

test("ages read as seconds, minutes, hours and days", () => {
  assert.equal(formatAge(null), "—");
  assert.equal(formatAge(45), "45 s");
  assert.equal(formatAge(600), "10 min");
  assert.equal(formatAge(5400), "90 min");
  assert.equal(formatAge(9000), "2.5 h");
  assert.equal(formatAge(3 * 86400), "3.0 d");
});

test("chart data keeps the gaps of samples without figures", () => {
  const data = chartData({ t: [1, 2, 3], lag: [5, null, 0], oldest_age: [10, null] });
  assert.deepEqual(data, [[1, 2, 3], [5, null, 0], [10, null, null]]);
});
