/**
 * The DNS codec: round trips, compressed names, and malformed messages.
 */
import assert from "node:assert/strict";
import {
  aRecord,
  aRecordAddr,
  decodeDnsMessage,
  DnsFormatError,
  dnsQuery,
  dnsResponse,
  DnsType,
  encodeDnsMessage,
  Rcode,
} from "./dns_codec.ts";

Deno.test("a query encodes as a stub resolver sends it and decodes back", () => {
  const bytes = encodeDnsMessage(dnsQuery(0x1234, "Web.Example."));
  // id, flags RD, 1 question, then 3 "web" 7 "example" 0, type A, class IN.
  assert.deepEqual([...bytes.subarray(0, 12)], [0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
  assert.deepEqual(
    [...bytes.subarray(12)],
    [3, 119, 101, 98, 7, 101, 120, 97, 109, 112, 108, 101, 0, 0, 1, 0, 1],
  );
  const back = decodeDnsMessage(bytes);
  assert.equal(back.id, 0x1234);
  assert.equal(back.rd, true);
  assert.equal(back.qr, false);
  assert.deepEqual(back.questions, [{ name: "web.example", type: DnsType.A, class: 1 }]);
});

Deno.test("a response with A records points at the question's name and decodes", () => {
  const query = dnsQuery(7, "tasks.api");
  const response = dnsResponse(query, Rcode.NOERROR, [
    aRecord("tasks.api", "127.1.0.5", 5),
    aRecord("tasks.api", "127.1.0.6", 5),
  ]);
  const bytes = encodeDnsMessage(response);
  // The first answer's name is the pointer 0xC00C.
  const answerAt = 12 + (1 + 5 + 1 + 3 + 1) + 4;
  assert.deepEqual([...bytes.subarray(answerAt, answerAt + 2)], [0xc0, 0x0c]);
  const back = decodeDnsMessage(bytes);
  assert.equal(back.qr, true);
  assert.equal(back.aa, true);
  assert.equal(back.ra, true);
  assert.equal(back.rcode, Rcode.NOERROR);
  assert.deepEqual(back.answers.map(aRecordAddr), ["127.1.0.5", "127.1.0.6"]);
  assert.deepEqual(back.answers.map((a) => [a.name, a.ttl, a.type]), [
    ["tasks.api", 5, DnsType.A],
    ["tasks.api", 5, DnsType.A],
  ]);
});

Deno.test("malformed messages are refused with a reason", () => {
  assert.throws(() => decodeDnsMessage(new Uint8Array(5)), DnsFormatError);
  // One question whose label runs past the end.
  const cut = new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 97, 98]);
  assert.throws(() => decodeDnsMessage(cut), /past the end/);
  // A name that points at itself.
  const loop = new Uint8Array([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
  assert.throws(() => decodeDnsMessage(loop), /loop/);
  assert.throws(() => encodeDnsMessage(dnsQuery(1, "a..b")), /invalid label/);
  assert.throws(() => aRecord("x", "300.1.1.1", 1), /not an IPv4/);
});
