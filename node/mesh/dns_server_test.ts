/**
 * The resolver over real UDP: swarm names answered from the map, scoped to the asker's
 * networks; other names forwarded to an upstream resolver and its answer relayed.
 */
import assert from "node:assert/strict";
import * as dgram from "node:dgram";
import {
  aRecord,
  aRecordAddr,
  decodeDnsMessage,
  type DnsMessage,
  dnsQuery,
  dnsResponse,
  DnsType,
  encodeDnsMessage,
  Rcode,
} from "./dns_codec.ts";
import { DnsServer, parseResolvConf } from "./dns_server.ts";
import { MeshIndex } from "./mesh_index.ts";
import type { MeshMap, MeshTask } from "./mesh_map.ts";

const MAP: MeshMap = {
  index: 1,
  nodes: [],
  networks: [{ id: "n1", name: "front", subnet: "127.1.0.0/16" }, {
    id: "n2",
    name: "back",
    subnet: "127.2.0.0/16",
  }],
  services: [
    {
      id: "s1",
      name: "shop_api",
      stack: "shop",
      mode: "vip",
      ports: [],
      vips: [{ networkId: "n1", addr: "127.1.0.2" }],
      networks: [{ id: "n1", aliases: ["backend"] }],
    },
    {
      id: "s2",
      name: "cache",
      stack: "",
      mode: "dnsrr",
      ports: [],
      vips: [],
      networks: [{ id: "n2", aliases: [] }],
    },
    {
      id: "s3",
      name: "shop_front",
      stack: "shop",
      mode: "vip",
      ports: [],
      vips: [{ networkId: "n1", addr: "127.1.0.3" }],
      networks: [{ id: "n1", aliases: [] }],
    },
  ],
  tasks: [
    {
      id: "a1",
      serviceId: "s1",
      slot: 1,
      nodeId: "x",
      serving: true,
      addresses: [{ networkId: "n1", addr: "127.1.0.10" }],
    },
    {
      id: "a2",
      serviceId: "s1",
      slot: 2,
      nodeId: "y",
      serving: true,
      addresses: [{ networkId: "n1", addr: "127.1.0.11" }],
    },
    {
      id: "a3",
      serviceId: "s1",
      slot: 3,
      nodeId: "y",
      serving: false,
      addresses: [{ networkId: "n1", addr: "127.1.0.12" }],
    },
    {
      id: "c1",
      serviceId: "s2",
      slot: 1,
      nodeId: "x",
      serving: true,
      addresses: [{ networkId: "n2", addr: "127.2.0.10" }],
    },
    {
      id: "f1",
      serviceId: "s3",
      slot: 1,
      nodeId: "x",
      serving: true,
      addresses: [{ networkId: "n1", addr: "127.1.0.20" }],
    },
  ],
};

Deno.test("names resolve like Docker's: SERVICE, the stack's short name, aliases, tasks.SERVICE, dnsrr", () => {
  const index = new MeshIndex(MAP);
  const front = index.tasksById.get("f1")!;
  assert.deepEqual(index.resolve("shop_api", front)?.addrs, ["127.1.0.2"]);
  assert.deepEqual(index.resolve("api", front)?.addrs, ["127.1.0.2"]); // STACK_SERVICE
  assert.deepEqual(index.resolve("backend.", front)?.addrs, ["127.1.0.2"]); // alias
  assert.deepEqual(index.resolve("TASKS.shop_api", front)?.addrs, ["127.1.0.10", "127.1.0.11"]);
  // cache is on n2 only: not for a task on n1, but for the host (no asker).
  assert.equal(index.resolve("cache", front), undefined);
  assert.deepEqual(index.resolve("cache", undefined)?.addrs, ["127.2.0.10"]);
  assert.deepEqual(index.resolve("api", undefined)?.addrs, ["127.1.0.2"]);
  assert.equal(index.resolve("nothing", undefined), undefined);
});

function send(port: number, query: DnsMessage): Promise<DnsMessage> {
  return new Promise((resolve, reject) => {
    const socket = dgram.createSocket("udp4");
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error("no DNS answer"));
    }, 3_000);
    socket.on("message", (msg: Uint8Array) => {
      clearTimeout(timer);
      socket.close();
      resolve(decodeDnsMessage(new Uint8Array(msg)));
    });
    socket.send(encodeDnsMessage(query), port, "127.0.0.1");
  });
}

