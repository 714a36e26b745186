/**
 * The Docker executor against the real `dockerd` (tools/docker_setup.sh starts it and builds
 * `shoal-test/busybox:1`; CI runs that first): the Executor contract, then what only containers
 * do. `SHOAL_SKIP_DOCKER_TESTS=1` leaves out everything that needs the daemon.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { TaskState, type TaskStatus } from "../../../events/schema.ts";
import { collect, sampleTask, testExecutor, within } from "../_executor_contract.ts";
import { DockerApi } from "../docker_api.ts";
import type { ExecutorTask } from "../executor.ts";
import type { HealthState } from "../health.ts";
import { taskDirPaths } from "../task_dir.ts";
import {
  adoptOrRemove,
  configMountPath,
  containerBody,
  DockerExecutor,
  type DockerExecutorOptions,
  type DockerExecutorTask,
  hostPorts,
  parseDockerTime,
  SHOAL_LABELS,
  SWARM_LABELS,
} from "./docker.ts";

/** The image tools/docker_setup.sh builds. */
const TEST_IMAGE = "shoal-test/busybox:1";
/** Whether the tests that need a real daemon are left out. */
const SKIP_DOCKER = Deno.env.get("SHOAL_SKIP_DOCKER_TESTS") === "1";

/** `sh -c` quoting of one word. */
const quote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;
/** Shell commands printing `lines`, each followed by "; ". */
const printing = (lines: readonly string[] = []) =>
  lines.map((line) => `echo ${quote(line)}; `).join("");
