/**
 * The mesh over real TCP: two meshes (two nodes at 127.0.0.2 and 127.0.0.3, each with its
 * mutual-TLS endpoint) forwarding to real listening servers standing for tasks at their own
 * 127.x addresses.
 */
import assert from "node:assert/strict";
import * as dgram from "node:dgram";
import * as tls from "node:tls";
import { type Mesh, startMesh } from "./mesh.ts";
import type { MeshMap, MeshService, MeshTask } from "./mesh_map.ts";
import { ask, freePort, namedServer, testCredentials, TestSource, waitFor } from "./_test_mesh.ts";
import { type MeshCredentials, openTrunk, PeerDialError } from "./peer.ts";
import { type Trunk, TrunkOpenError } from "./trunk.ts";
import { aRecord, decodeDnsMessage, dnsResponse, encodeDnsMessage } from "./dns_codec.ts";

const NET1 = "net1";
const NET2 = "net2";

function service(over: Partial<MeshService> & { id: string; name: string }): MeshService {
  return { stack: "", mode: "vip", ports: [], vips: [], networks: [], ...over };
}

function task(
  id: string,
  serviceId: string,
  nodeId: string,
  addr: string,
  networkId = NET1,
): MeshTask {
  return { id, serviceId, slot: 1, nodeId, serving: true, addresses: [{ networkId, addr }] };
}

interface Fixture {
  creds: Map<string, MeshCredentials>;
  meshes: Mesh[];
  sources: TestSource[];
  servers: { close(): Promise<void>; connections: number }[];
  meshPort: number;
  published: number;
  map: MeshMap;
  close(): Promise<void>;
}

/**
 * Nodes a (127.0.0.2) and b (127.0.0.3); service web (published ingress port, VIP 127.31.0.2 on
 * net1, target 8080) with task 1 on a and tasks 2 and 3 on b, each a server at 127.31.0.1x:8080.
 */
async function fixture(): Promise<Fixture> {
  const { creds } = await testCredentials(["a", "b"]);
  const meshPort = await freePort("127.0.0.2");
  const published = await freePort("127.0.0.2");
  const map: MeshMap = {
    index: 1,
    nodes: [{ id: "a", addr: "127.0.0.2" }, { id: "b", addr: "127.0.0.3" }],
    networks: [{ id: NET1, name: "front", subnet: "127.31.0.0/16" }],
    services: [service({
      id: "web",
      name: "web",
      ports: [{
        protocol: "tcp",
        targetPort: 8080,
        publishedPort: published,
        publishMode: "ingress",
      }],
      vips: [{ networkId: NET1, addr: "127.31.0.2" }],
      networks: [{ id: NET1, aliases: [] }],
    })],
    tasks: [
      task("t1", "web", "a", "127.31.0.11"),
      task("t2", "web", "b", "127.31.0.12"),
      task("t3", "web", "b", "127.31.0.13"),
    ],
  };
  const servers = [
    await namedServer("t1", "127.31.0.11", 8080),
    await namedServer("t2", "127.31.0.12", 8080),
    await namedServer("t3", "127.31.0.13", 8080),
  ];
  const sources = [new TestSource(map), new TestSource(map)];
  const meshes: Mesh[] = [];
  for (const [i, id] of ["a", "b"].entries()) {
    meshes.push(
      await startMesh({
        nodeId: id,
        source: sources[i],
        credentials: () => creds.get(id)!,
        meshPort,
        dns: false,
        discoverIntervalMs: 100,
      }),
    );
  }
  return {
    creds,
    meshes,
    sources,
    servers,
    meshPort,
    published,
    map,
    close: async () => {
      await Promise.all(meshes.map((m) => m.close()));
      await Promise.all(servers.map((s) => s.close()));
    },
  };
}

Deno.test("the mesh forwards an ingress port on every node to every task, in turn, across nodes over mTLS", async () => {
  const f = await fixture();
  try {
    for (const host of ["127.0.0.2", "127.0.0.3"]) {
      const seen: string[] = [];
      for (let i = 0; i < 6; i++) seen.push(await ask(host, f.published, `hi${i}`));
      const byTask = new Map<string, number>();
      for (const s of seen) {
        const [who] = s.split(":");
        byTask.set(who, (byTask.get(who) ?? 0) + 1);
      }
      assert.deepEqual(
        [...byTask.entries()].sort(),
        [["t1", 2], ["t2", 2], ["t3", 2]],
        `${host}: ${seen}`,
      );
      assert.ok(seen.every((s, i) => s.endsWith(`:hi${i}`)), `answers keep their line: ${seen}`);
    }
    // The published port is also on loopback.
    assert.match(await ask("127.0.0.1", f.published, "lo"), /^t[123]:lo$/);
  } finally {
    await f.close();
  }
});

