import assert from "node:assert/strict";
import * as net from "node:net";
import type * as tls from "node:tls";
import "reflect-metadata";
import { createNodeCSR, createRootCA, issueNodeCertificate, type RootCA } from "../../node/ca.ts";
import {
  decodeMessage,
  decodeMessages,
  encodeMessages,
  parseAddress,
  PROTOCOL_VERSION,
  Transport,
  type TransportHandlers,
  type TransportOptions,
} from "./transport.ts";
import type { NodeId, PeerMessage } from "./types.ts";
import { Packr } from "msgpackr";

/** A transport whose handler calls are recorded. */
class Recorder implements TransportHandlers {
  messages: PeerMessage[] = [];
  unreachable: NodeId[] = [];
  snapshots: [NodeId, string][] = [];
  peerStatus: [NodeId, boolean][] = [];
  #waiters: (() => void)[] = [];
  onMessage(m: PeerMessage): void {
    this.messages.push(m);
    this.#wake();
  }
  onUnreachable(id: NodeId): void {
    this.unreachable.push(id);
    this.#wake();
  }
  onSnapshotStatus(id: NodeId, status: "finish" | "failure"): void {
    this.snapshots.push([id, status]);
    this.#wake();
  }
  onPeerStatus(id: NodeId, up: boolean): void {
    this.peerStatus.push([id, up]);
    this.#wake();
  }
  async until(what: string, check: () => boolean, ms = 5_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, 20);
        const waiters = this.#waiters;
        function done() {
          clearTimeout(timer);
          const i = waiters.indexOf(done);
          if (i >= 0) waiters.splice(i, 1);
          resolve();
        }
        waiters.push(done);
      });
    }
  }
  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }
}

async function pair(
  extra: Partial<TransportOptions> = {},
  extra2: Partial<TransportOptions> = extra,
): Promise<{ a: Transport; b: Transport; ra: Recorder; rb: Recorder; close(): Promise<void> }> {
  const ra = new Recorder();
  const rb = new Recorder();
  const a = new Transport({ id: 1, clusterId: "c1", ...extra }, ra);
  const b = new Transport({ id: 2, clusterId: "c1", ...extra2 }, rb);
  await a.listen();
  await b.listen();
  a.setPeer(2, b.address);
  b.setPeer(1, a.address);
  return { a, b, ra, rb, close: async () => void await Promise.all([a.close(), b.close()]) };
}

const bytes = (...b: number[]) => new Uint8Array(b);

/** One message of every peer type, from 1 to 2. */
const everyMessage: PeerMessage[] = [
  {
    type: "MsgApp",
    from: 1,
    to: 2,
    term: 3,
    index: 4,
    logTerm: 2,
    commit: 4,
    entries: [
      { index: 5, term: 3, type: "normal", data: bytes(1, 2, 3) },
      { index: 6, term: 3, type: "confChange", data: bytes(9) },
      { index: 7, term: 3, type: "normal", data: bytes() },
    ],
  },
  {
    type: "MsgAppResp",
    from: 1,
    to: 2,
    term: 3,
    index: 7,
    reject: true,
    rejectHint: 5,
    logTerm: 2,
  },
  { type: "MsgVote", from: 1, to: 2, term: 4, index: 7, logTerm: 3 },
  { type: "MsgVote", from: 1, to: 2, term: 4, index: 7, logTerm: 3, transfer: true },
  { type: "MsgVoteResp", from: 1, to: 2, term: 4, reject: false },
  { type: "MsgPreVote", from: 1, to: 2, term: 5, index: 7, logTerm: 3 },
  { type: "MsgPreVoteResp", from: 1, to: 2, term: 5, reject: true },
  { type: "MsgHeartbeat", from: 1, to: 2, term: 4, commit: 6 },
  { type: "MsgHeartbeat", from: 1, to: 2, term: 4, commit: 6, context: bytes(7, 7) },
  { type: "MsgHeartbeatResp", from: 1, to: 2, term: 4 },
  { type: "MsgHeartbeatResp", from: 1, to: 2, term: 4, context: bytes(7, 7) },
  { type: "MsgTimeoutNow", from: 1, to: 2, term: 4 },
  { type: "MsgTransferLeader", from: 3, to: 2, term: 0 },
  { type: "MsgReadIndex", from: 1, to: 2, term: 0, context: bytes(1) },
  { type: "MsgReadIndexResp", from: 1, to: 2, term: 4, index: 6, context: bytes(1) },
];

