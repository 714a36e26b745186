import assert from "node:assert/strict";
import { join } from "node:path";
import { TaskState, type TaskStatus } from "../../../events/schema.ts";
import { collect, sampleTask, testExecutor, within } from "../_executor_contract.ts";
import type { ExecutorOptions, ExecutorTask } from "../executor.ts";
import type { HealthState } from "../health.ts";
import { ProcessExecutor, type ProcessExecutorOptions, reapLeftoverProcess } from "./process.ts";

/** `sh -c` quoting of one word. */
const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;
/** Shell commands printing `lines`, each followed by "; ". */
const printing = (lines: readonly string[] = []) =>
  lines.map((line) => `echo ${quote(line)}; `).join("");

testExecutor("ProcessExecutor", () => {
  const root = Deno.makeTempDirSync({ prefix: "shoal-exec-" });
  return {
    make(behaviour, options) {
      const script = behaviour.kind === "exit"
        ? `${printing(behaviour.output)}exit ${behaviour.code}`
        : behaviour.kind === "serve"
        ? `trap 'exit 0' TERM; ${printing(behaviour.output)}sleep 600 & wait $!`
        : "";
      const runtime = behaviour.kind === "missing"
        ? { kind: "process", command: "/no/such/program" }
        : { kind: "process", command: "/bin/sh", args: ["-c", script] };
      return {
        executor: new ProcessExecutor({ ...options, root }),
        task: sampleTask({ runtime }),
      };
    },
    cleanup: () => Deno.remove(root, { recursive: true }),
  };
});

/** A temporary root, an executor on it, and cleanup whatever happens. */
async function withExecutor(
  body: (
    context: {
      root: string;
      make: (options?: Partial<ProcessExecutorOptions>) => ProcessExecutor;
      seen: TaskStatus[];
    },
  ) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "shoal-exec-" });
  const executors: ProcessExecutor[] = [];
  const seen: TaskStatus[] = [];
  const make = (options: Partial<ProcessExecutorOptions> = {}) => {
    const executor = new ProcessExecutor({
      root,
      onStatus: (status) => seen.push(status),
      ...options,
    });
    executors.push(executor);
    return executor;
  };
  try {
    await within(body({ root, make, seen }), 20_000, "test body");
  } finally {
    await Promise.all(executors.map((e) => e.remove().catch(() => {})));
    await Deno.remove(root, { recursive: true });
  }
}

function shellTask(
  script: string,
  runtime: Record<string, unknown> = {},
  extra = {},
): ExecutorTask {
  return sampleTask(
    { runtime: { kind: "process", command: "/bin/sh", args: ["-c", script], ...runtime } },
    extra,
  );
}

async function run(executor: ProcessExecutor, task: ExecutorTask): Promise<TaskStatus> {
  await executor.prepare(task);
  await executor.start();
  await executor.wait();
  return executor.status;
}

async function text(executor: ProcessExecutor): Promise<string[]> {
  return (await collect(executor.logs())).map((line) => `${line.stream}: ${line.text}`);
}

Deno.test("ProcessExecutor captures stdout and stderr, interleaved in order", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    await run(
      executor,
      shellTask("echo out1; echo err1 >&2; sleep 0.05; echo out2; printf 'no newline'"),
    );
    assert.deepEqual(await text(executor), [
      "stdout: out1",
      "stderr: err1",
      "stdout: out2",
      "stdout: no newline",
    ]);
  });
});

Deno.test("ProcessExecutor gives the task its environment, directory and SHOAL_ variables", async () => {
  await withExecutor(async ({ make, root }) => {
    const executor = make();
    const task = shellTask(
      'echo "pwd=$(pwd)"; echo "home=$HOME"; echo "greeting=$GREETING"; echo "bare=${BARE-unset}"; ' +
        "env | grep ^SHOAL_ | sort",
      { env: ["GREETING=hello world", "BARE", "SHOAL_TASK_ID=spoofed"] },
      {
        id: "abc123",
        serviceName: "api",
        serviceId: "svc9",
        slot: 2,
        nodeId: "n7",
        addressing: { addr: "127.1.0.3", services: { SHOAL_SERVICE_DB_HOST: "127.1.0.2" } },
      },
    );
    Deno.env.set("BARE", "leaked");
    try {
      assert.equal((await run(executor, task)).state, TaskState.complete);
    } finally {
      Deno.env.delete("BARE");
    }
    const dir = join(root, "abc123");
    assert.equal(executor.taskDir, dir);
    assert.deepEqual((await collect(executor.logs())).map((l) => l.text), [
      `pwd=${dir}`,
      `home=${dir}`,
      "greeting=hello world",
      "bare=unset",
      `SHOAL_CONFIGS_DIR=${dir}/configs`,
      "SHOAL_NODE_ID=n7",
      `SHOAL_SECRETS_DIR=${dir}/secrets`,
      "SHOAL_SERVICE_DB_HOST=127.1.0.2",
      "SHOAL_SERVICE_ID=svc9",
      "SHOAL_SERVICE_NAME=api",
      "SHOAL_TASK_ADDR=127.1.0.3",
      "SHOAL_TASK_ID=abc123",
      "SHOAL_TASK_NAME=api.2.abc123",
      "SHOAL_TASK_SLOT=2",
    ]);
  });
});