/** A fresh task id (lowercase letters and digits, as task dirs need). */
const newId = () => `t${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;

if (!SKIP_DOCKER) {
  testExecutor("DockerExecutor", () => {
    const root = Deno.makeTempDirSync({ prefix: "shoal-docker-" });
    const api = new DockerApi();
    return {
      make(behaviour, options) {
        const script = behaviour.kind === "exit"
          ? `${printing(behaviour.output)}exit ${behaviour.code}`
          : behaviour.kind === "serve"
          ? `trap 'exit 0' TERM; ${printing(behaviour.output)}sleep 600 & wait $!`
          : "";
        const runtime = behaviour.kind === "missing"
          ? { kind: "container", image: TEST_IMAGE, command: ["/no/such/program"] }
          : { kind: "container", image: TEST_IMAGE, command: ["/bin/sh", "-c", script] };
        return {
          executor: new DockerExecutor({ ...options, api, root }),
          task: sampleTask({ runtime }, { id: newId() }),
        };
      },
      async cleanup() {
        api.close();
        await Deno.remove(root, { recursive: true });
      },
    };
  }, { timeoutMs: 30_000 });
}

// ---------------------------------------------------------------------------------------------
// Without a daemon

/** A container task with `runtime` fields and `extra` task fields. */
function containerTask(
  runtime: Record<string, unknown>,
  extra: Record<string, unknown> = {},
  rest: Partial<DockerExecutorTask> = {},
): DockerExecutorTask {
  return {
    ...sampleTask(
      { runtime: { kind: "container", image: TEST_IMAGE, ...runtime }, ...extra },
      { id: newId(), nodeId: "node1", ...rest },
    ),
    ...(rest.ports ? { ports: rest.ports } : {}),
  };
}

Deno.test("containerBody: labels, entrypoint and command, env, mounts, health check, host network", () => {
  const task = containerTask(
    {
      labels: { team: "web", [SWARM_LABELS.taskId]: "spoofed" },
      command: ["/bin/app"],
      args: ["--port", "80"],
      env: ["A=1", "BARE", "B=x=y"],
      hostname: "h1",
      user: "65534",
      dir: "/work",
      mounts: [{ type: "tmpfs", target: "/scratch" }, {
        type: "bind",
        source: "/srv",
        target: "/data",
        readOnly: true,
      }],
      stopSignal: "SIGINT",
      stopGracePeriod: 2_500,
      healthcheck: { test: ["CMD", "true"], interval: 200, timeout: 1000, retries: 2 },
    },
    {
      secrets: [{ id: "s1", name: "db_password" }, { id: "s2", name: "key", target: "/etc/k" }],
      configs: [{ id: "c1", name: "app.conf" }, { id: "c2", name: "nginx", target: "etc/n.conf" }],
      resources: { limits: { nanoCPUs: 500_000_000, memoryBytes: 64 << 20 } },
    },
    { id: "abc", serviceName: "api", serviceId: "svc9", slot: 3, nodeId: "n7" },
  );
  const dir = taskDirPaths("/var/lib/shoal/tasks", "abc");
  const body = containerBody(task, dir);
  assert.deepEqual(body.Labels, {
    team: "web",
    "com.docker.swarm.task": "",
    "com.docker.swarm.task.id": "abc",
    "com.docker.swarm.task.name": "api.3.abc",
    "com.docker.swarm.node.id": "n7",
    "com.docker.swarm.service.id": "svc9",
    "com.docker.swarm.service.name": "api",
    "io.shoal.task.id": "abc",
    "io.shoal.node.id": "n7",
    "io.shoal.service.id": "svc9",
    "io.shoal.service.name": "api",
    "io.shoal.task.slot": "3",
  });
  assert.deepEqual(body.Entrypoint, ["/bin/app"]);
  assert.deepEqual(body.Cmd, ["--port", "80"]);
  assert.deepEqual(body.Env, [
    "A=1",
    "B=x=y",
    "SHOAL_TASK_ADDR=127.0.0.1",
    "SHOAL_TASK_ID=abc",
    "SHOAL_TASK_NAME=api.3.abc",
    "SHOAL_TASK_SLOT=3",
    "SHOAL_SERVICE_ID=svc9",
    "SHOAL_SERVICE_NAME=api",
    "SHOAL_NODE_ID=n7",
  ]);
  assert.equal(body.Hostname, "h1");
  assert.equal(body.User, "65534");
  assert.equal(body.WorkingDir, "/work");
  assert.equal(body.StopSignal, "SIGINT");
  assert.equal(body.StopTimeout, 3);
  assert.deepEqual(body.Healthcheck, {
    Test: ["CMD", "true"],
    Interval: 200_000_000,
    Timeout: 1_000_000_000,
    Retries: 2,
    StartPeriod: 0,
  });
  assert.equal(body.HostConfig?.NetworkMode, "host");
  assert.deepEqual(body.HostConfig?.RestartPolicy, { Name: "no" });
  assert.equal(body.HostConfig?.NanoCpus, 500_000_000);
  assert.equal(body.HostConfig?.Memory, 64 << 20);
  assert.deepEqual(body.HostConfig?.Mounts, [
    { Type: "tmpfs", Target: "/scratch", ReadOnly: false },
    { Type: "bind", Source: "/srv", Target: "/data", ReadOnly: true },
    {
      Type: "bind",
      Source: "/var/lib/shoal/tasks/abc/secrets/db_password",
      Target: "/run/secrets/db_password",
      ReadOnly: true,
    },
    {
      Type: "bind",
      Source: "/var/lib/shoal/tasks/abc/secrets/etc/k",
      Target: "/etc/k",
      ReadOnly: true,
    },
    {
      Type: "bind",
      Source: "/var/lib/shoal/tasks/abc/configs/app.conf",
      Target: "/app.conf",
      ReadOnly: true,
    },
    {
      Type: "bind",
      Source: "/var/lib/shoal/tasks/abc/configs/etc/n.conf",
      Target: "/etc/n.conf",
      ReadOnly: true,
    },
  ]);
  assert.equal(configMountPath("x"), "/x");
});

Deno.test("containerBody: no command keeps the image's; a disabled or HTTP check turns the image's off", () => {
  const dir = taskDirPaths("/tmp", "x");
  const plain = containerBody(containerTask({}), dir);
  assert.equal(plain.Entrypoint, undefined);
  assert.equal(plain.Cmd, undefined);
  assert.equal(plain.Healthcheck, undefined);
  assert.equal(plain.StopSignal, "SIGTERM");
  assert.equal(plain.StopTimeout, 10);
  const none = containerBody(containerTask({ healthcheck: { test: ["NONE"] } }), dir);
  assert.deepEqual(none.Healthcheck, { Test: ["NONE"] });
  const http = containerBody(
    containerTask({ healthcheck: { test: ["HTTP", "http://127.0.0.1:8080/"] } }),
    dir,
  );
  assert.deepEqual(http.Healthcheck, { Test: ["NONE"] });
});

Deno.test("hostPorts: host-mode ports on their target port; another published port is refused", () => {
  assert.deepEqual(
    hostPorts([
      { name: "", protocol: "tcp", targetPort: 80, publishedPort: 0, publishMode: "host" },
      { name: "", protocol: "udp", targetPort: 53, publishedPort: 53, publishMode: "host" },
      { name: "", protocol: "tcp", targetPort: 81, publishedPort: 30001, publishMode: "ingress" },
    ]).map((p) => `${p.publishedPort}:${p.targetPort}/${p.protocol}`),
    ["80:80/tcp", "53:53/udp"],
  );
  assert.throws(
    () =>
      hostPorts([{
        name: "",
        protocol: "tcp",
        targetPort: 80,
        publishedPort: 8080,
        publishMode: "host",
      }]),
    /cannot publish port 80\/tcp on host port 8080: Shoal's containers use the host's network/,
  );
});

Deno.test("parseDockerTime reads Docker's nanosecond timestamps to the millisecond", () => {
  assert.equal(
    parseDockerTime("2026-11-23T18:45:12.333295094Z"),
    Date.parse("2026-11-23T18:45:12.333Z"),
  );
  assert.equal(parseDockerTime("2026-11-23T18:45:12Z"), Date.parse("2026-11-23T18:45:12Z"));
  assert.ok(Number.isNaN(parseDockerTime("hello")));
});

// ---------------------------------------------------------------------------------------------
// With the daemon

interface Context {
  api: DockerApi;
  root: string;
  seen: TaskStatus[];
  make: (options?: Partial<DockerExecutorOptions>) => DockerExecutor;
}

/** A test with a client, a temporary root and executors removed afterwards whatever happens. */
function dockerTest(name: string, body: (context: Context) => Promise<void>): void {
  Deno.test({
    name,
    ignore: SKIP_DOCKER,
    async fn() {
      const api = new DockerApi();
      const root = await Deno.makeTempDir({ prefix: "shoal-docker-" });
      const executors: DockerExecutor[] = [];
      const seen: TaskStatus[] = [];
      const make = (options: Partial<DockerExecutorOptions> = {}) => {
        const executor = new DockerExecutor({
          api,
          root,
          onStatus: (status) => seen.push(status),
          ...options,
        });
        executors.push(executor);
        return executor;
      };
      try {
        await within(body({ api, root, seen, make }), 45_000, "test body");
      } finally {
        await Promise.all(executors.map((e) => e.remove().catch(() => {})));
        api.close();
        await Deno.remove(root, { recursive: true });
      }
    },
  });
}

function shellTask(
  script: string,
  runtime: Record<string, unknown> = {},
  extra: Record<string, unknown> = {},
  rest: Partial<DockerExecutorTask> = {},
): DockerExecutorTask {
  return containerTask({ command: ["/bin/sh", "-c", script], ...runtime }, extra, rest);
}

async function run(executor: DockerExecutor, task: ExecutorTask): Promise<TaskStatus> {
  await executor.prepare(task);
  await executor.start();
  await executor.wait().catch(() => {});
  return executor.status;
}

async function text(executor: DockerExecutor): Promise<string[]> {
  return (await collect(executor.logs())).map((line) => `${line.stream}: ${line.text}`);
}

const bytes = (text: string) => new TextEncoder().encode(text);

dockerTest(
  "DockerExecutor: exit codes become complete or failed, with the code",
  async ({ make }) => {
    for (const code of [0, 1, 42, 255]) {
      const executor = make();
      const status = await run(executor, shellTask(`exit ${code}`));
      assert.equal(status.exitCode, code);
      if (code === 0) {
        assert.equal(status.state, TaskState.complete);
        assert.equal(status.err, "");
      } else {
        assert.equal(status.state, TaskState.failed);
        assert.equal(status.err, `task: non-zero exit (${code})`);
      }
      assert.deepEqual(await executor.wait(), { code, signal: null });
    }
  },
);

dockerTest(
  "DockerExecutor: stdout and stderr, env, hostname, user, working directory, labels",
  async ({ api, make }) => {
    const executor = make();
    const task = shellTask(
      'echo "host=$(hostname) user=$(id -u) pwd=$(pwd) greeting=$GREETING"; sleep 0.1; ' +
        "echo problem >&2; sleep 0.1; env | grep ^SHOAL_TASK_NAME; printf 'no newline'",
      { env: ["GREETING=hello world", "BARE"], hostname: "box", user: "65534", dir: "/tmp" },
      {},
      { serviceName: "api", slot: 2 },
    );
    assert.equal((await run(executor, task)).state, TaskState.complete);
    assert.deepEqual(await text(executor), [
      "stdout: host=box user=65534 pwd=/tmp greeting=hello world",
      "stderr: problem",
      `stdout: SHOAL_TASK_NAME=api.2.${task.id}`,
      "stdout: no newline",
    ]);
    const info = await api.inspectContainer(executor.containerId!);
    assert.equal(info?.Name, `/api.2.${task.id}`);
    assert.equal(info?.Config.Labels?.[SWARM_LABELS.taskId], task.id);
    assert.equal(info?.Config.Labels?.[SHOAL_LABELS.nodeId], "node1");
    assert.equal(info?.HostConfig.NetworkMode, "host");
    assert.equal(executor.status.runtimeId, info?.Id);
  },
);

dockerTest(
  "DockerExecutor: secrets and configs are mounted read-only, with their content and mode",
  async ({ make, root }) => {
    const executor = make();
    const task: DockerExecutorTask = {
      ...shellTask(
        "cat /run/secrets/db_password; echo; cat /etc/app/app.conf; echo; cat /motd; echo; " +
          "stat -c '%a %u:%g' /run/secrets/db_password /etc/app/app.conf; " +
          "if echo x > /run/secrets/db_password; then echo writable; else echo read-only; fi; " +
          "if echo x > /etc/app/app.conf; then echo writable; else echo read-only; fi",
        {},
        {
          secrets: [{ id: "s1", name: "db_password", mode: 0o400, uid: "65534", gid: "65534" }],
          configs: [
            { id: "c1", name: "app", target: "/etc/app/app.conf" },
            { id: "c2", name: "motd" },
          ],
        },
      ),
      secretData: new Map([["s1", bytes("hunter2")]]),
      configData: new Map([["c1", bytes("port = 80")], ["c2", bytes("welcome")]]),
    };
    const status = await run(executor, task);
    assert.equal(status.state, TaskState.complete, status.err);
    const lines = (await collect(executor.logs())).map((l) => l.text);
    const owner = Deno.uid() === 0 ? "65534:65534" : `${Deno.uid()}:${Deno.gid()}`;
    assert.deepEqual(lines.filter((l) => !l.startsWith("/bin/sh:")), [
      "hunter2",
      "port = 80",
      "welcome",
      `400 ${owner}`,
      "444 0:0",
      "read-only",
      "read-only",
    ]);
    // The files live in the task's directory, owner-only, and go with the task.
    assert.equal(executor.taskDir, join(root, task.id));
    assert.equal((await Deno.stat(join(root, task.id))).mode! & 0o777, 0o700);
    await executor.remove();
    await assert.rejects(Deno.stat(join(root, task.id)), Deno.errors.NotFound);
  },
);

dockerTest(
  "DockerExecutor: a missing image is rejected with SwarmKit's No such image",
  async ({ make, seen }) => {
    const executor = make({ pullTimeoutMs: 30_000 });
    const status = await executor.prepare(containerTask({ image: "shoal-test/no-such-image:1" }));
    assert.equal(status.state, TaskState.rejected);
    assert.match(
      status.err,
      /^task: No such image: shoal-test\/no-such-image:1 \(pull failed: .+\)$/,
    );
    assert.deepEqual(seen.map((s) => s.message), ["accepted", "preparing", "preparing"]);
    assert.equal(executor.containerId, undefined);
  },
);

dockerTest(
  "DockerExecutor: a healthy container stays starting until Docker says healthy",
  async ({ make, seen }) => {
    const health: HealthState[] = [];
    const executor = make({ onHealth: (state) => health.push(state), healthPollMs: 50 });
    // Healthy once /tmp/ready exists, which the program creates after 0.6 s.
    const task = shellTask("sleep 0.6; touch /tmp/ready; echo ready; sleep 600", {
      stopGracePeriod: 0,
      healthcheck: {
        test: ["CMD-SHELL", "test -e /tmp/ready"],
        interval: 100,
        timeout: 1000,
        retries: 100,
      },
    });
    await executor.prepare(task);
    const startedAt = performance.now();
    const started = await executor.start();
    assert.ok(performance.now() - startedAt >= 500, "start() waited for the health check");
    assert.equal(started.state, TaskState.running);
    assert.equal(executor.health, "healthy");
    assert.deepEqual(health.at(-1), "healthy");
    assert.deepEqual(seen.map((s) => s.message), [
      "accepted",
      "preparing",
      "prepared",
      "starting",
      "started",
    ]);
    assert.equal((await executor.stop()).state, TaskState.shutdown);
  },
);

dockerTest(
  "DockerExecutor: an unhealthy container fails with unhealthy container",
  async ({ make, seen }) => {
    const health: HealthState[] = [];
    const executor = make({ onHealth: (state) => health.push(state), healthPollMs: 50 });
    const task = shellTask("trap 'exit 0' TERM; sleep 600 & wait $!", {
      healthcheck: { test: ["CMD", "false"], interval: 100, timeout: 1000, retries: 2 },
    });
    await executor.prepare(task);
    const started = await executor.start();
    assert.equal(started.state, TaskState.failed);
    assert.equal(started.err, "task: unhealthy container");
    assert.equal(executor.health, "unhealthy");
    assert.deepEqual(health, ["unhealthy"]);
    assert.ok(!seen.some((s) => s.state === TaskState.running), "it never ran");
    assert.equal((await executor.wait()).code, 0);
  },
);

dockerTest("DockerExecutor: a container that turns unhealthy later fails", async ({ make }) => {
  const executor = make({ healthPollMs: 50 });
  // Healthy for a second, then not.
  const task = shellTask("touch /tmp/ok; sleep 1; rm /tmp/ok; sleep 600", {
    stopGracePeriod: 0,
    healthcheck: {
      test: ["CMD-SHELL", "test -e /tmp/ok"],
      interval: 100,
      timeout: 1000,
      retries: 1,
    },
  });
  await executor.prepare(task);
  assert.equal((await executor.start()).state, TaskState.running);
  await executor.wait();
  assert.equal(executor.status.state, TaskState.failed);
  assert.equal(executor.status.err, "task: non-zero exit (137): unhealthy container");
});

dockerTest(
  "DockerExecutor: Shoal's HTTP health check is probed by the agent over the host network",
  async ({ make, seen }) => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    const health: HealthState[] = [];
    const executor = make({ onHealth: (state) => health.push(state) });
    // The server comes up after 0.5 s; the task is running only then.
    const task = shellTask(
      `mkdir -p /tmp/www; echo ok > /tmp/www/index.html; sleep 0.5; ` +
        `exec httpd -f -p 127.0.0.1:${port} -h /tmp/www`,
      {
        stopGracePeriod: 0,
        healthcheck: {
          test: ["HTTP", `http://127.0.0.1:${port}/`],
          interval: 100,
          timeout: 1000,
          retries: 100,
        },
      },
    );
    await executor.prepare(task);
    const before = performance.now();
    assert.equal((await executor.start()).state, TaskState.running);
    assert.ok(performance.now() - before >= 400, "running only once the server answered");
    assert.deepEqual(health, ["healthy"]);
    assert.equal(seen.at(-1)?.message, "started");
    assert.equal((await executor.stop()).state, TaskState.shutdown);
  },
);

