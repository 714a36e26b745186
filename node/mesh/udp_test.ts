/**
 * UDP and trunks through the mesh over real sockets: two meshes (nodes a at 127.0.0.2 and b at
 * 127.0.0.3) forwarding datagrams to UDP servers standing for tasks at their own 127.x
 * addresses, on this node or across the trunk to the other.
 */
import assert from "node:assert/strict";
import * as dgram from "node:dgram";
import { type Mesh, startMesh } from "./mesh.ts";
import type { MeshMap, MeshService, MeshTask } from "./mesh_map.ts";
import { freePort, namedServer, testCredentials, TestSource, waitFor } from "./_test_mesh.ts";
import { openTrunk, PeerDialError, PeerEndpoint } from "./peer.ts";
import { TrunkOpenError } from "./trunk.ts";
import { UdpRelay } from "./udp.ts";

const NET = "net1";
const TASK_PORT = 5353;

function task(id: string, nodeId: string, addr: string): MeshTask {
  return {
    id,
    serviceId: "dns",
    slot: 1,
    nodeId,
    serving: true,
    addresses: [{ networkId: NET, addr }],
  };
}

/** A UDP server that answers each datagram with `<name>:<datagram>`. */
async function udpServer(name: string, host: string, port: number): Promise<dgram.Socket> {
  const socket = dgram.createSocket("udp4");
  socket.on("message", (msg: Uint8Array, from: dgram.RemoteInfo) => {
    socket.send(`${name}:${new TextDecoder().decode(msg)}`, from.port, from.address);
  });
  await new Promise<void>((r) => socket.bind(port, host, () => r()));
  return socket;
}

/** A client socket that collects what it receives. */
async function udpClient(): Promise<{ socket: dgram.Socket; got: string[] }> {
  const socket = dgram.createSocket("udp4");
  const got: string[] = [];
  socket.on("message", (msg: Uint8Array) => got.push(new TextDecoder().decode(msg)));
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  return { socket, got };
}

function close(socket: dgram.Socket): Promise<void> {
  return new Promise((r) => socket.close(() => r()));
}

/**
 * Service dns: UDP port 5353 published at `published` (ingress) and on VIP 127.36.0.2, tasks
 * u1 on a and u2, u3 on b. Node b's map leaves the VIP out, so that the VIP is a's (both nodes
 * share this machine's loopback, and whichever binds an address first serves it).
 */
async function fixture() {
  const { creds } = await testCredentials(["a", "b"]);
  const meshPort = await freePort("127.0.0.2");
  const published = await freePort("127.0.0.2");
  const dns: MeshService = {
    id: "dns",
    name: "dns",
    stack: "",
    mode: "vip",
    ports: [{
      protocol: "udp",
      targetPort: TASK_PORT,
      publishedPort: published,
      publishMode: "ingress",
    }],
    vips: [{ networkId: NET, addr: "127.36.0.2" }],
    networks: [{ id: NET, aliases: [] }],
  };
  const map: MeshMap = {
    index: 1,
    nodes: [{ id: "a", addr: "127.0.0.2" }, { id: "b", addr: "127.0.0.3" }],
    networks: [{ id: NET, name: "front", subnet: "127.36.0.0/16" }],
    services: [dns],
    tasks: [
      task("u1", "a", "127.36.0.11"),
      task("u2", "b", "127.36.0.12"),
      task("u3", "b", "127.36.0.13"),
    ],
  };
  const servers = [
    await udpServer("u1", "127.36.0.11", TASK_PORT),
    await udpServer("u2", "127.36.0.12", TASK_PORT),
    await udpServer("u3", "127.36.0.13", TASK_PORT),
  ];
  const meshes: Mesh[] = [];
  for (
    const [id, m] of [["a", map], ["b", { ...map, services: [{ ...dns, vips: [] }] }]] as const
  ) {
    meshes.push(
      await startMesh({
        nodeId: id,
        source: new TestSource(m),
        credentials: () => creds.get(id)!,
        meshPort,
        dns: false,
        discoverPorts: false,
      }),
    );
  }
  return {
    creds,
    meshes,
    meshPort,
    published,
    close: async () => {
      await Promise.all(meshes.map((m) => m.close()));
      await Promise.all(servers.map(close));
    },
  };
}

/**
 * Three clients, each sending three datagrams to `host:port`: each gets its own three answers,
 * all from one task, and the three clients went to the three tasks (in turn).
 */
async function threeClients(host: string, port: number): Promise<void> {
  const clients = [await udpClient(), await udpClient(), await udpClient()];
  try {
    for (let round = 0; round < 3; round++) {
      for (const [i, c] of clients.entries()) c.socket.send(`c${i}-${round}`, port, host);
      await waitFor(
        `answers of round ${round} via ${host}:${port}`,
        () => clients.every((c) => c.got.length === round + 1),
        5_000,
      );
    }
    const tasks = new Set<string>();
    for (const [i, c] of clients.entries()) {
      const [who] = c.got[0].split(":");
      tasks.add(who);
      assert.deepEqual(c.got, [0, 1, 2].map((r) => `${who}:c${i}-${r}`), `client ${i}: ${c.got}`);
    }
    assert.deepEqual([...tasks].sort(), ["u1", "u2", "u3"]);
  } finally {
    await Promise.all(clients.map((c) => close(c.socket)));
  }
}