Deno.test("ProcessExecutor runs in the working directory asked for, and rejects a missing one", async () => {
  await withExecutor(async ({ make, root }) => {
    const ok = make();
    await run(ok, shellTask("pwd", { dir: root }));
    assert.deepEqual(await text(ok), [`stdout: ${root}`]);

    const bad = make();
    const status = await bad.prepare(shellTask("pwd", { dir: "/no/such/dir" }, { id: "task2" }));
    assert.equal(status.state, TaskState.rejected);
    assert.equal(
      status.err,
      'task: cannot use working directory "/no/such/dir": No such file or directory',
    );
  });
});

Deno.test("ProcessExecutor writes secrets and configs with their modes, in owner-only directories", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    const secret = new TextEncoder().encode("s3cret\n");
    const config = new TextEncoder().encode("port = 8080\n");
    const task = sampleTask({
      runtime: {
        kind: "process",
        command: "/bin/sh",
        args: ["-c", 'cat "$SHOAL_SECRETS_DIR/db_password"; cat "$SHOAL_CONFIGS_DIR/app/app.conf"'],
      },
      secrets: [{ id: "sec1", name: "db_password" }],
      configs: [{ id: "cfg1", name: "appconf", target: "/app/app.conf", mode: 0o440 }],
    }, {
      secretData: new Map([["sec1", secret]]),
      configData: new Map([["cfg1", config]]),
    });
    assert.equal((await executor.prepare(task)).state, TaskState.ready);
    const dir = executor.taskDir!;
    const mode = (path: string) => Deno.statSync(path).mode! & 0o777;
    assert.equal(mode(dir), 0o700);
    assert.equal(mode(join(dir, "secrets")), 0o700);
    assert.equal(mode(join(dir, "configs")), 0o700);
    assert.equal(mode(join(dir, "configs", "app")), 0o700);
    assert.equal(mode(join(dir, "secrets", "db_password")), 0o444);
    assert.equal(mode(join(dir, "configs", "app", "app.conf")), 0o440);
    assert.deepEqual(Deno.readFileSync(join(dir, "secrets", "db_password")), secret);
    await executor.start();
    await executor.wait();
    assert.deepEqual((await collect(executor.logs())).map((l) => l.text), [
      "s3cret",
      "port = 8080",
    ]);

    // Another user cannot reach them (checked for real when the test runs as root).
    if (Deno.uid() === 0) {
      const other = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "cat",
          join(dir, "secrets", "db_password"),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(other.success, false);
      assert.match(new TextDecoder().decode(other.stderr), /Permission denied/);
    }
  });
});

Deno.test("ProcessExecutor rejects a task whose secret data is missing or whose target escapes", async () => {
  await withExecutor(async ({ make }) => {
    const missing = await make().prepare(sampleTask({
      runtime: { kind: "process", command: "/bin/true" },
      secrets: [{ id: "sec1", name: "db_password" }],
    }, { id: "t1" }));
    assert.equal(missing.state, TaskState.rejected);
    assert.equal(
      missing.err,
      'task: cannot write secret "db_password" (sec1): its data did not reach this node',
    );

    const escaping = await make().prepare(sampleTask({
      runtime: { kind: "process", command: "/bin/true" },
      configs: [{ id: "cfg1", name: "c", target: "../../etc/passwd" }],
    }, { id: "t2", configData: new Map([["cfg1", new Uint8Array([1])]]) }));
    assert.equal(escaping.state, TaskState.rejected);
    assert.match(escaping.err, /^task: invalid config target "..\/..\/etc\/passwd"/);
  });
});