Deno.test("the mesh forwards a service VIP's target port, and a port found listening later", async () => {
  const f = await fixture();
  const extra: { close(): Promise<void> }[] = [];
  try {
    assert.match(await ask("127.31.0.2", 8080, "x"), /^t[123]:x$/);
    // Every task starts listening on 9090, which no spec names: found by discovery (on b through
    // a's discover request to b's endpoint), then forwarded by the VIP on both nodes.
    for (const [i, addr] of ["127.31.0.11", "127.31.0.12", "127.31.0.13"].entries()) {
      extra.push(await namedServer(`p${i + 1}`, addr, 9090));
    }
    // Both nodes share this host's loopback: whichever mesh bound the VIP first serves it.
    await waitFor(
      "VIP port 9090",
      () => f.meshes.some((m) => m.listening.includes("127.31.0.2:9090")),
    );
    const seen = new Set<string>();
    for (let i = 0; i < 3; i++) seen.add((await ask("127.31.0.2", 9090, "y")).split(":")[0]);
    assert.deepEqual([...seen].sort(), ["p1", "p2", "p3"]);
  } finally {
    await Promise.all(extra.map((s) => s.close()));
    await f.close();
  }
});

Deno.test("the mesh skips a task that does not answer, and stops listening when a service goes", async () => {
  const f = await fixture();
  try {
    await f.servers[1].close(); // t2 (on b) stops listening but is still in the map
    for (let i = 0; i < 6; i++) {
      assert.match(await ask("127.0.0.2", f.published, "z"), /^t[13]:z$/);
    }
    for (const s of f.sources) s.set({ ...f.map, index: 2, services: [], tasks: [] });
    await waitFor("listeners closed", () => f.meshes.every((m) => m.listening.length === 0));
    assert.match(await ask("127.0.0.2", f.published, "z"), /^(closed|error:ECONNREFUSED)$/);
  } finally {
    await f.close();
  }
});

Deno.test("a host-mode port is published only on its task's node", async () => {
  const f = await fixture();
  try {
    const hostPort = await freePort("127.0.0.2");
    const map: MeshMap = {
      ...f.map,
      index: 2,
      services: [
        ...f.map.services,
        service({
          id: "db",
          name: "db",
          ports: [{
            protocol: "tcp",
            targetPort: 8080,
            publishedPort: hostPort,
            publishMode: "host",
          }],
        }),
      ],
      tasks: [...f.map.tasks, task("d1", "db", "b", "127.31.0.12")],
    };
    for (const s of f.sources) s.set(map);
    await waitFor("host port on b", () => f.meshes[1].listening.includes(`127.0.0.3:${hostPort}`));
    assert.ok(!f.meshes[0].listening.some((k) => k.endsWith(`:${hostPort}`)));
    assert.equal(await ask("127.0.0.3", hostPort, "h"), "t2:h"); // d1 shares t2's server
  } finally {
    await f.close();
  }
});

/** A stream through `trunk` to `addr:port`, as a local connection to read and write. */
async function streamThrough(trunk: Trunk, addr: string, port: number): Promise<Deno.Conn> {
  const stream = await trunk.openStream(addr, port);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const [client, server] = await Promise.all([
      Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
      listener.accept(),
    ]);
    void stream.splice(server);
    return client;
  } finally {
    listener.close();
  }
}

/** Writes a line to `conn` and reads what comes back. */
async function exchange(conn: Deno.Conn, line: string): Promise<string> {
  await conn.write(new TextEncoder().encode(line));
  const buf = new Uint8Array(256);
  const n = await conn.read(buf);
  return new TextDecoder().decode(buf.subarray(0, n ?? 0));
}

Deno.test("a mesh endpoint refuses a node of another swarm", async () => {
  const f = await fixture();
  try {
    const other = await testCredentials(["a"]);
    const dial = { host: "127.0.0.3", port: f.meshPort, nodeId: "b" };
    await assert.rejects(
      openTrunk({ ...dial, credentials: other.creds.get("a")! }),
      PeerDialError,
    );
    // And a node of this swarm gets through to the same task.
    const trunk = await openTrunk({ ...dial, credentials: f.creds.get("a")! });
    try {
      const conn = await streamThrough(trunk, "127.31.0.12", 8080);
      assert.equal(await exchange(conn, "x\n"), "t2:x\n");
      conn.close();
    } finally {
      trunk.close();
    }
  } finally {
    await f.close();
  }
});

