/**
 * Root CA rotation with real processes: `shoal swarm init` and a worker joined with
 * `shoal swarm join`; `shoal swarm ca --rotate` converges with the worker still running its task,
 * both nodes end with certificates of the new root (and trust it alone), the join tokens change,
 * a node joins with the new token and the old token is refused.
 */
import assert from "node:assert/strict";
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { freePorts, initArgs, joinArgs, NodeProcess, shoal, sleep, until } from "./_processes.ts";

x509.cryptoProvider.set(crypto);

interface DockerTask {
  ID: string;
  NodeID: string;
  DesiredState: string;
  Status: { State: string };
}

/** The subject key identifier of the first certificate in `pem` (hex), and of its issuer's key. */
function keyIds(pem: string): { subjectKey: string; authorityKey: string } {
  const cert = new x509.X509Certificate(pem);
  return {
    subjectKey: cert.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId ?? "",
    authorityKey: cert.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId ?? "",
  };
}

function certCount(pem: string): number {
  return pem.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
}

Deno.test("swarm ca --rotate: a worker follows the new root, tokens change", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-carot-" });
  const [clusterPort, apiPort] = freePorts(2);
  const api = `http://127.0.0.1:${apiPort}`;
  const host = ["-H", `tcp://127.0.0.1:${apiPort}`];
  const nodes: NodeProcess[] = [];
  const get = async <T>(path: string): Promise<T> => {
    const res = await fetch(`${api}${path}`);
    assert.equal(res.status, 200, `${path}: ${res.status}`);
    return await res.json() as T;
  };
  const running = async (service: string) =>
    (await get<DockerTask[]>(
      `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: { [service]: true } }))}`,
    )).filter((t) => t.Status.State === "running" && t.DesiredState === "running");
  try {
    let oldToken = "";
    let managerAddr = "";
    let workerId = "";
    let oldRoot = "";
    await t.step("a manager and a worker", async () => {
      const m = new NodeProcess(
        "manager",
        initArgs({
          dataDir: `${dir}/m`,
          listen: `127.0.0.1:${clusterPort}`,
          apiPort,
          heartbeat: "500ms",
        }),
      );
      nodes.push(m);
      await m.waitFor(/Press Ctrl-C to stop/);
      [, oldToken, managerAddr] = m.stdout.match(
        /shoal swarm join --token (SWMTKN-1-\S+) (127\.0\.0\.1:\d+)/,
      )!;
      const w = new NodeProcess(
        "worker",
        joinArgs({ dataDir: `${dir}/w`, token: oldToken, addr: managerAddr }),
      );
      nodes.push(w);
      [, workerId] = await w.waitFor(/node {7}([0-9a-z]{25}), worker/);
      await w.waitFor(/Press Ctrl-C to stop/);
      const shown = await shoal([...host, "swarm", "ca"]);
      assert.equal(shown.code, 0, shown.stderr);
      oldRoot = shown.stdout;
      assert.match(oldRoot, /^-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n$/);
      assert.equal(
        oldRoot,
        await Deno.readTextFile(`${dir}/m/certificates/swarm-root-ca.crt`).then((s) =>
          s.trim() + "\n"
        ),
      );
      const r = await shoal([
        ...host,
        "service",
        "create",
        "--detach",
        "--name",
        "pinned",
        "--replicas",
        "1",
        "--constraint",
        `node.id==${workerId}`,
        "--runtime",
        "process",
        "/bin/sleep",
        "600",
      ]);
      assert.equal(r.code, 0, r.stderr);
      await until(
        "the task running on the worker",
        async () => (await running("pinned")).length === 1,
      );
    });

    const taskBefore = (await running("pinned"))[0]?.ID;
    let newRoot = "";
    await t.step("swarm ca --rotate converges and prints the new root", async () => {
      const r = await shoal([...host, "swarm", "ca", "--rotate"]);
      assert.equal(r.code, 0, r.stderr);
      // Not a terminal: Docker's display prints the lines without bars, then the PEM.
      const m = r.stdout.match(
        /^desired root digest: \n {2}rotated TLS certificates: \n {2}rotated CA certificates: {2}\n(?:desired root digest: sha256:[0-9a-f]{64}\n)+(-----BEGIN CERTIFICATE-----\n[\s\S]+\n-----END CERTIFICATE-----\n)$/,
      );
      assert.ok(m, `unexpected output:\n${r.stdout}`);
      newRoot = m[1];
      assert.notEqual(newRoot, oldRoot);
      const shown = await shoal([...host, "swarm", "ca"]);
      assert.equal(shown.stdout, newRoot);
      const info = await get<
        { RootRotationInProgress: boolean; Spec: { CAConfig: { ForceRotate: number } } }
      >("/swarm");
      assert.equal(info.RootRotationInProgress, false);
      assert.equal(info.Spec.CAConfig.ForceRotate, 1);
    });

    await t.step("both nodes hold certificates of the new root and trust it alone", async () => {
      const rootKey = keyIds(newRoot).subjectKey;
      assert.notEqual(rootKey, keyIds(oldRoot).subjectKey);
      for (const d of ["m", "w"]) {
        const ca = await until(`${d} trusting the new root alone`, async () => {
          const ca = await Deno.readTextFile(`${dir}/${d}/certificates/swarm-root-ca.crt`);
          return ca.trim() === newRoot.trim() && ca;
        });
        assert.equal(certCount(ca), 1);
        const cert = await Deno.readTextFile(`${dir}/${d}/certificates/swarm-node.crt`);
        assert.equal(keyIds(cert).authorityKey, rootKey, `${d}: its certificate is the new root's`);
      }
      const nodes = await get<{ ID: string; Description: { TLSInfo: { TrustRoot: string } } }[]>(
        "/nodes",
      );
      assert.equal(nodes.length, 2);
      for (const n of nodes) assert.equal(n.Description.TLSInfo.TrustRoot.trim(), newRoot.trim());
      const ls = await shoal([...host, "node", "ls", "--format", "{{.TLSStatus}}"]);
      assert.equal(ls.stdout, "Ready\nReady\n", ls.stderr);
    });

    await t.step("the worker kept its task and its session", async () => {
      await sleep(1_500); // several heartbeats: a worker cut off would be marked down
      const ls = await shoal([...host, "node", "ls", "--format", "{{.ID}} {{.Status}}"]);
      assert.match(ls.stdout, new RegExp(`${workerId} Ready`));
      const now = await running("pinned");
      assert.equal(now.length, 1);
      assert.equal(now[0].ID, taskBefore, "the same task, never restarted");
      assert.equal(now[0].NodeID, workerId);
    });

    await t.step("the new token joins, the old one is refused", async () => {
      const tok = await shoal([...host, "swarm", "join-token", "-q", "worker"]);
      const newToken = tok.stdout.trim();
      assert.notEqual(newToken, oldToken);
      assert.notEqual(
        newToken.split("-")[2],
        oldToken.split("-")[2],
        "the token pins the new root",
      );
      const refused = await shoal(
        joinArgs({ dataDir: `${dir}/old`, token: oldToken, addr: managerAddr }),
      );
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /does not match the join token|not this swarm's current/);
      const w2 = new NodeProcess(
        "worker2",
        joinArgs({ dataDir: `${dir}/w2`, token: newToken, addr: managerAddr }),
      );
      nodes.push(w2);
      await w2.waitFor(/This node joined a swarm as a worker/);
      await w2.waitFor(/Press Ctrl-C to stop/);
      const cert = await Deno.readTextFile(`${dir}/w2/certificates/swarm-node.crt`);
      assert.equal(keyIds(cert).authorityKey, keyIds(newRoot).subjectKey);
      await until("3 nodes ready", async () => {
        const ls = await shoal([...host, "node", "ls", "--format", "{{.Status}}"]);
        return ls.stdout.trim().split("\n").filter((l) => l === "Ready").length === 3;
      });
    });
  } finally {
    for (const n of nodes) n.kill("SIGTERM");
    await Promise.race([Promise.all(nodes.map((n) => n.done)), sleep(10_000)]);
    for (const n of nodes) n.kill("SIGKILL");
    await Promise.all(nodes.map((n) => n.done));
    await Deno.remove(dir, { recursive: true });
  }
});