Deno.test("ProcessExecutor rejects a missing program, a bare name not on PATH, and a non-executable file", async () => {
  await withExecutor(async ({ make, root }) => {
    const prepare = (command: string, id: string) =>
      make().prepare(sampleTask({ runtime: { kind: "process", command } }, { id }));
    const noSuch = await prepare("/no/such", "t1");
    assert.equal(noSuch.state, TaskState.rejected);
    assert.equal(noSuch.err, 'task: cannot start "/no/such": No such file or directory');
    assert.equal(noSuch.message, "preparing");

    const notOnPath = await prepare("shoal-no-such-program", "t2");
    assert.equal(
      notOnPath.err,
      'task: cannot start "shoal-no-such-program": executable file not found in $PATH',
    );

    const plain = join(root, "plain.txt");
    await Deno.writeTextFile(plain, "not a program", { mode: 0o644 });
    await Deno.chmod(plain, 0o644);
    const notExecutable = await prepare(plain, "t3");
    assert.equal(notExecutable.err, `task: cannot start "${plain}": Permission denied`);

    // A bare name is found on PATH.
    const onPath = make();
    await run(
      onPath,
      sampleTask({ runtime: { kind: "process", command: "echo", args: ["hi"] } }, { id: "t4" }),
    );
    assert.equal(onPath.status.state, TaskState.complete);
    assert.deepEqual(await text(onPath), ["stdout: hi"]);
  });
});

Deno.test("ProcessExecutor rejects a program that disappears between prepare and start", async () => {
  await withExecutor(async ({ make, root, seen }) => {
    const program = join(root, "prog.sh");
    await Deno.writeTextFile(program, "#!/bin/sh\necho hi\n");
    await Deno.chmod(program, 0o755);
    const executor = make();
    await executor.prepare(sampleTask({ runtime: { kind: "process", command: program } }));
    await Deno.remove(program);
    const status = await executor.start();
    assert.equal(status.state, TaskState.rejected);
    assert.equal(status.err, `task: cannot start "${program}": No such file or directory`);
    assert.deepEqual(seen.map((s) => s.state).slice(-2), [TaskState.starting, TaskState.rejected]);
  });
});

Deno.test("ProcessExecutor writes the pid to the task directory while the program runs", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    await executor.prepare(shellTask("trap 'exit 0' TERM; sleep 600 & wait $!"));
    await executor.start();
    const pidFile = join(executor.taskDir!, "pid");
    assert.equal(Number(Deno.readTextFileSync(pidFile).trim()), executor.pid);
    assert.equal(executor.status.runtimeId, String(executor.pid));
    await executor.stop(5_000);
    assert.throws(() => Deno.statSync(pidFile), Deno.errors.NotFound);
  });
});

Deno.test("ProcessExecutor stop() sends SIGTERM, and a program that handles it is shut down within the grace period", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    await executor.prepare(
      shellTask("trap 'echo got TERM; exit 7' TERM; echo ready; sleep 600 & wait $!"),
    );
    await executor.start();
    await waitForLine(executor, "ready");
    const began = performance.now();
    const status = await executor.stop(10_000);
    assert.ok(performance.now() - began < 5_000, "it exited long before the grace period");
    assert.equal(status.state, TaskState.shutdown);
    assert.equal(status.exitCode, 7);
    assert.deepEqual(await executor.wait(), { code: 7, signal: null });
    assert.ok((await text(executor)).includes("stdout: got TERM"));
  });
});

Deno.test("ProcessExecutor stop() SIGKILLs a program that ignores SIGTERM once the grace period is over", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    await executor.prepare(shellTask("trap '' TERM; echo ready; while :; do sleep 0.05; done"));
    await executor.start();
    await waitForLine(executor, "ready");
    const began = performance.now();
    const status = await executor.stop(300);
    const took = performance.now() - began;
    assert.ok(took >= 290, `waited the grace period (${took} ms)`);
    assert.ok(took < 5_000, `then killed it (${took} ms)`);
    assert.equal(status.state, TaskState.shutdown);
    assert.deepEqual(await executor.wait(), { code: 137, signal: "SIGKILL" });
  });
});

Deno.test("ProcessExecutor uses the task's stop signal and grace period", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    await executor.prepare(
      shellTask(
        "trap 'exit 0' TERM; trap 'echo got INT; exit 0' INT; echo ready; sleep 600 & wait $!",
        {
          stopSignal: "INT",
          stopGracePeriod: 200,
        },
      ),
    );
    await executor.start();
    await waitForLine(executor, "ready");
    await executor.stop();
    assert.ok((await text(executor)).includes("stdout: got INT"));
  });
});

