import assert from "node:assert/strict";
import { test } from "node:test";

import { parseValues, sparklinePoints } from "../src/sparkline.js";

test("values parse from commas or spaces and skip what is not a number", () => {
  assert.deepEqual(parseValues("1, 2,x 3  4.5"), [1, 2, 3, 4.5]);
  assert.deepEqual(parseValues(""), []);
});

test("zero is drawn at the bottom and the highest value at the top", () => {
  assert.equal(sparklinePoints([0, 10, 5], 100, 20, 0), "0,20 50,0 100,10");
});

test("the baseline is zero, not the lowest value: a small wiggle on a big count stays small", () => {
  assert.equal(sparklinePoints([90, 100], 100, 20, 0), "0,2 100,0");
});

test("a flat or single-value series is a level line at its height; all zeros lie on the bottom", () => {
  assert.equal(sparklinePoints([7, 7], 100, 20, 0), "0,0 100,0");
  assert.equal(sparklinePoints([3], 100, 20, 0), "0,0 100,0");
  assert.equal(sparklinePoints([0, 0], 100, 20, 0), "0,20 100,20");
  assert.equal(sparklinePoints([], 100, 20), "");
});