Deno.test("transport wire format: every message type round-trips exactly", () => {
  const snap: PeerMessage = {
    type: "MsgSnap",
    from: 1,
    to: 2,
    term: 4,
    snapshot: {
      metadata: { index: 9, term: 3, confState: { voters: [1, 2], learners: [3] } },
      data: bytes(4, 5, 6),
    },
  };
  const all = [...everyMessage, snap];
  const decoded = decodeMessages(encodeMessages(all), 2);
  assert.deepEqual(decoded.map(plain), all.map(plain));
});

Deno.test("transport wire format: malformed messages are refused field by field", () => {
  const good = { type: "MsgVoteResp", from: 1, to: 2, term: 4, reject: false };
  assert.deepEqual(decodeMessage(good, 2), good);
  assert.deepEqual(decodeMessage({ ...good, extra: "dropped" }, 2), good);
  const bad: [unknown, RegExp][] = [
    [null, /not a map/],
    [{ ...good, type: "MsgHup" }, /unknown message type MsgHup/],
    [{ ...good, to: 3 }, /for node 3 reached 2/],
    [{ ...good, term: -1 }, /term is not a whole number/],
    [{ ...good, reject: "no" }, /MsgVoteResp.reject is not a boolean/],
    [{
      type: "MsgApp",
      from: 1,
      to: 2,
      term: 1,
      index: 0,
      logTerm: 0,
      commit: 0,
      entries: [[1, 1, 7, bytes()]],
    }, /unknown entry type 7/],
    [{
      type: "MsgApp",
      from: 1,
      to: 2,
      term: 1,
      index: 0,
      logTerm: 0,
      commit: 0,
      entries: [[1, 1, 0, "x"]],
    }, /entry data is not bytes/],
    [{ type: "MsgReadIndex", from: 1, to: 2, term: 0 }, /MsgReadIndex.context is not bytes/],
    [{
      type: "MsgSnap",
      from: 1,
      to: 2,
      term: 1,
      snapshot: {
        metadata: { index: 1, term: 1, confState: { voters: [0], learners: [] } },
        data: bytes(),
      },
    }, /bad snapshot voters/],
  ];
  for (const [raw, why] of bad) assert.throws(() => decodeMessage(raw, 2), why);
});

Deno.test("transport: messages flow both ways over one connection, the lower id dialling", async () => {
  const { a, b, ra, rb, close } = await pair();
  try {
    await ra.until("connected", () => a.isConnected(2) && b.isConnected(1));
    a.send(everyMessage);
    const back = everyMessage.map((m) => ({ ...m, from: 2, to: 1 }) as PeerMessage);
    b.send(back);
    await rb.until("all messages at b", () => rb.messages.length === everyMessage.length);
    await ra.until("all messages at a", () => ra.messages.length === back.length);
    assert.deepEqual(rb.messages.map(plain), everyMessage.map(plain));
    assert.deepEqual(ra.messages.map(plain), back.map(plain));
    assert.deepEqual(ra.peerStatus, [[2, true]]);
    assert.deepEqual(rb.peerStatus, [[1, true]]);
  } finally {
    await close();
  }
});

