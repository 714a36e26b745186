/**
 * `shoal start` as a person runs it: a real process, a real SQLite data dir, real HTTP, Ctrl-C,
 * and a second start that resumes the same swarm from its log.
 */
import assert from "node:assert/strict";

const root = new URL("../../", import.meta.url).pathname;

interface Started {
  child: Deno.ChildProcess;
  api: string;
  banner: string;
  rest: Promise<string>;
}

async function start(dataDir: string): Promise<Started> {
  const child = new Deno.Command(`${root}shoal`, {
    args: ["start", "--data-dir", dataDir, "--listen-addr", "127.0.0.1:0"],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let banner = "";
  const deadline = Date.now() + 20_000;
  while (!banner.includes("Press Ctrl-C")) {
    if (Date.now() > deadline) throw new Error(`no banner in 20 s; got:\n${banner}`);
    const { value, done } = await reader.read();
    if (done) throw new Error(`shoal start exited early; printed:\n${banner}`);
    banner += value;
  }
  const api = /API\s+(http:\/\/\S+)/.exec(banner)?.[1];
  assert.ok(api, `no API address in:\n${banner}`);
  const rest = (async () => {
    let out = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return out;
      out += value;
    }
  })();
  return { child, api, banner, rest };
}

async function stop(s: Started): Promise<{ code: number; output: string }> {
  s.child.kill("SIGINT");
  const [status, output] = await Promise.all([s.child.status, s.rest]);
  return { code: status.code, output };
}

async function getJson(url: string) {
  const res = await fetch(url);
  assert.equal(res.status, 200, `${url} answered ${res.status}`);
  return await res.json();
}

Deno.test("shoal start runs a single-node swarm, stops on Ctrl-C, and resumes it", async () => {
  const dataDir = await Deno.makeTempDir({ prefix: "shoal-start-" });
  try {
    const first = await start(dataDir);
    assert.match(first.banner, /Swarm initialized: current node \([0-9a-z]{25}\) is now a manager/);
    const ping = await fetch(`${first.api}/_ping`);
    assert.equal(await ping.text(), "OK");
    const state = await getJson(`${first.api}/shoal/v1/state`);
    assert.match(state.cluster.id, /^[0-9a-z]{25}$/);
    assert.equal(state.nodes.length, 1);
    assert.equal(state.nodes[0].role, "manager");
    assert.equal(state.nodes[0].status, "ready");
    assert.equal(state.nodes[0].leader, true);
    const log = await getJson(`${first.api}/shoal/v1/log?from=1`);
    assert.deepEqual(log.entries[0].events.map((e: { type: string }) => e.type), [
      "ClusterCreated",
      "NodeRegistered",
    ]);
    assert.equal(log.entries[0].by, "user:swarm.init");
    const bad = await fetch(`${first.api}/shoal/v1/log?from=x`);
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).message, /from must be a whole number/);
    const stopped = await stop(first);
    assert.equal(stopped.code, 0);
    assert.match(stopped.output, /SIGINT: stopping/);

    const second = await start(dataDir);
    assert.match(second.banner, /Swarm resumed from/);
    const again = await getJson(`${second.api}/shoal/v1/state`);
    assert.equal(again.cluster.id, state.cluster.id, "the same swarm");
    assert.equal(again.nodes[0].id, state.nodes[0].id, "the same node identity");
    assert.equal(again.nodes[0].status, "ready");
    assert.ok(again.index > state.index, "the log kept growing: down, then ready again");
    const history = await getJson(`${second.api}/shoal/v1/log?from=1`);
    const statuses = history.entries.flatMap((
      e: { events: { type: string; data: { status?: { state: string } } }[] },
    ) =>
      e.events.filter((ev) => ev.type === "NodeStatusChanged").map((ev) => ev.data.status!.state)
    );
    assert.deepEqual(statuses, ["ready", "down", "ready"]);
    assert.equal((await stop(second)).code, 0);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("shoal start refuses bad flags with a clear message", async () => {
  const out = await new Deno.Command(`${root}shoal`, {
    args: ["start", "--sync", "sometimes"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 125);
  assert.match(
    new TextDecoder().decode(out.stderr),
    /invalid argument "sometimes" for "--sync" flag/,
  );
  const addr = await new Deno.Command(`${root}shoal`, {
    args: ["start", "--listen-addr", "nowhere", "--data-dir", await Deno.makeTempDir()],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(addr.code, 1);
  assert.match(
    new TextDecoder().decode(addr.stderr),
    /invalid address "nowhere": expected HOST:PORT/,
  );
});