Deno.test("the endpoint answers only for its own tasks", async () => {
  const { creds } = await testCredentials(["a", "b"]);
  const meshPort = await freePort("127.0.0.3");
  const map: MeshMap = {
    index: 1,
    nodes: [{ id: "a", addr: "127.0.0.2" }, { id: "b", addr: "127.0.0.3" }],
    networks: [],
    services: [service({ id: "web", name: "web" })],
    tasks: [task("t1", "web", "a", "127.32.0.11"), task("t2", "web", "b", "127.32.0.12")],
  };
  const servers = [
    await namedServer("t1", "127.32.0.11", 7000),
    await namedServer("t2", "127.32.0.12", 7000),
  ];
  const b = await startMesh({
    nodeId: "b",
    source: new TestSource(map),
    credentials: () => creds.get("b")!,
    meshPort,
    dns: false,
    discoverPorts: false,
  });
  try {
    const trunk = await openTrunk({
      host: "127.0.0.3",
      port: meshPort,
      nodeId: "b",
      credentials: creds.get("a")!,
    });
    try {
      const ok = await streamThrough(trunk, "127.32.0.12", 7000);
      assert.equal(await exchange(ok, "ping\n"), "t2:ping\n");
      ok.close();
      // a's task, not b's; and not a task at all.
      await assert.rejects(trunk.openStream("127.32.0.11", 7000), TrunkOpenError, "refused");
      await assert.rejects(trunk.openStream("127.0.0.1", 7000), TrunkOpenError, "refused");
    } finally {
      trunk.close();
    }
    // A client without a certificate does not get through the handshake.
    const bare = tls.connect({ host: "127.0.0.3", port: meshPort, rejectUnauthorized: false });
    const outcome = await new Promise<string>((resolve) => {
      bare.on("data", () => resolve("data"));
      bare.on("error", () => resolve("error"));
      bare.on("close", () => resolve("closed"));
      bare.write(new Uint8Array([0x53, 0x4d, 1, 1, 0, 2, 0x7b, 0x7d]));
    });
    bare.destroy();
    assert.notEqual(outcome, "data");
  } finally {
    await b.close();
    await Promise.all(servers.map((s) => s.close()));
  }
});

Deno.test("a task on another network cannot reach a VIP; one on the VIP's network can", async () => {
  const f = await fixture();
  try {
    const map: MeshMap = {
      ...f.map,
      index: 2,
      services: [
        ...f.map.services,
        service({ id: "client1", name: "client1", networks: [{ id: NET1, aliases: [] }] }),
        service({ id: "client2", name: "client2", networks: [{ id: NET2, aliases: [] }] }),
      ],
      tasks: [
        ...f.map.tasks,
        task("c1", "client1", "a", "127.31.0.50"),
        task("c2", "client2", "a", "127.33.0.50", NET2),
      ],
    };
    for (const s of f.sources) s.set(map);
    await f.meshes[0].refresh();
    // Real processes, marked as tasks the way the process executor marks them, connecting
    // without binding their own address (so from 127.0.0.1).
    const client = async (taskId: string) => {
      const code = `
        const c = await Deno.connect({ hostname: "127.31.0.2", port: 8080 });
        await c.write(new TextEncoder().encode("q\\n"));
        const buf = new Uint8Array(100);
        const n = await c.read(buf).catch(() => null);
        console.log(n ? new TextDecoder().decode(buf.subarray(0, n)).trim() : "closed");`;
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["eval", code],
        env: { SHOAL_TASK_ID: taskId },
        stdout: "piped",
        stderr: "inherit",
      }).output();
      return new TextDecoder().decode(out.stdout).trim();
    };
    assert.match(await client("c1"), /^t[123]:q$/);
    assert.equal(await client("c2"), "closed");
    // The host itself (no task) is let through.
    assert.match(await ask("127.31.0.2", 8080, "h"), /^t[123]:h$/);
  } finally {
    await f.close();
  }
});