Deno.test("transport: a MsgSnap is reported finished once written, failed when not connected", async () => {
  const { a, b, ra, rb, close } = await pair();
  try {
    const snap = (to: NodeId): PeerMessage => ({
      type: "MsgSnap",
      from: 1,
      to,
      term: 1,
      snapshot: {
        metadata: { index: 5, term: 1, confState: { voters: [1, 2], learners: [] } },
        data: new Uint8Array(3 * 1024 * 1024).fill(3),
      },
    });
    a.send([snap(3)]); // nobody there
    assert.deepEqual(ra.snapshots, [[3, "failure"]]);
    assert.deepEqual(ra.unreachable, [3]);
    await ra.until("connected", () => a.isConnected(2) && b.isConnected(1));
    a.send([snap(2)]);
    await ra.until("snapshot finished", () => ra.snapshots.length === 2);
    assert.deepEqual(ra.snapshots[1], [2, "finish"]);
    await rb.until("snapshot received", () => rb.messages.length === 1);
    const got = rb.messages[0];
    assert.equal(got.type, "MsgSnap");
    if (got.type === "MsgSnap") assert.equal(got.snapshot.data.byteLength, 3 * 1024 * 1024);
  } finally {
    await close();
  }
});

Deno.test("transport: the dialler reconnects after the other end restarts", async () => {
  const { a, b, ra, close } = await pair({ initialBackoffMs: 10, maxBackoffMs: 50 });
  const rb2 = new Recorder();
  let b2: Transport | undefined;
  try {
    await ra.until("connected", () => a.isConnected(2));
    const { port } = parseAddress(b.address);
    await b.close();
    await ra.until("disconnected", () => !a.isConnected(2));
    assert.deepEqual(ra.peerStatus.at(-1), [2, false]);
    assert.ok(ra.unreachable.includes(2));
    // Sending while disconnected drops and reports.
    ra.unreachable = [];
    a.send([everyMessage[4]]);
    assert.deepEqual(ra.unreachable, [2]);
    b2 = new Transport({ id: 2, clusterId: "c1", port }, rb2);
    await b2.listen();
    await ra.until("reconnected", () => a.isConnected(2), 5_000);
    a.send([everyMessage[4]]);
    await rb2.until("message after reconnect", () => rb2.messages.length === 1);
  } finally {
    await close();
    await b2?.close();
  }
});

Deno.test("transport: the handshake refuses another cluster and the wrong member", async () => {
  const ra = new Recorder();
  const rb = new Recorder();
  const rc = new Recorder();
  const a = new Transport({ id: 1, clusterId: "c1", initialBackoffMs: 10 }, ra);
  const b = new Transport({ id: 2, clusterId: "other", initialBackoffMs: 10 }, rb);
  const c = new Transport({ id: 3, clusterId: "c1", initialBackoffMs: 10 }, rc);
  try {
    await Promise.all([a.listen(), b.listen(), c.listen()]);
    a.setPeer(2, b.address); // another cluster
    a.setPeer(4, c.address); // node 3 listens there, not 4
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(a.isConnected(2), false);
    assert.equal(a.isConnected(4), false);
    assert.equal(b.isConnected(1), false);
    assert.equal(c.isConnected(1), false);
    assert.deepEqual(ra.peerStatus, []);
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
  }
});

Deno.test("transport: a removed member is told so, whichever end dials", async () => {
  // 1 was removed by 2 and 3: it dials them (lower id) and each answers "you were removed".
  const removedBy: NodeId[] = [];
  const r1 = Object.assign(new Recorder(), {
    onRemoved: (by: NodeId) => void removedBy.push(by),
  });
  const member = (id: NodeId) =>
    new Transport(
      { id, clusterId: "c1" },
      Object.assign(new Recorder(), {
        allowPeer: (peer: NodeId) => peer !== 1,
        isRemoved: (peer: NodeId) => peer === 1,
      }),
    );
  const one = new Transport({ id: 1, clusterId: "c1" }, r1);
  const two = member(2);
  const four = new Transport({ id: 4, clusterId: "c1" }, new Recorder());
  try {
    await Promise.all([one.listen(), two.listen(), four.listen()]);
    one.setPeer(2, two.address);
    await r1.until("1 told by 2", () => removedBy.includes(2));
    assert.equal(one.isConnected(2), false);
    // Once told, it dials no one any more.
    const told = removedBy.length;
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(removedBy.length, told);
    // 4 was removed too; 2 (whichever id is lower) dials it to say so, once.
    const removed4: NodeId[] = [];
    const r4 = Object.assign(new Recorder(), {
      onRemoved: (by: NodeId) => void removed4.push(by),
    });
    await four.close();
    const again = new Transport({
      id: 4,
      clusterId: "c1",
      port: Number(parseAddress(four.address).port),
    }, r4);
    await again.listen();
    try {
      two.tellRemoved(4, again.address);
      two.tellRemoved(4, again.address);
      await r4.until("4 told by 2", () => removed4.length > 0);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual(removed4, [2]);
    } finally {
      await again.close();
    }
  } finally {
    await Promise.all([one.close(), two.close(), four.close()]);
  }
});

