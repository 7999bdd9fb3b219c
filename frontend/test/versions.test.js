import assert from "node:assert/strict";
import { test } from "node:test";

import { diffQuery, shareData } from "../src/versions.js";

test("share data lines up each version's share with the times, gaps as null", () => {
  const data = shareData({ t: [1, 2], series: [{ share: [60, 50] }, { share: [40] }] });
  assert.deepEqual(data, [[1, 2], [60, 50], [40, null]]);
});

test("the diff query keeps the window and replaces the two versions", () => {
  assert.equal(diffQuery("?last=1h&left=1&right=3", "2", "3"), "last=1h&left=2&right=3");
});
