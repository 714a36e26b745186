/**
 * `node promote` and `node demote` on live processes: a worker becomes a manager (it joins the Raft
 * group and serves the API), then the leader is demoted: leadership moves to the promoted node
 * first, and the old leader carries on as a worker.
 */
import assert from "node:assert/strict";
import {
  freePorts,
  initArgs,
  initOutput,
  joinArgs,
  NodeProcess,
  shoal,
  until,
} from "./_processes.ts";

interface ApiNode {
  ID: string;
  Status: { State: string };
  Spec: { Role: string };
  ManagerStatus?: { Leader?: boolean; Reachability: string };
}

Deno.test({
  name: "node promote and demote change roles live",
  sanitizeResources: false,
  sanitizeOps: false,
}, async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-roles-" });
  const [apiM, apiW] = freePorts(2);
  const hostM = ["--host", `tcp://127.0.0.1:${apiM}`];
  const hostW = ["--host", `tcp://127.0.0.1:${apiW}`];
  const procs: NodeProcess[] = [];
  const nodes = async (api: number) => {
    const res = await fetch(`http://127.0.0.1:${api}/nodes`);
    if (!res.ok) throw new Error(`${res.status}`);
    return await res.json() as ApiNode[];
  };
  try {
    const m = new NodeProcess(
      "m",
      initArgs({ dataDir: `${dir}/m`, listen: "127.0.0.1:0", apiPort: apiM, heartbeat: "500ms" }),
    );
    procs.push(m);
    const { id: mid, token, addr } = await initOutput(m);
    const w = new NodeProcess(
      "w",
      joinArgs({
        dataDir: `${dir}/w`,
        token,
        addr,
        extra: [
          "--listen-addr",
          "127.0.0.1:0",
          "--api-addr",
          `127.0.0.1:${apiW}`,
          "--log-level",
          "info",
        ],
      }),
    );
    procs.push(w);
    const [, wid] = await w.waitFor(/joined a swarm as a worker\.\n\n {2}node {7}([0-9a-z]{25})/);
    await until(
      "the worker is ready",
      async () => (await nodes(apiM)).find((n) => n.ID === wid)?.Status.State === "ready",
    );

    await t.step("promote: the worker becomes a reachable manager with its own API", async () => {
      const r = await shoal([...hostM, "node", "promote", wid]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `Node ${wid} promoted to a manager in the swarm.\n`);
      await w.waitFor(/This node was promoted to a manager\./);
      await until("two reachable managers, seen from the new one", async () => {
        const ns = await nodes(apiW).catch(() => [] as ApiNode[]);
        return ns.filter((n) => n.ManagerStatus?.Reachability === "reachable").length === 2;
      }, 30_000);
      const created = await shoal([
        ...hostW,
        "service",
        "create",
        "--detach",
        "--name",
        "via-w",
        "--runtime",
        "process",
        "/bin/sleep",
        "600",
      ]);
      assert.equal(created.code, 0, created.stderr);
    });

    await t.step("demote the leader: leadership moves first, and it becomes a worker", async () => {
      const r = await shoal([...hostW, "node", "demote", mid]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `Manager ${mid} demoted in the swarm.\n`);
      await m.waitFor(/This node was demoted to a worker\./, 30_000);
      await until("w leads, m is a worker again", async () => {
        const ns = await nodes(apiW).catch(() => [] as ApiNode[]);
        const mm = ns.find((n) => n.ID === mid);
        const ww = ns.find((n) => n.ID === wid);
        return ww?.ManagerStatus?.Leader === true && mm?.Spec.Role === "worker" &&
          mm.ManagerStatus === undefined && mm.Status.State === "ready";
      }, 30_000);
      const ls = await shoal([...hostW, "service", "ls", "--format", "{{.Name}}"]);
      assert.equal(ls.stdout.trim(), "via-w");
    });
  } catch (err) {
    for (const p of procs) console.error(`--- ${p.name}\n${p.stdout}\n${p.stderr.slice(-5000)}`);
    throw err;
  } finally {
    for (const p of procs) p.kill("SIGTERM");
    await Promise.all(procs.map((p) => p.done));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