Deno.test("transport: bounded queues drop past the limit and report the peer unreachable", async () => {
  // A fake peer that handshakes, then never reads: the socket backs up, then the queue.
  const sockets: net.Socket[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    socket.once("data", () => {
      const hello = new Packr({ useRecords: false }).pack({
        hello: PROTOCOL_VERSION,
        cluster: "c1",
        from: 2,
        to: 1,
      });
      const frame = new Uint8Array(4 + hello.length);
      new DataView(frame.buffer).setUint32(0, hello.length);
      frame.set(hello, 4);
      socket.write(frame);
      socket.pause();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const ra = new Recorder();
  const a = new Transport({ id: 1, clusterId: "c1", maxQueueMessages: 100 }, ra);
  try {
    await a.listen();
    a.setPeer(2, `127.0.0.1:${(server.address() as net.AddressInfo).port}`);
    await ra.until("connected", () => a.isConnected(2));
    const big: PeerMessage = {
      ...everyMessage[0],
      entries: [{ index: 5, term: 3, type: "normal", data: new Uint8Array(256 * 1024) }],
    } as PeerMessage;
    for (let i = 0; i < 200 && ra.unreachable.length === 0; i++) {
      a.send(Array.from({ length: 10 }, () => big));
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    assert.deepEqual([...new Set(ra.unreachable)], [2]);
  } finally {
    await a.close();
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

Deno.test("transport: frames split anywhere, or several in one write, decode the same", async () => {
  const rb = new Recorder();
  const b = new Transport({ id: 2, clusterId: "c1" }, rb);
  await b.listen();
  const { port } = parseAddress(b.address);
  const socket = net.connect({ host: "127.0.0.1", port });
  try {
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    socket.setNoDelay(true);
    const hello = new Packr({ useRecords: false }).pack({
      hello: PROTOCOL_VERSION,
      cluster: "c1",
      from: 1,
      to: 2,
    });
    const helloFrame = new Uint8Array(4 + hello.length);
    new DataView(helloFrame.buffer).setUint32(0, hello.length);
    helloFrame.set(hello, 4);
    const frames = [
      encodeMessages(everyMessage.slice(0, 3)),
      encodeMessages([{
        ...everyMessage[0],
        entries: [{ index: 5, term: 3, type: "normal", data: new Uint8Array(200_000).fill(9) }],
      } as PeerMessage]),
      encodeMessages(everyMessage.slice(3)),
    ];
    const all = new Uint8Array([helloFrame, ...frames].reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of [helloFrame, ...frames]) {
      all.set(f, at);
      at += f.length;
    }
    // Pieces of 1, 2, 3... 7 bytes, then the rest in large pieces.
    let pos = 0;
    for (let size = 1; pos < all.length; size = size < 7 ? size + 1 : 65_536) {
      socket.write(all.subarray(pos, pos + size));
      pos += size;
      if (size < 7) await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await rb.until("every message", () => rb.messages.length === everyMessage.length + 1);
    const big = rb.messages[3];
    assert.equal(big.type, "MsgApp");
    if (big.type === "MsgApp") {
      assert.deepEqual(big.entries[0].data, new Uint8Array(200_000).fill(9));
    }
    assert.deepEqual(
      [...rb.messages.slice(0, 3), ...rb.messages.slice(4)].map(plain),
      everyMessage.map(plain),
    );
  } finally {
    socket.destroy();
    await b.close();
  }
});

Deno.test("transport: a malformed frame closes the connection", async () => {
  const { a, b, ra, rb, close } = await pair({ initialBackoffMs: 2_000 });
  try {
    await ra.until("connected", () => a.isConnected(2) && b.isConnected(1));
    // Sneak a message addressed to someone else through a's connection.
    a.send([{ ...everyMessage[4], to: 2 }]);
    await rb.until("good message", () => rb.messages.length === 1);
    const wrong = { ...everyMessage[4], to: 2 } as PeerMessage;
    (wrong as { term: number }).term = -5;
    a.send([wrong]);
    await rb.until("disconnected", () => !b.isConnected(1));
    assert.equal(rb.messages.length, 1);
  } finally {
    await close();
  }
});

Deno.test("transport: mutual TLS with node certificates; a peer from another CA is refused", async () => {
  const cluster = "7w1n0c3kxb5q1ylh4lpm1z2f8";
  const now = Date.now();
  const root = await createRootCA({ clusterId: cluster, now });
  const rogueCA = await createRootCA({ clusterId: cluster, now });
  const cert = async (ca: RootCA, nodeId: string) => {
    const csr = await createNodeCSR({ nodeId });
    const issued = await issueNodeCertificate({
      rootCA: ca,
      csrPem: csr.csrPem,
      nodeId,
      role: "manager",
      clusterId: cluster,
      now,
    });
    return { cert: issued.certPem, key: csr.keyPem };
  };
  const one = await cert(root, "m0000000000000000000000001");
  const two = await cert(root, "m0000000000000000000000002");
  const rogue = await cert(rogueCA, "m0000000000000000000000003");
  const claimed: [NodeId, string][] = [];
  const tlsFor = (id: { cert: string; key: string }) => ({
    ...id,
    ca: root.certPem,
    verifyPeer: ({ id: raftId, certificate }: { id: NodeId; certificate: tls.PeerCertificate }) => {
      claimed.push([raftId, String(certificate.subject.CN)]);
      return true as const;
    },
  });
  const { a, b, ra, rb, close } = await pair({ tls: tlsFor(one) }, { tls: tlsFor(two) });
  const rr = new Recorder();
  const r = new Transport(
    { id: 3, clusterId: "c1", tls: { ...rogue, ca: rogueCA.certPem }, initialBackoffMs: 20 },
    rr,
  );
  try {
    await ra.until("connected over TLS", () => a.isConnected(2) && b.isConnected(1), 10_000);
    a.send([everyMessage[4]]);
    await rb.until("message over TLS", () => rb.messages.length === 1);
    assert.deepEqual(claimed.sort(), [
      [1, "m0000000000000000000000001"],
      [2, "m0000000000000000000000002"],
    ]);
    // The rogue node (id 3) is dialled by both: neither accepts its certificate.
    await r.listen();
    a.setPeer(3, r.address);
    b.setPeer(3, r.address);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(a.isConnected(3), false);
    assert.equal(b.isConnected(3), false);
    assert.equal(r.isConnected(1), false);
  } finally {
    await close();
    await r.close();
  }
});

Deno.test("transport: addresses parse as host:port", () => {
  assert.deepEqual(parseAddress("127.0.0.1:4000"), { host: "127.0.0.1", port: 4000 });
  assert.deepEqual(parseAddress("[::1]:4000"), { host: "::1", port: 4000 });
  assert.deepEqual(parseAddress("node-a:1"), { host: "node-a", port: 1 });
  assert.throws(() => parseAddress("node-a"), RangeError);
  assert.throws(() => parseAddress("a:70000"), RangeError);
});

/** A message with its byte arrays as plain Uint8Arrays (decoded ones are Buffers). */
function plain(m: unknown): unknown {
  if (m instanceof Uint8Array) return [...m];
  if (Array.isArray(m)) return m.map(plain);
  if (typeof m === "object" && m !== null) {
    return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, plain(v)]));
  }
  return m;
}
