/**
 * `service logs` end to end on a real node (`startNode`: SQLite log, an agent with the process
 * executor, the API on a TCP port): the real `docker` CLI and `shoal` read the output of process
 * tasks, with Docker's prefixes, `--tail`, `--timestamps`, task targets and `--follow`; and the
 * docker CLI's `service update` and `inspect --pretty` work on a process service.
 */
import assert from "node:assert/strict";
import { startNode } from "../../node/daemon.ts";
import { TaskState } from "../../events/schema.ts";

const DOCKER = "/usr/local/bin/docker";
const haveDocker = await Deno.stat(DOCKER).then(() => true, () => false);
const SHOAL = new URL("../../shoal", import.meta.url).pathname;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], env: Record<string, string>): Promise<Run> {
  const out = await new Deno.Command(cmd, {
    args,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Reads `child`'s stdout until `done(text)` holds or 20 s pass; returns what it read. */
async function readUntil(
  stream: ReadableStream<Uint8Array<ArrayBuffer>>,
  done: (text: string) => boolean,
): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  const deadline = Date.now() + 20_000;
  try {
    while (!done(text)) {
      const timeout = new Promise<"timeout">((r) =>
        setTimeout(() => r("timeout"), Math.max(0, deadline - Date.now()))
      );
      const next = await Promise.race([reader.read(), timeout]);
      if (next === "timeout") throw new Error(`timed out; read so far:\n${text}`);
      if (next.done) break;
      text += next.value;
    }
  } finally {
    reader.releaseLock();
  }
  return text;
}

Deno.test({
  name: "service logs: the docker CLI and shoal read process tasks' output",
  ignore: !haveDocker,
  async fn() {
    const dataDir = await Deno.makeTempDir({ prefix: "shoal-logs-" });
    const configDir = await Deno.makeTempDir({ prefix: "shoal-logs-docker-" });
    const node = await startNode({
      dataDir,
      listenAddr: "127.0.0.1:0",
      synchronous: "off",
      docker: false,
    });
    const m = node.manager;
    const host = node.apiUrl.replace("http://", "tcp://");
    const dockerEnv = { DOCKER_CONFIG: configDir, DOCKER_CLI_HINTS: "false" };
    const docker = (args: string[]) => run(DOCKER, ["-H", host, ...args], dockerEnv);
    const ok = async (args: string[]) => {
      const r = await docker(args);
      assert.equal(r.code, 0, `docker ${args.join(" ")} failed:\n${r.stderr}${r.stdout}`);
      return r;
    };
    const shoal = (args: string[]) =>
      run(SHOAL, ["--host", node.apiUrl, ...args], { NO_COLOR: "1", PATH: Deno.env.get("PATH")! });
    const create = async (name: string, script: string, replicas: number) => {
      const res = await fetch(`${node.apiUrl}/v1.41/services/create`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          Name: name,
          TaskTemplate: {
            Runtime: "process",
            ProcessSpec: { Command: "/bin/sh", Args: ["-c", script], StopGracePeriod: 1e8 },
          },
          Mode: { Replicated: { Replicas: replicas } },
        }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      const id: string = (await res.json()).ID;
      const deadline = Date.now() + 20_000;
      while (
        [...m.state.tasksOf(id)].filter((t) => t.status.state === TaskState.running).length <
          replicas
      ) {
        assert.ok(Date.now() < deadline, `the tasks of ${name} never ran`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return id;
    };
    const hostname = m.state.nodes.get(node.nodeId)!.description.hostname;

    try {
      const echoId = await create(
        "echo",
        "echo hello; sleep 0.1; echo oops >&2; sleep 0.1; echo world; exec sleep 600",
        2,
      );
      const tasks = [...m.state.tasksOf(echoId)].sort((a, b) => a.slot - b.slot);
      // The output is written once the program has printed it: wait for the last line.
      let all: Run;
      const deadline = Date.now() + 10_000;
      do {
        all = await ok(["service", "logs", "echo"]);
        if ((all.stdout.match(/world/g) ?? []).length === 2) break;
        await new Promise((r) => setTimeout(r, 100));
      } while (Date.now() < deadline);
      const prefix = (i: number) => `echo.${tasks[i].slot}.${tasks[i].id.slice(0, 12)}@${hostname}`;
      const outLines = all.stdout.trimEnd().split("\n").sort();
      assert.deepEqual(
        outLines,
        [
          `${prefix(0)}    | hello`,
          `${prefix(0)}    | world`,
          `${prefix(1)}    | hello`,
          `${prefix(1)}    | world`,
        ].sort(),
      );
      assert.deepEqual(
        all.stderr.trimEnd().split("\n").sort(),
        [
          `${prefix(0)}    | oops`,
          `${prefix(1)}    | oops`,
        ].sort(),
      );

      const tail = await ok(["service", "logs", "--tail", "1", "echo"]);
      assert.deepEqual(
        tail.stdout.trimEnd().split("\n").sort(),
        [
          `${prefix(0)}    | world`,
          `${prefix(1)}    | world`,
        ].sort(),
      );
      assert.equal(tail.stderr, "");

      const stamped = await ok(["service", "logs", "-t", "--no-task-ids", tasks[0].id]);
      const stampedLines = stamped.stdout.trimEnd().split("\n");
      assert.equal(stampedLines.length, 2);
      for (const line of stampedLines) {
        assert.match(
          line,
          new RegExp(
            `^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{9}Z echo\\.${
              tasks[0].slot
            }@${hostname}    \\| (hello|world)$`,
          ),
        );
      }

      const missing = await docker(["service", "logs", "nothing-here"]);
      assert.notEqual(missing.code, 0);
      assert.match(missing.stderr, /no such task or service: nothing-here/);

      // The shoal CLI prints the same.
      const mine = await shoal(["service", "logs", "echo"]);
      assert.equal(mine.code, 0, mine.stderr);
      assert.deepEqual(mine.stdout.trimEnd().split("\n").sort(), outLines);
      const raw = await shoal(["service", "logs", "--raw", "--tail", "1", "echo"]);
      assert.equal(raw.stdout, "world\nworld\n");
      const noIds = await shoal([
        "service",
        "logs",
        "--no-task-ids",
        "--no-trunc",
        "-n",
        "1",
        "echo",
      ]);
      assert.deepEqual(noIds.stdout.trimEnd().split("\n").sort(), [
        `echo.1@${hostname}    | world`,
        `echo.2@${hostname}    | world`,
      ]);
      const future = await shoal(["service", "logs", "--since", "2999-01-01T00:00:00Z", "echo"]);
      assert.equal(future.code, 0, future.stderr);
      assert.equal(future.stdout, "");

      // Follow: new lines arrive as they are written.
      await create("ticker", 'i=0; while true; do i=$((i+1)); echo "tick $i"; sleep 0.2; done', 1);
      const follower = new Deno.Command(DOCKER, {
        args: ["-H", host, "service", "logs", "-f", "--tail", "0", "ticker"],
        env: dockerEnv,
        stdout: "piped",
        stderr: "null",
      }).spawn();
      try {
        const seen = await readUntil(
          follower.stdout,
          (text) => (text.match(/\| tick \d+\n/g) ?? []).length >= 3,
        );
        const ticks = [...seen.matchAll(/\| tick (\d+)/g)].map((x) => Number(x[1]));
        for (let i = 1; i < ticks.length; i++) assert.equal(ticks[i], ticks[i - 1] + 1);
      } finally {
        follower.kill("SIGTERM");
        await follower.status;
      }
      const shoalFollower = new Deno.Command(SHOAL, {
        args: ["--host", node.apiUrl, "service", "logs", "--follow", "--tail", "1", "ticker"],
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "null",
      }).spawn();
      try {
        const seen = await readUntil(
          shoalFollower.stdout,
          (text) => (text.match(/\| tick \d+\n/g) ?? []).length >= 3,
        );
        assert.match(
          seen,
          new RegExp(`^ticker\\.1\\.[0-9a-z]{12}@${hostname}    \\| tick \\d+\\n`),
        );
      } finally {
        shoalFollower.kill("SIGTERM");
        await shoalFollower.status;
      }

      // The docker CLI's update and inspect --pretty on a process service.
      const pretty = await ok(["service", "inspect", "--pretty", "echo"]);
      assert.match(pretty.stdout, /Image:\s+\/bin\/sh/);
      await ok(["service", "update", "--detach", "--env-add", "GREETING=hi", "echo"]);
      const updated = m.state.services.get(echoId)!;
      assert.equal(updated.spec.task.runtime.kind, "process");
      assert.ok(updated.spec.task.runtime.kind === "process");
      assert.deepEqual(updated.spec.task.runtime.env, ["GREETING=hi"]);
      assert.equal(updated.spec.task.runtime.command, "/bin/sh");
      assert.deepEqual(updated.spec.task.runtime.args, [
        "-c",
        "echo hello; sleep 0.1; echo oops >&2; sleep 0.1; echo world; exec sleep 600",
      ]);
      const badUpdate = await docker(["service", "update", "--detach", "--user", "nobody", "echo"]);
      assert.notEqual(badUpdate.code, 0);
      assert.match(
        badUpdate.stderr,
        /ContainerSpec\.User: is not supported by the process runtime/,
      );
    } finally {
      await node.close();
      await Deno.remove(dataDir, { recursive: true });
      await Deno.remove(configDir, { recursive: true });
    }
  },
});
