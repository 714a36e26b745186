import assert from "node:assert/strict";
import fc from "fast-check";
import { crc32c } from "./crc32c.ts";

/** Bit-at-a-time reference: slow, obviously right. */
function reference(bytes: Uint8Array, seed = 0): number {
  let crc = ~seed >>> 0;
  for (const b of bytes) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}

Deno.test("crc32c: the standard check value of '123456789' is 0xE3069283", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xe3069283);
});

Deno.test("crc32c: RFC 3720 (iSCSI) test vectors", () => {
  const ascending = Uint8Array.from({ length: 32 }, (_, i) => i);
  const descending = Uint8Array.from({ length: 32 }, (_, i) => 31 - i);
  assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
  assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
  assert.equal(crc32c(ascending), 0x46dd794e);
  assert.equal(crc32c(descending), 0x113fdb5c);
});

Deno.test("crc32c: empty input is 0 and results are unsigned", () => {
  assert.equal(crc32c(new Uint8Array(0)), 0);
  const v = crc32c(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
  assert.ok(v >= 0 && v <= 0xffffffff && Number.isInteger(v));
});

Deno.test("crc32c: matches a bitwise reference for any bytes, offset and length", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), (bytes, skip) => {
      // A subarray at an odd offset checks the loop does not assume alignment.
      const view = bytes.subarray(Math.min(skip, bytes.length));
      assert.equal(crc32c(view), reference(view));
    }),
    { numRuns: 500 },
  );
});

Deno.test("crc32c: a seed continues a checksum across pieces", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), (a, b) => {
      const whole = new Uint8Array(a.length + b.length);
      whole.set(a);
      whole.set(b, a.length);
      assert.equal(crc32c(b, crc32c(a)), crc32c(whole));
    }),
  );
});

Deno.test("crc32c: any single flipped bit changes the checksum", () => {
  const bytes = new TextEncoder().encode("a batch of events, as stored in the log");
  const good = crc32c(bytes);
  for (let i = 0; i < bytes.length * 8; i++) {
    const copy = bytes.slice();
    copy[i >> 3] ^= 1 << (i & 7);
    assert.notEqual(crc32c(copy), good, `bit ${i}`);
  }
});
