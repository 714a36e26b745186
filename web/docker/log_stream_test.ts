import assert from "node:assert/strict";
import {
  demultiplex,
  encodeFrame,
  formatDetails,
  parseDetails,
  queryEscape,
  rfc3339NanoFixed,
  StreamKind,
} from "./log_stream.ts";
import { parseLogQuery, parseLogTime } from "./log_routes.ts";
import { ApiError } from "../http.ts";

Deno.test("log stream: frames carry Docker's 8-byte header", () => {
  const frame = encodeFrame(StreamKind.stderr, "héllo\n");
  assert.deepEqual([...frame.subarray(0, 8)], [2, 0, 0, 0, 0, 0, 0, 7]);
  assert.equal(new TextDecoder().decode(frame.subarray(8)), "héllo\n");
});

Deno.test("log stream: demultiplex splits frames across any chunk boundaries", async () => {
  const bytes = new Uint8Array([
    ...encodeFrame(StreamKind.stdout, "one\n"),
    ...encodeFrame(StreamKind.stderr, "two\n"),
    ...encodeFrame(StreamKind.systemerr, "bad\n"),
  ]);
  async function* chunks(size: number) {
    for (let i = 0; i < bytes.length; i += size) yield bytes.slice(i, i + size);
  }
  for (const size of [1, 3, 8, 13, bytes.length]) {
    const frames = [];
    for await (const f of demultiplex(chunks(size))) {
      frames.push([f.kind, new TextDecoder().decode(f.payload)]);
    }
    assert.deepEqual(frames, [[1, "one\n"], [2, "two\n"], [3, "bad\n"]]);
  }
  async function* cut() {
    yield bytes.slice(0, 10);
  }
  await assert.rejects(async () => {
    for await (const _ of demultiplex(cut())) { /* read */ }
  }, /ended in the middle of a frame/);
  async function* notMuxed() {
    yield new TextEncoder().encode("plain text, not frames");
  }
  await assert.rejects(async () => {
    for await (const _ of demultiplex(notMuxed())) { /* read */ }
  }, /unexpected stream id 112/);
});

Deno.test("log stream: details are sorted, query-escaped key=value pairs", () => {
  const text = formatDetails({ "b.key": "x y", "a.key": "1,2=3" });
  assert.equal(text, "a.key=1%2C2%3D3,b.key=x+y");
  assert.deepEqual(parseDetails(text), { "a.key": "1,2=3", "b.key": "x y" });
  assert.equal(queryEscape("a/b*c"), "a%2Fb%2Ac");
  assert.throws(() => parseDetails("novalue"), /not key=value/);
});

Deno.test("log stream: timestamps in Go's RFC3339NanoFixed", () => {
  assert.equal(
    rfc3339NanoFixed(Date.UTC(2025, 0, 2, 3, 4, 5, 678)),
    "2025-01-02T03:04:05.678000000Z",
  );
});

Deno.test("logs query: Docker's parameters, and 400s naming the bad one", () => {
  const q = parseLogQuery(
    new URL(
      "http://x/services/a/logs?stdout=1&stderr=0&tail=5&since=1700000000.25&timestamps=true&follow=1&details=1",
    ),
  );
  assert.deepEqual(q, {
    stdout: true,
    stderr: false,
    follow: true,
    timestamps: true,
    details: true,
    tail: 5,
    since: 1_700_000_000_250,
    until: undefined,
  });
  assert.equal(parseLogQuery(new URL("http://x/?stdout=1&tail=all")).tail, undefined);
  assert.equal(parseLogTime("until", "2025-01-02T03:04:05Z"), Date.UTC(2025, 0, 2, 3, 4, 5));
  const bad = (url: string, re: RegExp) =>
    assert.throws(
      () => parseLogQuery(new URL(url)),
      (e: ApiError) => e.status === 400 && re.test(e.message),
    );
  bad("http://x/?stdout=0", /you must choose at least one stream/);
  bad(
    "http://x/?stdout=1&tail=lots",
    /query parameter tail must be a number of lines or "all", got "lots"/,
  );
  bad("http://x/?stdout=1&since=yesterday", /query parameter since must be a Unix timestamp/);
});
