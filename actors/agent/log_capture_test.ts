import assert from "node:assert/strict";
import { join } from "node:path";
import { collect, within } from "./_executor_contract.ts";
import {
  formatLogLine,
  LogCapture,
  type LogLine,
  MAX_LINE_CHARS,
  parseStoredLine,
  readLog,
} from "./log_capture.ts";

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-log-" });
  try {
    await within(body(dir), 10_000, "test body");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A stream of the given chunks (strings are UTF-8 encoded). */
function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(
    chunks.map((chunk) => typeof chunk === "string" ? new TextEncoder().encode(chunk) : chunk),
  );
}

const texts = (lines: LogLine[]) => lines.map((line) => line.text);

Deno.test("LogCapture splits a stream into lines, whatever the chunks, and stamps each", async () => {
  await withDir(async (dir) => {
    let clock = 1_700_000_000_000;
    const log = await LogCapture.open(join(dir, "logs", "output.log"), { now: () => clock++ });
    // "é" split across chunks; a blank line; a last line without a newline.
    const e = new TextEncoder().encode("é");
    await log.capture(
      "stdout",
      streamOf("hel", "lo\nwor", "ld\n\ncaf", e.slice(0, 1), e.slice(1), "\nend"),
    );
    await log.close();
    const lines = await collect(log.read());
    assert.deepEqual(texts(lines), ["hello", "world", "", "café", "end"]);
    assert.ok(lines.every((line) => line.stream === "stdout"));
    // Each line has the time it was complete (its newline, or the end of the stream, arrived).
    assert.deepEqual(lines.map((l) => l.time - 1_700_000_000_000), [1, 2, 2, 5, 6]);
    const stored = await Deno.readTextFile(join(dir, "logs", "output.log"));
    assert.equal(stored.split("\n")[0], "2023-11-14T22:13:20.001Z stdout hello");
    assert.equal((await Deno.stat(join(dir, "logs", "output.log"))).mode! & 0o777, 0o600);
  });
});

Deno.test("LogCapture cuts very long lines", async () => {
  await withDir(async (dir) => {
    const log = await LogCapture.open(join(dir, "output.log"));
    const long = "x".repeat(MAX_LINE_CHARS * 2 + 10);
    await log.capture("stderr", streamOf(long.slice(0, 5000), long.slice(5000) + "\n"));
    await log.close();
    assert.deepEqual((await collect(log.read())).map((l) => l.text.length), [
      MAX_LINE_CHARS,
      MAX_LINE_CHARS,
      10,
    ]);
  });
});

Deno.test("LogCapture rotates by size, keeps maxFiles files, and reads across them", async () => {
  await withDir(async (dir) => {
    const path = join(dir, "output.log");
    const log = await LogCapture.open(path, { maxBytes: 100, maxFiles: 3, now: () => 0 });
    // Each stored line is "1970-01-01T00:00:00.000Z stdout line NN\n": 41 bytes, 2 per file.
    for (let i = 10; i < 20; i++) {
      await log.append([{ time: 0, stream: "stdout", text: `line ${i}` }]);
    }
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), [
      "output.log",
      "output.log.1",
      "output.log.2",
    ]);
    for (const name of ["output.log", "output.log.1", "output.log.2"]) {
      assert.ok(Deno.statSync(join(dir, name)).size <= 100);
    }
    assert.deepEqual(texts(await collect(log.read())), [
      "line 14",
      "line 15",
      "line 16",
      "line 17",
      "line 18",
      "line 19",
    ]);
    assert.deepEqual(texts(await collect(log.read({ tail: 3 }))), [
      "line 17",
      "line 18",
      "line 19",
    ]);
    await log.close();
    // Read again without a writer (after an agent restart, say).
    assert.deepEqual(texts(await collect(readLog(path, { tail: 1 }))), ["line 19"]);
  });
});

Deno.test("LogCapture with one file starts it afresh when full", async () => {
  await withDir(async (dir) => {
    const log = await LogCapture.open(join(dir, "output.log"), { maxBytes: 100, maxFiles: 1 });
    for (let i = 10; i < 15; i++) {
      await log.append([{ time: 0, stream: "stdout", text: `line ${i}` }]);
    }
    await log.close();
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["output.log"]);
    assert.deepEqual(texts(await collect(log.read())), ["line 14"]);
  });
});

Deno.test("LogCapture read() filters by since", async () => {
  await withDir(async (dir) => {
    const log = await LogCapture.open(join(dir, "output.log"));
    await log.append([
      { time: 1_000, stream: "stdout", text: "old" },
      { time: 2_000, stream: "stderr", text: "new" },
    ]);
    assert.deepEqual(texts(await collect(log.read({ since: 1_500 }))), ["new"]);
    await log.close();
  });
});

Deno.test("LogCapture follow sees every line once, across rotations, and ends on close", async () => {
  await withDir(async (dir) => {
    const log = await LogCapture.open(join(dir, "output.log"), { maxBytes: 200, maxFiles: 2 });
    await log.append([{ time: 0, stream: "stdout", text: "before 0" }]);
    const following = collect(log.read({ follow: true, tail: 1 }));
    const writes = [];
    for (let i = 1; i <= 20; i++) {
      writes.push(log.append([{ time: 0, stream: "stdout", text: `after ${i}` }]));
    }
    await Promise.all(writes);
    await log.close();
    const lines = texts(await following);
    // The follower joined before the first new write (reads start at their first next()).
    assert.deepEqual(lines, [
      "before 0",
      ...Array.from({ length: 20 }, (_, i) => `after ${i + 1}`),
    ]);
  });
});

Deno.test("LogCapture follow stops when its reader breaks off", async () => {
  await withDir(async (dir) => {
    const log = await LogCapture.open(join(dir, "output.log"));
    await log.append([{ time: 0, stream: "stdout", text: "a" }, {
      time: 0,
      stream: "stdout",
      text: "b",
    }]);
    for await (const line of log.read({ follow: true })) {
      assert.equal(line.text, "a");
      break;
    }
    await log.close();
  });
});

Deno.test("readLog of a missing log is empty; append after close is refused", async () => {
  await withDir(async (dir) => {
    assert.deepEqual(await collect(readLog(join(dir, "none.log"), { follow: true })), []);
    const log = await LogCapture.open(join(dir, "output.log"));
    await log.close();
    await log.close();
    assert.throws(() => log.append([]), /it is closed/);
  });
});

Deno.test("formatLogLine adds the timestamp only when asked; parseStoredLine refuses junk", () => {
  const line: LogLine = {
    time: Date.UTC(2025, 0, 2, 3, 4, 5, 678),
    stream: "stdout",
    text: "hi there",
  };
  assert.equal(formatLogLine(line), "hi there");
  assert.equal(formatLogLine(line, { timestamps: true }), "2025-01-02T03:04:05.678Z hi there");
  assert.deepEqual(parseStoredLine("2025-01-02T03:04:05.678Z stdout hi there"), line);
  assert.equal(parseStoredLine("garbage"), undefined);
  assert.equal(parseStoredLine("2025-01-02T03:04:05.678Z stdin x"), undefined);
  assert.equal(parseStoredLine("notatime stdout x"), undefined);
});