Deno.test("ProcessExecutor kills what the program left behind in its process group", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    // The shell exits at once; its background child would keep running (and hold the pipes).
    await run(executor, shellTask("sleep 600 & echo $!"));
    assert.equal(executor.status.state, TaskState.complete);
    const child = Number((await collect(executor.logs()))[0].text);
    assert.ok(child > 0);
    // Gone, or a zombie waiting for init to reap it (SIGKILL takes a moment to finish it).
    const stateOf = () =>
      Deno.readTextFile(`/proc/${child}/stat`).then(
        (stat) => stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3),
        () => "gone",
      );
    let state = await stateOf();
    for (let i = 0; i < 100 && state !== "gone" && state !== "Z"; i++) {
      await delay(10);
      state = await stateOf();
    }
    assert.ok(state === "gone" || state === "Z", `the child is ${state}`);
  });
});

Deno.test("ProcessExecutor a program killed by a signal fails with 128 + the signal", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    const status = await run(executor, shellTask("kill -KILL $$"));
    assert.equal(status.state, TaskState.failed);
    assert.equal(status.err, "task: non-zero exit (137)");
    assert.deepEqual(await executor.wait(), { code: 137, signal: "SIGKILL" });
  });
});

Deno.test("ProcessExecutor rotates its logs at the size asked for", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make({ logRotation: { maxBytes: 400, maxFiles: 3 } });
    const status = await run(
      executor,
      shellTask('i=1; while [ $i -le 40 ]; do echo "line $i"; i=$((i+1)); done'),
    );
    assert.equal(status.state, TaskState.complete);
    const logs = join(executor.taskDir!, "logs");
    const files = [...Deno.readDirSync(logs)].map((e) => e.name).sort();
    assert.deepEqual(files, ["output.log", "output.log.1", "output.log.2"]);
    for (const file of files) assert.ok(Deno.statSync(join(logs, file)).size <= 400);
    const lines = (await collect(executor.logs())).map((l) => l.text);
    // The oldest lines were rotated away; what is left is the end, in order, without gaps.
    assert.ok(lines.length < 40 && lines.length > 10, `${lines.length} lines kept`);
    const first = Number(lines[0].split(" ")[1]);
    assert.deepEqual(lines, Array.from({ length: 41 - first }, (_, i) => `line ${first + i}`));
    assert.deepEqual((await collect(executor.logs({ tail: 3 }))).map((l) => l.text), [
      "line 38",
      "line 39",
      "line 40",
    ]);
  });
});

Deno.test("ProcessExecutor logs follow a running task line by line", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    await executor.prepare(shellTask("for i in 1 2 3; do echo tick $i; sleep 0.05; done"));
    await executor.start();
    const lines = await collect(executor.logs({ follow: true }));
    assert.deepEqual(lines.map((l) => l.text), ["tick 1", "tick 2", "tick 3"]);
    assert.ok(lines[2].time - lines[0].time >= 50, "each line has the time it was printed");
  });
});

// ---------------------------------------------------------------------------------------------
// Health checks

function healthTask(script: string, test: string[], check: Record<string, number> = {}) {
  return shellTask(script, {
    healthcheck: { test, interval: 50, timeout: 1_000, retries: 2, startPeriod: 0, ...check },
  });
}

Deno.test("ProcessExecutor keeps a task with a health check starting until it is healthy", async () => {
  const health: HealthState[] = [];
  await withExecutor(async ({ make, root, seen }) => {
    const flag = join(root, "healthy");
    const executor = make({ onHealth: (state) => health.push(state) });
    // Failures in the start period do not count: it would be unhealthy after 2 otherwise.
    await executor.prepare(
      healthTask("trap 'exit 0' TERM; sleep 600 & wait $!", ["CMD", "test", "-e", flag], {
        startPeriod: 10_000,
      }),
    );
    const starting = executor.start();
    await delay(200);
    assert.equal(executor.status.state, TaskState.starting);
    assert.equal(executor.health, "starting");
    await Deno.writeTextFile(flag, "");
    const status = await starting;
    assert.equal(status.state, TaskState.running);
    assert.equal(executor.health, "healthy");
    assert.deepEqual(health, ["healthy"]);
    assert.equal(seen.at(-1)!.message, "started");
    await executor.stop(1_000);
  });
});

