import assert from "node:assert/strict";
import { test } from "node:test";

import { fileSize, holdNewest, insertionIndex, nextWait, rateText, socketUrl } from "../src/livecore.js";

test("the live socket is on the page's own origin, wss behind https", () => {
  assert.equal(socketUrl({ protocol: "http:", host: "127.0.0.1:8000" }), "ws://127.0.0.1:8000/ws/events/");
  assert.equal(socketUrl({ protocol: "https:", host: "scope.example" }), "wss://scope.example/ws/events/");
});

test("reconnect waits grow from half a second and stop growing at the maximum", () => {
  assert.equal(nextWait(500), 1000);
  assert.equal(nextWait(8000), 15000);
  assert.equal(nextWait(15000), 15000);
  assert.equal(nextWait(0), 500);
});

test("rows go newest first: later received above, ties broken by id, backfilled ones further down", () => {
  const rows = [{ rx: 50, id: 9 }, { rx: 40, id: 8 }, { rx: 40, id: 6 }, { rx: 10, id: 2 }];
  assert.equal(insertionIndex(rows, 60, 10), 0);
  assert.equal(insertionIndex(rows, 40, 7), 2);
  assert.equal(insertionIndex(rows, 20, 3), 3);
  assert.equal(insertionIndex(rows, 5, 1), 4);
  assert.equal(insertionIndex([], 5, 1), 0);
});

test("the rate line says how much is shown when the server samples", () => {
  assert.equal(rateText({ matching: 5300, shown: 200, skipped: 5100, seconds: 1 }), "showing 200/s of 5,300/s matching");
  assert.equal(rateText({ matching: 84, shown: 84, skipped: 0, seconds: 2 }), "42/s matching");
});

test("sizes read like Django's filesizeformat", () => {
  assert.equal(fileSize(1), "1\u00a0byte");
  assert.equal(fileSize(512), "512\u00a0bytes");
  assert.equal(fileSize(1536), "1.5\u00a0KB");
  assert.equal(fileSize(3 * 1024 * 1024), "3.0\u00a0MB");
});

test("a paused page holds at most the newest rows it may show", () => {
  assert.deepEqual(holdNewest([1, 2], [3, 4, 5], 3), [3, 4, 5]);
  assert.deepEqual(holdNewest([], [1], 3), [1]);
});