dockerTest(
  "DockerExecutor: stop waits the grace period, then kills; a shorter one later wins",
  async ({ make }) => {
    // Ignores the stop signal.
    const stubborn = "trap '' TERM; echo up; while true; do sleep 0.05; done";
    const executor = make();
    await executor.prepare(shellTask(stubborn, { stopGracePeriod: 1_500 }));
    await executor.start();
    const before = performance.now();
    const stopped = await executor.stop();
    const took = performance.now() - before;
    assert.equal(stopped.state, TaskState.shutdown);
    assert.equal(stopped.exitCode, 137);
    assert.ok(took >= 1_400 && took < 4_000, `stopped after ${took} ms`);

    const second = make();
    await second.prepare(shellTask(stubborn, { stopGracePeriod: 60_000 }));
    await second.start();
    const stopping = second.stop();
    const at = performance.now();
    await new Promise((resolve) => setTimeout(resolve, 100));
    await second.stop(200);
    await stopping;
    assert.ok(performance.now() - at < 5_000, "the shorter grace period took effect");
    assert.equal(second.status.state, TaskState.shutdown);

    // A program that honours its stop signal (SIGINT here) ends at once, with its own code.
    const polite = make();
    await polite.prepare(
      shellTask("trap 'exit 3' INT; sleep 600 & wait $!", { stopSignal: "INT" }),
    );
    await polite.start();
    const quick = performance.now();
    assert.equal((await polite.stop()).exitCode, 3);
    assert.ok(performance.now() - quick < 3_000);
  },
);