Deno.test("ProcessExecutor stops an unhealthy task and fails it", async () => {
  const health: HealthState[] = [];
  await withExecutor(async ({ make, root }) => {
    const flag = join(root, "healthy");
    await Deno.writeTextFile(flag, "");
    const executor = make({ onHealth: (state) => health.push(state) });
    await executor.prepare(
      healthTask("trap 'exit 0' TERM; sleep 600 & wait $!", ["CMD-SHELL", `test -e ${flag}`]),
    );
    assert.equal((await executor.start()).state, TaskState.running);
    await Deno.remove(flag);
    await executor.wait();
    assert.deepEqual(health, ["healthy", "unhealthy"]);
    assert.equal(executor.status.state, TaskState.failed);
    assert.equal(executor.status.err, "task: unhealthy process");
  });
});

Deno.test("ProcessExecutor fails a task that turns unhealthy before it was ever healthy", async () => {
  await withExecutor(async ({ make, seen }) => {
    const executor = make();
    await executor.prepare(healthTask("trap 'exit 3' TERM; sleep 600 & wait $!", ["CMD", "false"]));
    const status = await executor.start();
    assert.equal(status.state, TaskState.failed);
    assert.equal(status.err, "task: non-zero exit (3): unhealthy process");
    assert.ok(!seen.some((s) => s.state === TaskState.running), "it never ran as healthy");
  });
});

Deno.test("ProcessExecutor rejects a task with an invalid health check", async () => {
  await withExecutor(async ({ make }) => {
    const status = await make().prepare(healthTask("true", ["HTTP", "ftp://x"]));
    assert.equal(status.state, TaskState.rejected);
    assert.equal(
      status.err,
      'task: invalid health check: HTTP needs an http or https URL, not "ftp://x"',
    );
  });
});

async function waitForLine(executor: ProcessExecutor, wanted: string): Promise<void> {
  for await (const line of executor.logs({ follow: true })) {
    if (line.text === wanted) return;
  }
  throw new Error(`The task ended without printing "${wanted}"`);
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export type { ExecutorOptions };

Deno.test("ProcessExecutor rejects a task it cannot prepare for any reason, instead of hanging", async () => {
  await withExecutor(async ({ make, root }) => {
    // The root is a file: the task directory cannot be created.
    const file = join(root, "not-a-dir");
    await Deno.writeTextFile(file, "");
    const executor = make({ root: file });
    const status = await executor.prepare(shellTask("true"));
    assert.equal(status.state, TaskState.rejected);
    assert.match(status.err, /^task: /);
    await assert.rejects(executor.wait(), /without running/);
  });
});

Deno.test("ProcessExecutor stop() while waiting to be healthy shuts the task down", async () => {
  await withExecutor(async ({ make }) => {
    const executor = make();
    await executor.prepare(
      healthTask("trap 'exit 0' TERM; sleep 600 & wait $!", ["CMD", "false"], {
        startPeriod: 60_000,
      }),
    );
    const starting = executor.start();
    await delay(100);
    await executor.stop(1_000);
    assert.equal((await starting).state, TaskState.shutdown);
    assert.equal(executor.status.message, "shutdown");
  });
});

Deno.test("reapLeftoverProcess kills the task's leftover process, and only if it is the task's", async () => {
  await withExecutor(async ({ root }) => {
    const spawnAs = async (taskId: string) => {
      await Deno.mkdir(join(root, taskId), { recursive: true });
      const child = new Deno.Command("sleep", {
        args: ["600"],
        env: { SHOAL_TASK_ID: taskId },
        detached: true,
      }).spawn();
      await Deno.writeTextFile(join(root, taskId, "pid"), `${child.pid}\n`);
      return child;
    };
    const leftover = await spawnAs("left1");
    assert.equal(await reapLeftoverProcess(root, "left1"), true);
    assert.equal((await leftover.status).signal, "SIGKILL");
    assert.throws(() => Deno.statSync(join(root, "left1", "pid")), Deno.errors.NotFound);

    // A pid file naming some other process (a reused pid) kills nothing.
    const stranger = await spawnAs("other");
    await Deno.writeTextFile(join(root, "other", "pid"), `${stranger.pid}\n`);
    await Deno.mkdir(join(root, "left2"));
    await Deno.writeTextFile(join(root, "left2", "pid"), `${stranger.pid}\n`);
    assert.equal(await reapLeftoverProcess(root, "left2"), false);
    stranger.kill("SIGKILL");
    await stranger.status;
    assert.equal(await reapLeftoverProcess(root, "nopid"), false);
  });
});