Deno.test("the resolver answers swarm names over UDP and forwards the rest upstream", async () => {
  // A fake upstream resolver: answers every A question with 192.0.2.1.
  const upstream = dgram.createSocket("udp4");
  const seenUpstream: string[] = [];
  upstream.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
    const q = decodeDnsMessage(new Uint8Array(msg));
    seenUpstream.push(q.questions[0].name);
    const answer = dnsResponse(q, Rcode.NOERROR, [aRecord(q.questions[0].name, "192.0.2.1", 60)]);
    upstream.send(encodeDnsMessage(answer), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => upstream.bind(0, "127.0.0.1", () => r()));
  const upstreamPort = upstream.address().port;
  let asker: MeshTask | undefined;
  const server = new DnsServer({
    listen: { host: "127.0.0.1", port: 0 },
    index: () => new MeshIndex(MAP),
    identify: () => Promise.resolve(asker),
    upstreams: [`127.0.0.1:${upstreamPort}`],
  });
  const port = Number((await server.start()).split(":")[1]);
  try {
    const swarm = await send(port, dnsQuery(41, "tasks.shop_api"));
    assert.equal(swarm.id, 41);
    assert.equal(swarm.rcode, Rcode.NOERROR);
    assert.deepEqual(swarm.answers.map(aRecordAddr), ["127.1.0.10", "127.1.0.11"]);
    // AAAA for a swarm name: an empty answer, not a forward.
    const v6 = await send(port, dnsQuery(42, "shop_api", DnsType.AAAA));
    assert.equal(v6.rcode, Rcode.NOERROR);
    assert.equal(v6.answers.length, 0);
    // A name outside the swarm is forwarded, and the answer comes back with the client's id.
    const outside = await send(port, dnsQuery(43, "example.org"));
    assert.equal(outside.id, 43);
    assert.deepEqual(outside.answers.map(aRecordAddr), ["192.0.2.1"]);
    // So is a swarm name the asking task may not see (cache is on another network).
    asker = MAP.tasks.find((t) => t.id === "f1");
    const hidden = await send(port, dnsQuery(44, "cache"));
    assert.deepEqual(hidden.answers.map(aRecordAddr), ["192.0.2.1"]);
    assert.deepEqual(seenUpstream, ["example.org", "cache"]);
  } finally {
    server.close();
    upstream.close();
  }
});

Deno.test("a query for an upstream the node cannot send to fails at once", async () => {
  // Sending to the broadcast address without SO_BROADCAST fails (EACCES), as sending to an
  // upstream with no route does: the client gets SERVFAIL now, not after the upstream timeout.
  const server = new DnsServer({
    listen: { host: "127.0.0.1", port: 0 },
    index: () => new MeshIndex(MAP),
    upstreams: ["255.255.255.255:53"],
  });
  const port = Number((await server.start()).split(":")[1]);
  try {
    const started = Date.now();
    const reply = await send(port, dnsQuery(45, "example.org"));
    assert.equal(reply.id, 45);
    assert.equal(reply.rcode, Rcode.SERVFAIL);
    assert.ok(Date.now() - started < 1_000, `answered after ${Date.now() - started} ms`);
  } finally {
    server.close();
  }
});

Deno.test("resolv.conf nameservers are read in order", () => {
  assert.deepEqual(
    parseResolvConf("# c\nsearch x\nnameserver 10.0.0.1\n  nameserver ::1\noptions ndots:1\n"),
    ["10.0.0.1", "::1"],
  );
});

/** A map with one dnsrr service of `n` tasks, for answers too big for 512 bytes. */
function bigMap(n: number): MeshMap {
  return {
    index: 1,
    nodes: [],
    networks: [{ id: "n1", name: "front", subnet: "127.1.0.0/16" }],
    services: [{
      id: "s1",
      name: "many",
      stack: "",
      mode: "dnsrr",
      ports: [],
      vips: [],
      networks: [{ id: "n1", aliases: [] }],
    }],
    tasks: Array.from({ length: n }, (_, i) => ({
      id: `t${i}`,
      serviceId: "s1",
      slot: i + 1,
      nodeId: "x",
      serving: true,
      addresses: [{ networkId: "n1", addr: `127.1.${Math.floor(i / 200) + 1}.${(i % 200) + 10}` }],
    })),
  };
}

