import assert from "node:assert/strict";
import { test } from "node:test";

import { copyText } from "../src/copy.js";
import { windowQuery } from "../src/timewindow.js";

test("choosing a relative window keeps the other parameters and drops an absolute range", () => {
  const form = [
    ["broker", "main"],
    ["from", "2026-11-27T10:00:00+00:00"],
    ["to", "2026-11-27T11:00:00+00:00"],
    ["last", "15m"],
  ];
  assert.equal(windowQuery(form), "broker=main&last=15m");
});

test("copied paths become full links and other text is copied as it is", () => {
  const page = "http://127.0.0.1:8000/traces/?last=1h";
  assert.equal(copyText("/traces/abc/", page), "http://127.0.0.1:8000/traces/abc/");
  assert.equal(copyText("?last=6h", page), "http://127.0.0.1:8000/traces/?last=6h");
  assert.equal(copyText("4bf92f3577b34da6a3ce929d0e0e4736", page), "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(copyText("", page), page);
});
