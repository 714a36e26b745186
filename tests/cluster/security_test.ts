/**
 * Who may speak to a manager, through real sockets: the Raft port takes only manager certificates
 * of the swarm (a worker's certificate claiming a member's raft id, a plain TCP client and a TLS
 * client without a certificate are refused, and each refusal is logged); on the cluster port, a
 * worker's certificate cannot have the leader carry out commands (`forward`), and a removed
 * node's certificate opens nothing.
 */
import assert from "node:assert/strict";
import * as net from "node:net";
import * as tls from "node:tls";
import { type RunningNode, startNode } from "../../node/daemon.ts";
import { requestToJoin } from "../../node/join.ts";
import { writeCredentials, writeNodeConfig } from "../../node/identity.ts";
import { describeThisNode } from "../../node/agent_host.ts";
import { Transport } from "../../events/raft/transport.ts";
import type { NodeId, PeerMessage } from "../../events/raft/types.ts";
import { FrameConnection, MANAGER_SERVERNAME, splitHostPort } from "../../node/agent_protocol.ts";

class Lines {
  lines: string[] = [];
  info = (m: string) => this.lines.push(`info ${m}`);
  warn = (m: string) => this.lines.push(`warn ${m}`);
  error = (m: string) => this.lines.push(`error ${m}`);
  async until(re: RegExp, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.lines.find((l) => re.test(l));
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no log line ${re} in:\n${this.lines.join("\n")}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const quietHandlers = {
  onMessage: (_m: PeerMessage) => {},
  onUnreachable: (_id: NodeId) => {},
  onSnapshotStatus: () => {},
};

Deno.test({
  name: "the Raft port and the forward requests take only manager certificates",
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-security-" });
  const log1 = new Lines();
  const log2 = new Lines();
  const nodes: RunningNode[] = [];
  const base = (name: string) => ({
    dataDir: `${dir}/${name}`,
    listenAddr: "127.0.0.1:0",
    clusterListenAddr: "127.0.0.1:0",
    docker: false,
    synchronous: "off" as const,
  });
  try {
    const m1 = await startNode({ ...base("m1"), logger: log1 });
    nodes.push(m1);
    const cluster = m1.manager.state.cluster!;
    // A second manager, whose raft id is above 1: member 1 is the one that dials it.
    const j = await requestToJoin({
      token: cluster.joinTokens.manager,
      manager: m1.clusterAddr!,
      description: describeThisNode(["process"]),
    });
    await writeCredentials(`${dir}/m2`, j.credentials);
    await writeNodeConfig(`${dir}/m2`, {
      nodeId: j.nodeId,
      role: "manager",
      clusterId: j.clusterId,
      managers: j.managers,
      listenAddr: "127.0.0.1:0",
      raftId: j.raftId,
    });
    const m2 = await startNode({
      ...base("m2"),
      mode: "join",
      joinManagers: j.managers,
      logger: log2,
    });
    nodes.push(m2);
    const worker = await requestToJoin({
      token: cluster.joinTokens.worker,
      manager: m1.clusterAddr!,
      description: describeThisNode(["process"]),
    });

    // 1. A worker's certificate claiming to be raft member 1 dials member 2: refused, logged.
    const rogue = new Transport({
      id: 1,
      clusterId: cluster.id,
      tls: { ...worker.credentials, ca: worker.credentials.ca },
      initialBackoffMs: 50,
    }, quietHandlers);
    try {
      await rogue.listen();
      rogue.setPeer(m2.raft!.id, m2.raft!.address);
      rogue.send([{ type: "MsgHeartbeat", from: 1, to: m2.raft!.id, term: 1, commit: 0 }]);
      const line = await log2.until(/refused.*only managers speak raft/);
      assert.match(line, new RegExp(worker.nodeId));
      assert.equal(rogue.isConnected(m2.raft!.id), false);
    } finally {
      await rogue.close();
    }

    // 2. Plain TCP and TLS without a certificate on the Raft port: the handshake fails, logged.
    const { host, port } = splitHostPort(m2.raft!.address);
    // Each client gets 3 s; the server's refusal is what is checked, in its log.
    const attempt = (open: () => net.Socket) =>
      new Promise<void>((resolve) => {
        const s = open();
        const done = () => {
          clearTimeout(timer);
          s.destroy();
          resolve();
        };
        const timer = setTimeout(done, 3_000);
        s.on("error", done);
        s.on("close", done);
      });
    await attempt(() => {
      const s = net.connect({ host, port }, () => s.write("GET / HTTP/1.0\r\n\r\n"));
      return s;
    });
    await log2.until(/refused a TLS client/);
    const before = log2.lines.length;
    await attempt(() => {
      const s = tls.connect({ host, port, rejectUnauthorized: false }, () => s.write("hello"));
      return s;
    });
    await log2.until(/refused a TLS client/, 5_000).then(() => {
      assert.ok(
        log2.lines.slice(before).some((l) => /refused a TLS client/.test(l)),
        "the client without a certificate is refused and logged",
      );
    });

    // 3. A worker's certificate sending a forward request to the leader's cluster port: refused.
    const { host: ch, port: cp } = splitHostPort(m1.clusterAddr!);
    const answer = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const socket = tls.connect({
        host: ch,
        port: cp,
        key: worker.credentials.key,
        cert: worker.credentials.cert,
        ca: [worker.credentials.ca],
        servername: MANAGER_SERVERNAME,
      });
      const conn: FrameConnection = new FrameConnection(socket, {
        onMessage: (m) => {
          resolve(m as Record<string, unknown>);
          conn.close("done");
        },
        onClose: (why) => reject(new Error(why)),
      });
      socket.once("secureConnect", () => {
        conn.send({
          t: "forward",
          seq: 1,
          op: "execute",
          command: { kind: "RotateJoinToken", role: "worker", token: "x" },
          by: "user:evil",
        });
      });
    });
    assert.equal(answer.t, "forwarded");
    const error = answer.error as { code: string; message: string };
    assert.equal(error.code, "certificate_refused");
    assert.match(error.message, /presented a worker certificate: only managers may forward/);
    await log1.until(/refused a request of .*worker certificate/);
    assert.equal(m1.manager.state.cluster!.joinTokens.worker, cluster.joinTokens.worker);
  } finally {
    for (const n of nodes.reverse()) await n.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