/** One question over TCP (two-byte length prefix), and its answer. */
async function sendTcp(port: number, query: DnsMessage): Promise<DnsMessage> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const bytes = encodeDnsMessage(query);
    await conn.write(new Uint8Array([bytes.length >> 8, bytes.length & 0xff, ...bytes]));
    let buf = new Uint8Array(0);
    const chunk = new Uint8Array(65_536);
    while (buf.length < 2 || buf.length < 2 + ((buf[0] << 8) | buf[1])) {
      const n = await conn.read(chunk);
      if (n === null) throw new Error("the resolver closed the connection");
      buf = new Uint8Array([...buf, ...chunk.subarray(0, n)]);
    }
    return decodeDnsMessage(buf.slice(2, 2 + ((buf[0] << 8) | buf[1])));
  } finally {
    conn.close();
  }
}

/** A query with an EDNS0 OPT record offering `size` bytes over UDP. */
function ednsQuery(id: number, name: string, size: number): DnsMessage {
  return {
    ...dnsQuery(id, name),
    additionals: [{ name: "", type: 41, class: size, ttl: 0, data: new Uint8Array(0) }],
  };
}

Deno.test("a swarm answer too big for UDP is truncated there and whole over TCP", async () => {
  const server = new DnsServer({
    listen: { host: "127.0.0.1", port: 0 },
    index: () => new MeshIndex(bigMap(60)),
    upstreams: [],
  });
  const port = Number((await server.start()).split(":")[1]);
  try {
    const all = bigMap(60).tasks.map((t) => t.addresses[0].addr);
    // Plain UDP: at most 512 bytes, marked truncated, a prefix of the answer.
    const udp = await send(port, dnsQuery(51, "tasks.many"));
    assert.equal(udp.tc, true);
    assert.ok(encodeDnsMessage(udp).length <= 512);
    assert.ok(udp.answers.length > 0 && udp.answers.length < 60, `${udp.answers.length}`);
    assert.deepEqual(udp.answers.map(aRecordAddr), all.slice(0, udp.answers.length));
    // EDNS0 offering 4,096 bytes: all of it over UDP, with an OPT record back.
    const edns = await send(port, ednsQuery(52, "tasks.many", 4_096));
    assert.equal(edns.tc, false);
    assert.equal(edns.answers.length, 60);
    assert.equal(edns.additionals[0]?.type, 41);
    // TCP: the whole answer, as the client asks again after a truncated one.
    const tcp = await sendTcp(port, dnsQuery(53, "tasks.many"));
    assert.equal(tcp.id, 53);
    assert.equal(tcp.tc, false);
    assert.deepEqual(tcp.answers.map(aRecordAddr), all);
    // A small answer over TCP too.
    const one = await sendTcp(port, dnsQuery(54, "many"));
    assert.equal(one.answers.length, 60);
  } finally {
    server.close();
  }
});

Deno.test("over TCP, a name outside the swarm is asked upstream over TCP", async () => {
  // A fake upstream resolver on TCP: answers every A question with 192.0.2.7.
  const seen: string[] = [];
  const upstream = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  (async () => {
    for await (const conn of upstream) {
      (async () => {
        const buf = new Uint8Array(4_096);
        const n = (await conn.read(buf)) ?? 0;
        const q = decodeDnsMessage(buf.slice(2, n));
        seen.push(q.questions[0].name);
        const a = encodeDnsMessage(
          dnsResponse(q, Rcode.NOERROR, [aRecord(q.questions[0].name, "192.0.2.7", 60)]),
        );
        await conn.write(new Uint8Array([a.length >> 8, a.length & 0xff, ...a]));
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  const server = new DnsServer({
    listen: { host: "127.0.0.1", port: 0 },
    index: () => new MeshIndex(MAP),
    upstreams: [`127.0.0.1:${(upstream.addr as Deno.NetAddr).port}`],
  });
  const port = Number((await server.start()).split(":")[1]);
  try {
    const outside = await sendTcp(port, dnsQuery(61, "example.net"));
    assert.equal(outside.id, 61);
    assert.deepEqual(outside.answers.map(aRecordAddr), ["192.0.2.7"]);
    assert.deepEqual(seen, ["example.net"]);
  } finally {
    server.close();
    upstream.close();
  }
});
