import assert from "node:assert/strict";
import {
  formatBytes,
  formatDuration,
  goFormatG,
  humanDuration,
  parseCpus,
  parseDuration,
  parseFloat64,
  parseInt64,
  parseMemory,
  parseUint,
} from "./units.ts";

const S = 1e9;

Deno.test("parseDuration reads Go durations into nanoseconds", () => {
  assert.equal(parseDuration("5s"), 5 * S);
  assert.equal(parseDuration("1m30s"), 90 * S);
  assert.equal(parseDuration("300ms"), 300e6);
  assert.equal(parseDuration("1.5h"), 5400 * S);
  assert.equal(parseDuration("2h45m10.5s"), (2 * 3600 + 45 * 60 + 10.5) * S);
  assert.equal(parseDuration("10us"), 10_000);
  assert.equal(parseDuration("10\u00b5s"), 10_000);
  assert.equal(parseDuration("7ns"), 7);
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("-1s"), -S);
  assert.equal(parseDuration(".5s"), 0.5 * S);
  assert.equal(parseDuration("2160h"), 2160 * 3600 * S);
});

Deno.test("parseDuration refuses what Go refuses, with Go's words", () => {
  assert.throws(() => parseDuration("5"), /^Error: time: missing unit in duration "5"$/);
  assert.throws(() => parseDuration("5x"), /time: unknown unit "x" in duration "5x"/);
  assert.throws(() => parseDuration(""), /time: invalid duration ""/);
  assert.throws(() => parseDuration("s"), /time: invalid duration "s"/);
  assert.throws(() => parseDuration("1.s5"), /time: missing unit in duration "1.s5"/);
});

Deno.test("formatDuration prints as Go's Duration.String", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(5 * S), "5s");
  assert.equal(formatDuration(90 * S), "1m30s");
  assert.equal(formatDuration(3600 * S), "1h0m0s");
  assert.equal(formatDuration(2160 * 3600 * S), "2160h0m0s");
  assert.equal(formatDuration(300e6), "300ms");
  assert.equal(formatDuration(1.5e6), "1.5ms");
  assert.equal(formatDuration(1500), "1.5\u00b5s");
  assert.equal(formatDuration(7), "7ns");
  assert.equal(formatDuration(10.5 * S), "10.5s");
  assert.equal(formatDuration(-S), "-1s");
  for (const d of ["1m30s", "300ms", "1h0m0s", "2h45m10.5s"]) {
    assert.equal(formatDuration(parseDuration(d)), d);
  }
});

Deno.test("parseMemory reads sizes as Docker's RAMInBytes (binary units)", () => {
  assert.equal(parseMemory("512M"), 512 * 1024 ** 2);
  assert.equal(parseMemory("512m"), 512 * 1024 ** 2);
  assert.equal(parseMemory("1.5g"), 1.5 * 1024 ** 3);
  assert.equal(parseMemory("100KiB"), 102_400);
  assert.equal(parseMemory("2GB"), 2 * 1024 ** 3);
  assert.equal(parseMemory("42"), 42);
  assert.equal(parseMemory("42b"), 42);
  assert.equal(parseMemory("1 k"), 1024);
  assert.throws(() => parseMemory("abc"), /invalid size: 'abc'/);
  assert.throws(() => parseMemory("5q"), /invalid suffix: 'q'/);
  assert.throws(() => parseMemory("5MiBs"), /invalid suffix: 'mibs'/);
  assert.throws(() => parseMemory("-5M"), /invalid size: '-5M'/);
});

Deno.test("formatBytes prints as Docker's BytesSize", () => {
  assert.equal(formatBytes(25_276_829_696), "23.54GiB");
  assert.equal(formatBytes(512 * 1024 ** 2), "512MiB");
  assert.equal(formatBytes(1024 ** 3), "1GiB");
  assert.equal(formatBytes(100), "100B");
  assert.equal(formatBytes(1536), "1.5KiB");
  assert.equal(goFormatG(123456, 4), "1.235e+05");
  assert.equal(goFormatG(0.5, 4), "0.5");
});

Deno.test("parseCpus reads CPU counts exactly, as Docker's NanoCPUs", () => {
  assert.equal(parseCpus("0.5"), 500_000_000);
  assert.equal(parseCpus("2"), 2_000_000_000);
  assert.equal(parseCpus(".25"), 250_000_000);
  assert.equal(parseCpus("1/4"), 250_000_000);
  assert.equal(parseCpus("1e-1"), 100_000_000);
  assert.throws(() => parseCpus("0.0000000001"), /value is too precise/);
  assert.throws(() => parseCpus("lots"), /failed to parse lots as a rational number/);
});

Deno.test("numbers parse as Go's strconv does, with its messages", () => {
  assert.equal(parseUint("3"), 3);
  assert.equal(parseUint("0x10"), 16);
  assert.equal(parseUint("0o17"), 15);
  assert.equal(parseUint("017"), 15);
  assert.throws(() => parseUint("-1"), /^Error: strconv.ParseUint: parsing "-1": invalid syntax$/);
  assert.throws(() => parseUint("1.5"), /invalid syntax/);
  assert.equal(parseInt64("-3"), -3);
  assert.throws(() => parseInt64("x"), /strconv.ParseInt: parsing "x": invalid syntax/);
  assert.equal(parseFloat64("0.25"), 0.25);
  assert.throws(() => parseFloat64("a"), /strconv.ParseFloat: parsing "a": invalid syntax/);
});

Deno.test("humanDuration reads as Docker's HumanDuration", () => {
  const s = 1000;
  const m = 60 * s;
  const h = 60 * m;
  assert.equal(humanDuration(500), "Less than a second");
  assert.equal(humanDuration(1 * s), "1 second");
  assert.equal(humanDuration(5 * s), "5 seconds");
  assert.equal(humanDuration(61 * s), "About a minute");
  assert.equal(humanDuration(17 * m), "17 minutes");
  assert.equal(humanDuration(61 * m), "About an hour");
  assert.equal(humanDuration(90 * m), "2 hours");
  assert.equal(humanDuration(47 * h), "47 hours");
  assert.equal(humanDuration(3 * 24 * h), "3 days");
  assert.equal(humanDuration(3 * 7 * 24 * h), "3 weeks");
  assert.equal(humanDuration(90 * 24 * h), "3 months");
  assert.equal(humanDuration(3 * 365 * 24 * h), "3 years");
});
