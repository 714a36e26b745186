/**
 * The acceptance test of service networking (#8) with real hosts: three `shoal` nodes (a manager
 * and two workers), each in its own network namespace (`ip netns`, veth pairs on a bridge, one
 * address each, and its own hostname through a UTS namespace), form one swarm. A three-tier stack
 * of process services whose programs find each other only by service name, through each node's
 * resolver (127.0.0.11 in the node's namespace, given to process tasks by their private
 * `/etc/resolv.conf`):
 *
 * - `kv`, a key-value store (an HTTP server holding a counter),
 * - `backend`, 3 replicas, each answering with its own task id and the counter it got from
 *   `http://kv:6379/`,
 * - `frontend`, publishing a port, answering with what `http://backend:8080/` said.
 *
 * The test checks that the frontend answers through the published port on every node's address,
 * that the answers come from every backend task, that `service scale backend=5` spreads them over
 * the new tasks, that when a worker's `shoal` process is killed (SIGKILL) its tasks are
 * rescheduled and the frontend keeps answering, and that a service of another stack (another
 * network) can reach the backend neither by name nor by its virtual IP.
 *
 * Needs root and iproute2 (and util-linux's `unshare`); skipped otherwise. The test creates and
 * removes everything it uses: namespaces, links, node processes and their task processes.
 */
import assert from "node:assert/strict";
import { joinArgs, sleep, until } from "./_processes.ts";

const root = new URL("../../", import.meta.url).pathname;
const deno = `${root}node_modules/deno/deno`;

/** Whether a program runs (here: `ip -V`, `unshare --version`). */
async function runs(program: string, ...args: string[]): Promise<boolean> {
  return await new Deno.Command(program, { args, stdout: "null", stderr: "null" }).output()
    .then((o) => o.success, () => false);
}

const canRun = Deno.build.os === "linux" && Deno.uid() === 0 && await runs("ip", "-V") &&
  await runs("unshare", "--version");
if (!canRun) {
  console.error("stack_netns_test: skipped (needs Linux, root, iproute2's ip and unshare)");
}

/** Names unique to this run (links' names have at most 15 characters: a pid has at most 7). */
const TAG = `sst${Deno.pid}`;

/** A /24 of 10.213.0.0/16 that no route of the host uses yet, so that parallel runs route apart. */
async function freeSubnet(): Promise<number> {
  const out = await new Deno.Command("ip", { args: ["-4", "route", "show"], stdout: "piped" })
    .output().then((o) => new TextDecoder().decode(o.stdout), () => "");
  for (let i = 0; i < 250; i++) {
    const k = 1 + (Deno.pid + i) % 250;
    if (!out.includes(`10.213.${k}.`)) return k;
  }
  return 1 + Deno.pid % 250;
}
const SUBNET = canRun ? await freeSubnet() : 0;
const BRIDGE = `${TAG}br`;
/** The test's own address on the bridge, in the root namespace. */
const HOST_ADDR = `10.213.${SUBNET}.254`;
const NODES = [1, 2, 3].map((i) => ({
  name: `stack-node-${i}`,
  ns: `${TAG}-n${i}`,
  veth: `${TAG}v${i}`,
  addr: `10.213.${SUBNET}.${i}`,
}));
/** The manager's API, on the loopback of the manager's namespace. */
const API = "tcp://127.0.0.1:4375";
const FRONT_PORT = 30080;
const PROBE_PORT = 30081;

