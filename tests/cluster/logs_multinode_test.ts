/**
 * `service logs` across nodes: a manager (`shoal swarm init`) and a worker (`shoal swarm join`) as
 * separate processes; a task placed on the worker writes lines there, and the real `shoal service
 * logs` against the manager shows them (the manager asks the worker's agent over its session and
 * streams them back), following new lines as they are written.
 */
import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url).pathname;

function freePorts(n: number): number[] {
  const listeners = Array.from(
    { length: n },
    () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A running `shoal` node process, its stdout gathered. */
class NodeProcess {
  readonly child: Deno.ChildProcess;
  stdout = "";
  readonly done: Promise<unknown>;

  constructor(args: string[]) {
    const child = new Deno.Command(`${root}shoal`, {
      args,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "null",
    }).spawn();
    this.child = child;
    const decoder = new TextDecoder();
    this.done = (async () => {
      for await (const chunk of child.stdout) this.stdout += decoder.decode(chunk);
      await child.status;
    })();
  }

  async waitFor(re: RegExp, ms = 30_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.stdout.match(re);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}:\n${this.stdout}`);
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    try {
      this.child.kill("SIGINT");
    } catch {
      // Already gone.
    }
    await this.done;
  }
}

async function shoal(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(`${root}shoal`, {
    args,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("service logs: a worker's task output reaches shoal service logs on the manager", async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-logs-multi-" });
  const [clusterPort, apiPort] = freePorts(2);
  const host = ["-H", `tcp://127.0.0.1:${apiPort}`];
  const nodes: NodeProcess[] = [];
  try {
    const manager = new NodeProcess([
      "swarm",
      "init",
      "--data-dir",
      `${dir}/m`,
      "--listen-addr",
      `127.0.0.1:${clusterPort}`,
      "--api-addr",
      `127.0.0.1:${apiPort}`,
      "--dispatcher-heartbeat",
      "500ms",
      "--sync",
      "off",
    ]);
    nodes.push(manager);
    const [, managerId, token] = await manager.waitFor(
      /current node \(([0-9a-z]{25})\)[\s\S]*--token (SWMTKN-\S+) /,
    );
    await manager.waitFor(/Press Ctrl-C to stop/);
    const worker = new NodeProcess([
      "swarm",
      "join",
      "--token",
      token,
      "--data-dir",
      `${dir}/w`,
      `127.0.0.1:${clusterPort}`,
    ]);
    nodes.push(worker);
    const [, workerId] = await worker.waitFor(/node {7}([0-9a-z]{25}), worker/);
    await worker.waitFor(/Press Ctrl-C to stop/);

    const create = await shoal([
      ...host,
      "service",
      "create",
      "--name",
      "talk",
      "--constraint",
      "node.role==worker",
      "--runtime",
      "process",
      "/bin/sh",
      "-c",
      'echo "from the worker"; echo "to stderr" >&2; i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.3; done',
    ]);
    assert.equal(create.code, 0, create.stderr);

    // The lines are on the worker; the manager fetches them over the worker's session.
    const deadline = Date.now() + 20_000;
    let out = "";
    for (;;) {
      const r = await shoal([...host, "service", "logs", "--no-resolve", "talk"]);
      assert.equal(r.code, 0, r.stderr);
      out = r.stdout;
      if (out.includes("tick 2")) {
        assert.match(
          r.stderr,
          new RegExp(`^[0-9a-z]{25}\\.1\\.[0-9a-z]{12}@${workerId}    \\| to stderr\\n`),
        );
        break;
      }
      assert.ok(Date.now() < deadline, `no output from the worker's task yet:\n${out}`);
      await sleep(200);
    }
    const lines = out.trimEnd().split("\n");
    const serviceId = (await shoal([...host, "service", "inspect", "-f", "{{.ID}}", "talk"])).stdout
      .trim();
    assert.match(
      lines[0],
      new RegExp(`^${serviceId}\\.1\\.[0-9a-z]{12}@${workerId}    \\| from the worker$`),
    );
    assert.ok(!out.includes(`@${managerId}`), "no line comes from the manager's node");

    const tail = await shoal([...host, "service", "logs", "--raw", "--tail", "1", "talk"]);
    assert.match(tail.stdout, /^tick \d+\n$/);

    // Following: new lines arrive from the worker as they are written.
    const follower = new Deno.Command(`${root}shoal`, {
      args: [...host, "service", "logs", "-f", "--raw", "--tail", "0", "talk"],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = follower.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let followed = "";
    try {
      const stop = Date.now() + 20_000;
      while ((followed.match(/tick \d+\n/g) ?? []).length < 3) {
        assert.ok(Date.now() < stop, `follow showed too little:\n${followed}`);
        const { value, done } = await reader.read();
        if (done) break;
        followed += value;
      }
      const ticks = [...followed.matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
      assert.ok(ticks.length >= 3, followed);
      for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i], ticks[i - 1] + 1);
      const before = Number(/tick (\d+)/.exec(tail.stdout)![1]);
      assert.ok(ticks[0] > before, "only lines written after the follow began");
    } finally {
      reader.releaseLock();
      follower.kill("SIGTERM");
      await follower.status;
      await follower.stdout.cancel().catch(() => {});
    }
  } finally {
    for (const n of nodes.reverse()) await n.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