dockerTest("DockerExecutor: logs tail, since and follow", async ({ make }) => {
  const executor = make();
  await executor.prepare(
    shellTask("for i in 1 2 3 4 5; do echo line$i; done; sleep 0.3; echo late"),
  );
  await executor.start();
  const follow = collect(executor.logs({ follow: true }));
  await executor.wait();
  assert.deepEqual((await follow).map((l) => l.text), [
    "line1",
    "line2",
    "line3",
    "line4",
    "line5",
    "late",
  ]);
  const all = await collect(executor.logs());
  assert.deepEqual((await collect(executor.logs({ tail: 2 }))).map((l) => l.text), [
    "line5",
    "late",
  ]);
  const since = all.at(-1)!.time;
  assert.deepEqual((await collect(executor.logs({ since }))).map((l) => l.text), ["late"]);
});

dockerTest(
  "DockerExecutor: adoptOrRemove finds leftover containers; adopt() takes one over",
  async ({ api, make, root }) => {
    const nodeId = `n${newId()}`;
    // An agent ran two tasks on this node, then died: one still runs, one exited 4.
    const runningTask = shellTask("trap 'exit 0' TERM; echo alive; sleep 600 & wait $!", {}, {}, {
      nodeId,
    });
    const exitedTask = shellTask("exit 4", {}, {}, { nodeId });
    const first = new DockerExecutor({ api, root });
    await first.prepare(runningTask);
    await first.start();
    const second = new DockerExecutor({ api, root });
    await run(second, exitedTask);
    // (The executors are dropped without remove: the agent is gone.)

    const found = await adoptOrRemove(api, nodeId, { root });
    assert.deepEqual(
      found.adopted.map((c) => [c.taskId, c.state, c.name, c.slot]),
      [[runningTask.id, "running", `web.1.${runningTask.id}`, 1]],
    );
    assert.deepEqual(found.removed.map((c) => [c.taskId, c.state, c.exitCode]), [
      [exitedTask.id, "exited", 4],
    ]);
    assert.equal(await api.inspectContainer(second.containerId!), undefined);
    assert.equal(found.adopted[0].id, first.containerId);

    // The new agent adopts the running one: it reports running, and stops it as usual.
    const seen: TaskStatus[] = [];
    const adopter = make({ onStatus: (status) => seen.push(status) });
    const adopted = await adopter.adopt(runningTask, found.adopted[0].id);
    assert.equal(adopted.state, TaskState.running);
    assert.equal(adopted.runtimeId, first.containerId);
    assert.deepEqual((await collect(adopter.logs())).map((l) => l.text), ["alive"]);
    assert.equal((await adopter.stop(5_000)).state, TaskState.shutdown);
    assert.deepEqual(seen.map((s) => s.message), ["starting", "started", "shutdown"]);
    await adopter.remove();
    assert.deepEqual(await adoptOrRemove(api, nodeId), { adopted: [], removed: [] });
  },
);

