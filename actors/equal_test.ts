import assert from "node:assert/strict";
import { equalData } from "./equal.ts";

Deno.test("equalData compares plain data regardless of key order", () => {
  assert.ok(equalData({ a: 1, b: [1, { c: "x" }] }, { b: [1, { c: "x" }], a: 1 }));
  assert.ok(equalData({ a: 1, u: undefined }, { a: 1 }));
  assert.ok(!equalData({ a: 1 }, { a: 2 }));
  assert.ok(!equalData([1, 2], [2, 1]));
  assert.ok(!equalData({ a: [] }, { a: {} }));
  assert.ok(!equalData({ a: 1 }, { a: 1, b: 0 }));
  assert.ok(!equalData(null, {}));
  assert.ok(equalData(NaN, NaN));
});