/** Runs `ip args`; throws with its error output. */
async function ip(...args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** The bridge, the namespaces with their veths and addresses, `lo` up in each. */
async function setUp(): Promise<void> {
  await ip("link", "add", BRIDGE, "type", "bridge");
  await ip("addr", "add", `${HOST_ADDR}/24`, "dev", BRIDGE);
  await ip("link", "set", BRIDGE, "up");
  for (const n of NODES) {
    await ip("netns", "add", n.ns);
    await ip("link", "add", n.veth, "type", "veth", "peer", "name", "eth0", "netns", n.ns);
    await ip("link", "set", n.veth, "master", BRIDGE, "up");
    await ip("-n", n.ns, "addr", "add", `${n.addr}/24`, "dev", "eth0");
    await ip("-n", n.ns, "link", "set", "eth0", "up");
    await ip("-n", n.ns, "link", "set", "lo", "up");
  }
}

/**
 * Kills every process left in the namespaces (tasks outlive a killed node), by pid, then removes
 * the namespaces, links and bridge. Never throws.
 */
async function tearDown(): Promise<void> {
  for (const n of NODES) {
    const out = await new Deno.Command("ip", {
      args: ["netns", "pids", n.ns],
      stdout: "piped",
      stderr: "null",
    }).output().catch(() => undefined);
    const pids = out?.success ? new TextDecoder().decode(out.stdout).split(/\s+/) : [];
    for (const pid of pids.filter((p) => /^\d+$/.test(p))) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch {
        // Gone already.
      }
    }
  }
  await sleep(200);
  for (const n of NODES) {
    await ip("netns", "del", n.ns).catch(() => {});
    await ip("link", "del", n.veth).catch(() => {});
  }
  await ip("link", "del", BRIDGE).catch(() => {});
}

/**
 * A `shoal` node in a namespace, with its own hostname (so `node ls` tells the nodes apart),
 * its output gathered. `ip netns exec`, `unshare` and the `shoal` script all exec, so the
 * child's pid is the node's.
 */
class NsNode {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  readonly done: Promise<Deno.CommandStatus>;
  exited = false;

  constructor(readonly node: (typeof NODES)[number], args: string[]) {
    this.child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        node.ns,
        "unshare",
        "--uts",
        "--",
        "/bin/sh",
        "-c",
        'hostname "$0" && exec "$@"',
        node.name,
        `${root}shoal`,
        ...args,
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const gather = async (stream: ReadableStream<Uint8Array>, key: "stdout" | "stderr") => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this[key] += decoder.decode(chunk, { stream: true });
    };
    this.done = Promise.all([
      gather(this.child.stdout, "stdout"),
      gather(this.child.stderr, "stderr"),
    ])
      .then(() => this.child.status);
    this.done.then(() => (this.exited = true));
  }

  /** Waits until stdout matches `re`; fails with what the node printed if it exits first. */
  async waitFor(re: RegExp, ms = 60_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = this.stdout.match(re);
      if (m) return m;
      if (this.exited || Date.now() > deadline) {
        throw new Error(
          `${this.node.name}: ${this.exited ? "exited" : "timed out"} before printing ${re}\n` +
            this.tail(),
        );
      }
      await sleep(50);
    }
  }

  kill(signal: Deno.Signal): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already gone.
    }
  }

  /** The end of what the node printed, for failure messages. */
  tail(): string {
    return `--- ${this.node.name} stdout\n${this.stdout.slice(-1500)}\n` +
      `--- ${this.node.name} stderr\n${this.stderr.slice(-4000)}`;
  }
}

