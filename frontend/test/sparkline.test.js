import assert from "node:assert/strict";
import { test } from "node:test";

import { parseValues, sparklinePoints } from "../src/sparkline.js";

test("values parse from commas or spaces and skip what is not a number", () => {
  assert.deepEqual(parseValues("1, 2,x 3  4.5"), [1, 2, 3, 4.5]);
  assert.deepEqual(parseValues(""), []);
});

test("the highest value is drawn at the top and the lowest at the bottom", () => {
  assert.equal(sparklinePoints([0, 10, 5], 100, 20, 0), "0,20 50,0 100,10");
});

test("a flat or single-value series is a level line through the middle", () => {
  assert.equal(sparklinePoints([7, 7], 100, 20, 0), "0,10 100,10");
  assert.equal(sparklinePoints([3], 100, 20, 0), "0,10 100,10");
  assert.equal(sparklinePoints([], 100, 20), "");
});
