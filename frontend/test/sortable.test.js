import assert from "node:assert/strict";
import { test } from "node:test";

import { compareKeys, sortOrder } from "../src/sortable.js";

test("numbers compare as numbers, thousands separators included", () => {
  assert.ok(compareKeys("9", "10") < 0);
  assert.ok(compareKeys("1,200", "980") > 0);
  assert.ok(compareKeys("-3.5", "2e1") < 0);
});

test("text compares naturally, so orders.v2 comes before orders.v10", () => {
  assert.ok(compareKeys("orders.v2", "orders.v10") < 0);
  assert.ok(compareKeys("Billing", "accounts") > 0);
});

test("blank cells stay last in both directions and ties keep their order", () => {
  const keys = ["5", "", "12", "5", "1"];
  assert.deepEqual(sortOrder(keys, false), [4, 0, 3, 2, 1]);
  assert.deepEqual(sortOrder(keys, true), [2, 0, 3, 4, 1]);
});