/** What one CLI run printed. */
interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the `shoal` CLI against the manager's API, inside the manager's namespace. */
async function cli(...args: string[]): Promise<Run> {
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", NODES[0].ns, `${root}shoal`, "--host", API, ...args],
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs the CLI and fails unless it succeeds; its stdout. */
async function cliOk(...args: string[]): Promise<string> {
  const run = await cli(...args);
  assert.equal(run.code, 0, `shoal ${args.join(" ")}: ${run.stderr}${run.stdout}`);
  return run.stdout;
}

/** One HTTP/1.0 GET on a new connection (so that each request is routed anew); the body. */
async function get(hostname: string, port: number, path = "/"): Promise<string> {
  const conn = await Deno.connect({ hostname, port });
  try {
    await conn.write(new TextEncoder().encode(`GET ${path} HTTP/1.0\r\nHost: x\r\n\r\n`));
    const text = new TextDecoder().decode(await new Response(conn.readable).arrayBuffer());
    const body = text.split("\r\n\r\n")[1]?.trim() ?? "";
    if (!/^HTTP\/1\.[01] 200/.test(text) || body === "") {
      throw new Error(`bad answer: ${JSON.stringify(text.slice(0, 300))}`);
    }
    return body;
  } finally {
    try {
      conn.close();
    } catch {
      // Closed by the reader.
    }
  }
}

/**
 * What the frontend's answer says: `frontend=<task> backend=<task> count=<n>`, the backend's
 * task and the counter it got from the key-value store.
 */
interface Answer {
  frontend: string;
  backend: string;
  count: number;
}

/** Asks the frontend once through `addr`'s published port. */
async function ask(addr: string): Promise<Answer> {
  const body = await get(addr, FRONT_PORT);
  const m = body.match(/^frontend=(\S+) backend=(\S+) count=(\d+)$/);
  if (!m) throw new Error(`unexpected answer from the frontend: ${body}`);
  return { frontend: m[1], backend: m[2], count: Number(m[3]) };
}

/**
 * The code shared by the task programs: `get(host, port, path)`, one HTTP/1.0 request on a new
 * connection (host names resolved by the system's resolver, so by the task's resolv.conf).
 */
const TASK_GET = `
const get = async (hostname, port, path) => {
  const c = await Deno.connect({ hostname, port });
  try {
    await c.write(new TextEncoder().encode("GET " + path + " HTTP/1.0\\r\\nHost: " + hostname + "\\r\\n\\r\\n"));
    const t = new TextDecoder().decode(await new Response(c.readable).arrayBuffer());
    if (!/^HTTP\\/1\\.[01] 200/.test(t)) throw new Error("bad answer: " + t.slice(0, 100));
    return t.split("\\r\\n\\r\\n")[1].trim();
  } finally { try { c.close(); } catch {} }
};
const me = Deno.env.get("SHOAL_TASK_ID");
const serve = (port, handler) => Deno.serve(
  { hostname: Deno.env.get("SHOAL_TASK_ADDR"), port, onListen() {} },
  async (req) => {
    try { return new Response(await handler(req)); }
    catch (e) { return new Response(String(e), { status: 502 }); }
  },
);
`;

/** The key-value store: a counter, incremented by each request. */
const KV = `${TASK_GET}
let count = 0;
serve(6379, () => String(++count));`;

/** The backend: its task id and the counter from `kv`, found by name. */
const BACKEND = `${TASK_GET}
serve(8080, async () => "backend=" + me + " count=" + await get("kv", 6379, "/incr"));`;

/** The frontend: its task id and what `backend` (by name) said. */
const FRONTEND = `${TASK_GET}
serve(8080, async () => "frontend=" + me + " " + await get("backend", 8080, "/"));`;

/**
 * The probe, on another stack's network: reports, as JSON, what it got from the backend by its
 * short name, its full name, and its virtual IP (in `$BACKEND_VIP`), each an answer or an error,
 * and, to show that its resolver and the mesh work for what it may reach, from itself by name
 * (`/ping`).
 */
const PROBE = `${TASK_GET}
const attempt = async (host, path = "/") => {
  try {
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error("timed out")), 10_000));
    return "answered: " + await Promise.race([get(host, 8080, path), timeout]);
  } catch (e) { return "error: " + (e && e.name) + " " + (e && e.message); }
};
serve(8080, async (req) => new URL(req.url).pathname === "/ping" ? "pong" : JSON.stringify({
  self: await attempt("probe", "/ping"),
  name: await attempt("backend"),
  fullName: await attempt("app_backend"),
  vip: await attempt(Deno.env.get("BACKEND_VIP")),
}));`;

/** A compose file (JSON is YAML) of process services. */
function compose(services: Record<string, unknown>): string {
  return JSON.stringify({ "x-shoal": { runtime: "process" }, services }, null, 2);
}

/** The ids of the service's tasks meant to run, with their nodes' names. */
async function runningTasks(
  service: string,
): Promise<{ id: string; node: string; state: string }[]> {
  const out = await cliOk(
    "service",
    "ps",
    service,
    "--no-trunc",
    "--filter",
    "desired-state=running",
    "--format",
    "{{.ID}} {{.Node}} {{.CurrentState}}",
  );
  return out.trim().split("\n").filter((l) => l !== "").map((l) => {
    const [id, node, ...state] = l.split(" ");
    return { id, node, state: state.join(" ") };
  });
}

/** Waits until `n` tasks of the service run (on nodes other than `avoid`); returns them. */
async function waitRunning(service: string, n: number, avoid?: string, ms = 90_000) {
  let last: { id: string; node: string; state: string }[] = [];
  await until(
    () =>
      `${n} running tasks of ${service}${avoid ? ` off ${avoid}` : ""}; last: ${
        JSON.stringify(last)
      }`,
    async () => {
      last = await runningTasks(service);
      return last.length === n &&
        last.every((t) => t.state.startsWith("Running") && t.node !== avoid);
    },
    ms,
  );
  return last;
}

/**
 * Asks the frontend through `addr` until the answers have come from every one of `backends`
 * (and from no other task), or fails naming what was seen.
 */
async function expectBackends(addr: string, backends: string[], ms = 60_000): Promise<Answer[]> {
  const want = [...backends].sort();
  const seen = new Set<string>();
  const answers: Answer[] = [];
  let last = "";
  await until(
    () =>
      `answers through ${addr} from backends ${want.join(", ")}; seen ${[...seen].join(", ")}` +
      `; last error: ${last}`,
    async () => {
      for (let i = 0; i < 2 * want.length; i++) {
        try {
          const a = await ask(addr);
          answers.push(a);
          seen.add(a.backend);
        } catch (err) {
          last = String(err);
        }
      }
      const stray = [...seen].filter((b) => !want.includes(b));
      assert.deepEqual(stray, [], `answers through ${addr} from tasks not running: ${stray}`);
      return seen.size === want.length;
    },
    ms,
  );
  return answers;
}

Deno.test({
  name: "a three-tier stack finds its services by name across three namespaced nodes",
  ignore: !canRun,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "shoal-stack-netns-" });
  const nodes: NsNode[] = [];
  try {
    await tearDown();
    await setUp();
    const [n1, n2, n3] = NODES;
    const manager = new NsNode(n1, [
      "swarm",
      "init",
      "--data-dir",
      `${dir}/n1`,
      "--listen-addr",
      `${n1.addr}:4377`,
      "--advertise-addr",
      n1.addr,
      "--api-addr",
      "127.0.0.1:4375",
      "--dispatcher-heartbeat",
      "500ms",
      "--sync",
      "off",
      "--log-level",
      "info",
    ]);
    nodes.push(manager);
    const [, token] = await manager.waitFor(/shoal swarm join --token (\S+) /);
    for (const n of [n2, n3]) {
      const worker = new NsNode(
        n,
        joinArgs({
          dataDir: `${dir}/${n.name}`,
          token,
          addr: `${n1.addr}:4377`,
          extra: [
            "--listen-addr",
            `${n.addr}:4377`,
            "--advertise-addr",
            n.addr,
            "--log-level",
            "info",
          ],
        }),
      );
      nodes.push(worker);
      await worker.waitFor(/joined a swarm as a worker/);
    }
    await until("3 ready nodes", async () => {
      const ls = await cli("node", "ls", "--format", "{{.Hostname}} {{.Status}}");
      return ls.stdout.split("\n").filter((l) => / Ready$/.test(l)).length === 3;
    }, 60_000);

    // The stack: every service reaches the next by its short name only.
    await Deno.writeTextFile(
      `${dir}/app.yml`,
      compose({
        kv: { command: [deno, "eval", KV] },
        backend: { command: [deno, "eval", BACKEND], deploy: { replicas: 3 } },
        frontend: { command: [deno, "eval", FRONTEND], ports: [`${FRONT_PORT}:8080`] },
      }),
    );
    await cliOk("stack", "deploy", "-c", `${dir}/app.yml`, "app");
    await waitRunning("app_kv", 1);
    await waitRunning("app_frontend", 1);
    const backends3 = await waitRunning("app_backend", 3);
    const spread = new Set(backends3.map((t) => t.node));
    assert.ok(spread.size >= 2, `3 backend tasks on one node: ${JSON.stringify(backends3)}`);

    // The published port answers on every node's address, from every backend task; the counter
    // lives in the one kv task, so it only grows.
    for (const n of NODES) {
      const answers = await expectBackends(n.addr, backends3.map((t) => t.id));
      const counts = answers.map((a) => a.count);
      assert.ok(
        counts.every((c, i) => i === 0 || c > counts[i - 1]),
        `the kv store's counter through ${n.addr} did not grow: ${counts}`,
      );
    }

    // Scaling spreads the answers over the new tasks too.
    await cliOk("service", "scale", "--detach", "app_backend=5");
    const backends5 = await waitRunning("app_backend", 5);
    await expectBackends(n1.addr, backends5.map((t) => t.id));

    // Another stack, on its own network: the backend is out of its reach, by name and by VIP.
    const vips = JSON.parse(
      await cliOk("service", "inspect", "app_backend", "--format", "{{json .Endpoint.VirtualIPs}}"),
    ) as { Addr: string }[];
    assert.equal(vips.length, 1, `the backend's VIPs: ${JSON.stringify(vips)}`);
    const vip = vips[0].Addr.split("/")[0];
    await Deno.writeTextFile(
      `${dir}/probe.yml`,
      compose({
        probe: {
          command: [deno, "eval", PROBE],
          environment: { BACKEND_VIP: vip },
          ports: [`${PROBE_PORT}:8080`],
        },
      }),
    );
    await cliOk("stack", "deploy", "-c", `${dir}/probe.yml`, "probe");
    await waitRunning("probe_probe", 1);
    let report = "";
    await until(() => `the probe's report (last: ${report})`, async () => {
      report = await get(n1.addr, PROBE_PORT).catch((e) => String(e));
      return report.startsWith("{");
    }, 60_000);
    const { self, ...probe } = JSON.parse(report) as Record<string, string>;
    assert.equal(self, "answered: pong", `the probe does not reach itself by name: ${report}`);
    // The names are not the probe's to resolve (the resolver forwards them upstream, which a
    // namespace with no route out cannot reach: a quick SERVFAIL); the VIP's mesh refuses it
    // (accepts, then closes at once). Neither may take the probe's whole 10 s.
    assert.deepEqual(Object.keys(probe).sort(), ["fullName", "name", "vip"]);
    for (const how of ["name", "fullName"]) {
      assert.match(
        probe[how],
        /^error: \S+ failed to lookup address information/,
        `the probe resolved the backend by ${how}: ${report}`,
      );
    }
    assert.match(
      probe.vip,
      /^error: \S+ (bad answer: $|.*(refused|reset))/i,
      `the probe reached the backend by its VIP ${vip}: ${report}`,
    );

    // A worker's shoal dies: its tasks move to the live nodes, and the frontend keeps answering.
    const victim = nodes.find((p) =>
      p !== manager && backends5.some((t) => t.node === p.node.name)
    )!;
    assert.ok(victim, `no worker runs a backend task: ${JSON.stringify(backends5)}`);
    victim.kill("SIGKILL");
    await victim.done;
    await until(`${victim.node.name} down`, async () => {
      const ls = await cli("node", "ls", "--format", "{{.Hostname}} {{.Status}}");
      return ls.stdout.includes(`${victim.node.name} Down`);
    }, 60_000);
    const moved = await waitRunning("app_backend", 5, victim.node.name);
    await waitRunning("app_kv", 1, victim.node.name);
    await waitRunning("app_frontend", 1, victim.node.name);
    for (const n of NODES.filter((n) => n !== victim.node)) {
      await expectBackends(n.addr, moved.map((t) => t.id));
    }
    // Once moved, every request is answered.
    const failures: string[] = [];
    for (let i = 0; i < 20; i++) {
      await ask(n1.addr).catch((e) => failures.push(String(e)));
    }
    assert.deepEqual(failures, [], "requests after the reschedule failed");
  } catch (err) {
    for (const p of nodes) console.error(p.tail());
    throw err;
  } finally {
    for (const p of nodes) p.kill("SIGKILL");
    await Promise.all(nodes.map((p) => p.done));
    await tearDown();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