dockerTest(
  "DockerExecutor: keep decides what is adopted; adopting a stopped one reports its end",
  async ({ api, make, root }) => {
    const nodeId = `n${newId()}`;
    const task = shellTask("exit 5", {}, {}, { nodeId });
    const old = new DockerExecutor({ api, root });
    await run(old, task);
    const found = await adoptOrRemove(api, nodeId, { keep: (c) => c.taskId === task.id });
    assert.deepEqual(found.adopted.map((c) => [c.taskId, c.exitCode]), [[task.id, 5]]);
    const adopter = make();
    const status = await adopter.adopt(task, found.adopted[0].id);
    assert.equal(status.state, TaskState.failed);
    assert.equal(status.err, "task: non-zero exit (5)");
    await assert.rejects(
      make().adopt(shellTask("true"), found.adopted[0].id),
      /is not task t\w+'s/,
    );
  },
);

dockerTest(
  "DockerExecutor: a leftover container of the same task is replaced at prepare",
  async ({ api, make }) => {
    const task = shellTask("echo second");
    const old = new DockerExecutor({ api, root: await Deno.makeTempDir() });
    await old.prepare(task);
    const fresh = make();
    assert.equal((await run(fresh, task)).state, TaskState.complete);
    assert.notEqual(fresh.containerId, old.containerId);
    assert.equal(await api.inspectContainer(old.containerId!), undefined);
  },
);

dockerTest(
  "DockerExecutor: a process task and an impossible host port are rejected",
  async ({ make }) => {
    const processTask = sampleTask({ runtime: { kind: "process", command: "/bin/true" } }, {
      id: newId(),
    });
    const status = await make().prepare(processTask);
    assert.equal(status.state, TaskState.rejected);
    assert.equal(status.err, "task: the Docker executor cannot run a process task");

    const refused = await make().prepare(
      shellTask("true", {}, {}, {
        ports: [{
          name: "",
          protocol: "tcp",
          targetPort: 80,
          publishedPort: 81,
          publishMode: "host",
        }],
      }),
    );
    assert.equal(refused.state, TaskState.rejected);
    assert.match(refused.err, /cannot publish port 80\/tcp on host port 81/);
  },
);