Deno.test("UDP to a published port reaches tasks on this node and across the trunk; each client gets its own answers", async () => {
  const f = await fixture();
  try {
    await waitFor(
      "udp listeners",
      () => f.meshes[0].listening.includes(`127.0.0.2:${f.published}/udp`),
    );
    await threeClients("127.0.0.2", f.published);
    await threeClients("127.0.0.3", f.published); // b's published port: u1 is across the trunk
  } finally {
    await f.close();
  }
});

Deno.test("UDP to a service VIP reaches the service's tasks, replies to each sender", async () => {
  const f = await fixture();
  try {
    await waitFor("udp VIP", () => f.meshes[0].listening.includes(`127.36.0.2:${TASK_PORT}/udp`));
    await threeClients("127.36.0.2", TASK_PORT);
  } finally {
    await f.close();
  }
});

Deno.test("a UDP flow is forgotten once idle, and the next datagram opens a new one", async () => {
  const server = await udpServer("s", "127.36.1.11", TASK_PORT);
  const port = await freePort("127.36.1.2");
  let opened = 0;
  const relay = new UdpRelay({
    host: "127.36.1.2",
    port,
    idleMs: 150,
    open: (_client, reply) => {
      opened++;
      const socket = dgram.createSocket("udp4");
      socket.on("message", (msg: Uint8Array) => reply(msg));
      return Promise.resolve({
        send: (d: Uint8Array) => socket.send(d, TASK_PORT, "127.36.1.11"),
        close: () => socket.close(),
      });
    },
  });
  await relay.start();
  const c = await udpClient();
  try {
    c.socket.send("x", port, "127.36.1.2");
    c.socket.send("y", port, "127.36.1.2");
    await waitFor("two answers", () => c.got.length === 2);
    assert.equal(relay.flows, 1);
    assert.equal(opened, 1);
    await waitFor("the flow is forgotten", () => relay.flows === 0, 2_000);
    c.socket.send("z", port, "127.36.1.2");
    await waitFor("a third answer", () => c.got.length === 3);
    assert.deepEqual(c.got, ["s:x", "s:y", "s:z"]);
    assert.equal(opened, 2);
  } finally {
    relay.close();
    await close(c.socket);
    await close(server);
  }
});

Deno.test("a trunk takes only nodes of the swarm, and opens streams and flows only to the endpoint's tasks", async () => {
  const { creds, foreign } = await testCredentials(["a", "b"]);
  const tcp = await namedServer("t", "127.36.2.12", 7000);
  const udp = await udpServer("u", "127.36.2.12", 7000);
  const mine = new Set(["127.36.2.12:7000"]);
  const endpoint = new PeerEndpoint({
    credentials: creds.get("b")!,
    authorize: (addr, port) => mine.has(`${addr}:${port}`),
    discover: () => Promise.resolve({}),
  });
  const address = await endpoint.start("127.0.0.3", 0);
  const port = Number(address.split(":")[1]);
  const dial = { host: "127.0.0.3", port, nodeId: "b" };
  try {
    // Another swarm's certificate (the same node id, another root CA): no trunk, whether the
    // dialler trusts only its own CA or this swarm's (then the endpoint refuses it).
    await assert.rejects(openTrunk({ ...dial, credentials: foreign }), PeerDialError);
    await assert.rejects(
      // (The refusal does not reach Deno's node:tls client, which waits for the timeout.)
      openTrunk({ ...dial, credentials: { ...foreign, ca: creds.get("a")!.ca }, timeoutMs: 1_000 }),
      PeerDialError,
    );
    // The right CA but the wrong node: the dialler refuses the endpoint.
    await assert.rejects(openTrunk({ ...dial, nodeId: "c", credentials: creds.get("a")! }));
    const trunk = await openTrunk({ ...dial, credentials: creds.get("a")! });
    try {
      await assert.rejects(trunk.openStream("127.36.2.11", 7000), TrunkOpenError);
      await assert.rejects(trunk.openStream("127.36.2.12", 7001), TrunkOpenError);
      // A stream to a task: joined to one end of a local connection pair.
      const stream = await trunk.openStream("127.36.2.12", 7000);
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const [near, far] = await Promise.all([
        listener.accept(),
        Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
      ]);
      listener.close();
      const spliced = stream.splice(near);
      await far.write(new TextEncoder().encode("hello\n"));
      const buf = new Uint8Array(100);
      const n = await far.read(buf);
      assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "t:hello\n");
      far.close();
      await spliced;
      // A flow to a port that is not a task's ends at once; one to a task gets answers.
      const ended = Promise.withResolvers<string>();
      trunk.openFlow("127.36.2.11", 7000, () => {}, ended.resolve);
      assert.match(await ended.promise, /refused/);
      const got = Promise.withResolvers<string>();
      const flow = trunk.openFlow(
        "127.36.2.12",
        7000,
        (d) => got.resolve(new TextDecoder().decode(d)),
        () => {},
      );
      flow.send(new TextEncoder().encode("ping"));
      assert.equal(await got.promise, "u:ping");
      flow.close();
      assert.equal(trunk.streams, 0);
    } finally {
      trunk.close();
    }
  } finally {
    await endpoint.close();
    await tcp.close();
    await close(udp);
  }
});