Deno.test("a large transfer crosses nodes intact, and a half-close still gets its answer", async () => {
  const f = await fixture();
  // An echo server at t2's address (on node b), which answers a half-closed request with the
  // byte count, then closes.
  const echo = Deno.listen({ hostname: "127.31.0.12", port: 9300 });
  const serving = (async () => {
    for await (const conn of echo) {
      (async () => {
        let total = 0;
        const buf = new Uint8Array(65536);
        for (;;) {
          const n = await conn.read(buf).catch(() => null);
          if (n === null) break;
          total += n;
          let off = 0;
          while (off < n) off += await conn.write(buf.subarray(off, n));
        }
        await conn.write(new TextEncoder().encode(`total=${total}`)).catch(() => {});
        conn.close();
      })();
    }
  })().catch(() => {});
  try {
    const map: MeshMap = {
      ...f.map,
      index: 2,
      services: [
        ...f.map.services,
        service({
          id: "echo",
          name: "echo",
          ports: [{ protocol: "tcp", targetPort: 9300, publishedPort: 0, publishMode: "ingress" }],
          vips: [{ networkId: NET1, addr: "127.31.0.3" }],
          networks: [{ id: NET1, aliases: [] }],
        }),
      ],
      tasks: [...f.map.tasks, task("e1", "echo", "b", "127.31.0.12")],
    };
    for (const s of f.sources) s.set(map);
    await waitFor("echo VIP", () => f.meshes.some((m) => m.listening.includes("127.31.0.3:9300")));
    const size = 8 * 1024 * 1024;
    const data = new Uint8Array(size);
    for (let i = 0; i < size; i++) data[i] = (i * 7 + (i >> 12)) & 0xff;
    const conn = await Deno.connect({ hostname: "127.31.0.3", port: 9300 });
    const received: Uint8Array[] = [];
    const reading = (async () => {
      const buf = new Uint8Array(65536);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        received.push(buf.slice(0, n));
      }
    })();
    let off = 0;
    while (off < size) off += await conn.write(data.subarray(off, Math.min(size, off + 100_000)));
    await conn.closeWrite();
    await reading;
    conn.close();
    const all = new Uint8Array(received.reduce((n, r) => n + r.length, 0));
    let at = 0;
    for (const r of received) {
      all.set(r, at);
      at += r.length;
    }
    const tail = new TextDecoder().decode(all.subarray(size));
    assert.equal(tail, `total=${size}`);
    assert.equal(all.length, size + tail.length);
    assert.ok(all.subarray(0, size).every((b, i) => b === data[i]), "the bytes came back as sent");
  } finally {
    echo.close();
    await serving;
    await f.close();
  }
});

Deno.test("closing a mesh cuts the connections it forwards", async () => {
  const f = await fixture();
  try {
    const conn = await Deno.connect({ hostname: "127.0.0.2", port: f.published });
    await conn.write(new TextEncoder().encode("a\n"));
    const buf = new Uint8Array(100);
    const n = await conn.read(buf);
    assert.match(new TextDecoder().decode(buf.subarray(0, n!)), /^t[123]:a\n$/);
    await f.meshes[0].close();
    const after = await conn.read(buf).catch(() => null);
    assert.equal(after, null);
    conn.close();
  } finally {
    await f.close();
  }
});

Deno.test("the resolver answers a task only the names of services on its networks", async () => {
  const { creds } = await testCredentials(["a"]);
  // An upstream that answers every name with 192.0.2.9, to tell forwarded answers apart.
  const upstream = dgram.createSocket("udp4");
  upstream.on("message", (msg: Uint8Array, from: dgram.RemoteInfo) => {
    const q = decodeDnsMessage(new Uint8Array(msg));
    const answer = dnsResponse(q, 0, [aRecord(q.questions[0].name, "192.0.2.9", 60)]);
    upstream.send(encodeDnsMessage(answer), from.port, from.address);
  });
  await new Promise<void>((r) => upstream.bind(0, "127.0.0.1", () => r()));
  const upstreamPort = upstream.address().port;
  const dnsPort = await freePort();
  const map: MeshMap = {
    index: 1,
    nodes: [{ id: "a", addr: "127.0.0.2" }],
    networks: [],
    services: [
      service({
        id: "web",
        name: "web",
        vips: [{ networkId: NET1, addr: "127.34.0.2" }],
        networks: [{ id: NET1, aliases: [] }],
      }),
      service({ id: "client1", name: "client1", networks: [{ id: NET1, aliases: [] }] }),
      service({ id: "client2", name: "client2", networks: [{ id: NET2, aliases: [] }] }),
    ],
    tasks: [
      task("c1", "client1", "a", "127.34.0.50"),
      task("c2", "client2", "a", "127.35.0.50", NET2),
    ],
  };
  const mesh = await startMesh({
    nodeId: "a",
    source: new TestSource(map),
    credentials: () => creds.get("a")!,
    listen: { host: "127.0.0.2", port: 0 },
    dns: { host: "127.0.0.1", port: dnsPort },
    dnsUpstreams: [`127.0.0.1:${upstreamPort}`],
    discoverPorts: false,
  });
  try {
    const lookup = async (taskId: string | undefined) => {
      const code = `console.log(JSON.stringify(await Deno.resolveDns("web", "A", {
        nameServer: { ipAddr: "127.0.0.1", port: ${dnsPort} } })));`;
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["eval", code],
        env: taskId ? { SHOAL_TASK_ID: taskId } : {},
        stdout: "piped",
        stderr: "inherit",
      }).output();
      return JSON.parse(new TextDecoder().decode(out.stdout)) as string[];
    };
    assert.deepEqual(await lookup("c1"), ["127.34.0.2"]);
    assert.deepEqual(await lookup("c2"), ["192.0.2.9"]); // not its network: forwarded
    assert.deepEqual(await lookup(undefined), ["127.34.0.2"]); // the host sees every service
  } finally {
    await mesh.close();
    upstream.close();
  }
});
