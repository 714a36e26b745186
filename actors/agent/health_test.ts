import assert from "node:assert/strict";
import { join } from "node:path";
import { HealthCheck } from "../../events/schema.ts";
import { type Clock, systemClock } from "../runtime.ts";
import { within } from "./_executor_contract.ts";
import {
  healthCheckProblem,
  HealthMonitor,
  type HealthState,
  isHealthCheckEnabled,
  type ProbeResult,
  runProbe,
} from "./health.ts";

/** Real time, but it knows which timers are still armed (Deno's sanitizers do not say). */
class TrackingClock implements Clock {
  readonly armed = new Set<unknown>();
  now(): number {
    return systemClock.now();
  }
  setTimeout(callback: () => void, ms: number): unknown {
    const handle = systemClock.setTimeout(() => {
      this.armed.delete(handle);
      callback();
    }, ms);
    this.armed.add(handle);
    return handle;
  }
  clearTimeout(handle: unknown): void {
    this.armed.delete(handle);
    systemClock.clearTimeout(handle);
  }
}

const check = (input: Partial<HealthCheck>): HealthCheck => HealthCheck.parse(input);

async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "shoal-health-" });
  try {
    await within(body(dir), 15_000, "test body");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** A monitor whose every probe and change is recorded, stopped whatever happens. */
async function monitoring(
  hc: HealthCheck,
  body: (m: {
    monitor: HealthMonitor;
    probes: { result: ProbeResult; state: HealthState; at: number }[];
    changes: HealthState[];
    until: (predicate: () => boolean) => Promise<void>;
  }) => Promise<void>,
): Promise<void> {
  const probes: { result: ProbeResult; state: HealthState; at: number }[] = [];
  const changes: HealthState[] = [];
  const waiters = new Set<() => void>();
  const monitor = new HealthMonitor(hc, {
    onProbe: (result, state) => {
      probes.push({ result, state, at: performance.now() });
      for (const wake of waiters) wake();
    },
    onChange: (state) => changes.push(state),
  });
  const until = async (predicate: () => boolean) => {
    while (!predicate()) {
      await new Promise<void>((resolve) => {
        waiters.add(resolve);
      });
      waiters.clear();
    }
  };
  try {
    await body({ monitor, probes, changes, until });
  } finally {
    await monitor.stop();
  }
}

Deno.test("isHealthCheckEnabled and healthCheckProblem read a test as Docker does, plus HTTP", () => {
  assert.equal(isHealthCheckEnabled(undefined), false);
  assert.equal(isHealthCheckEnabled(check({ test: [] })), false);
  assert.equal(isHealthCheckEnabled(check({ test: ["NONE"] })), false);
  assert.equal(isHealthCheckEnabled(check({ test: ["CMD", "true"] })), true);
  assert.equal(healthCheckProblem(check({ test: ["CMD", "true"] })), undefined);
  assert.equal(healthCheckProblem(check({ test: ["CMD-SHELL", "exit 0"] })), undefined);
  assert.equal(healthCheckProblem(check({ test: ["HTTP", "http://127.0.0.1:1/x"] })), undefined);
  assert.equal(healthCheckProblem(check({ test: ["CMD"] })), "CMD needs a program to run");
  assert.equal(
    healthCheckProblem(check({ test: ["CMD-SHELL", " "] })),
    "CMD-SHELL needs a command line",
  );
  assert.equal(
    healthCheckProblem(check({ test: ["HTTP", "nope"] })),
    'HTTP needs a URL, not "nope"',
  );
  assert.equal(
    healthCheckProblem(check({ test: ["curl", "x"] })),
    'the test must start with NONE, CMD, CMD-SHELL or HTTP, not "curl"',
  );
  assert.throws(() => new HealthMonitor(check({ test: ["NONE"] })), TypeError);
  assert.throws(() => new HealthMonitor(check({ test: ["CMD"] })), /CMD needs a program/);
});

Deno.test("runProbe runs CMD and CMD-SHELL and keeps their output and exit code", async () => {
  const ok = await runProbe(["CMD", "/bin/echo", "fine"], { timeoutMs: 5_000 });
  assert.equal(ok.ok, true);
  assert.equal(ok.output, "fine\n");
  assert.equal(ok.exitCode, 0);
  assert.ok(ok.end >= ok.start);

  const bad = await runProbe(["CMD-SHELL", "echo broken >&2; exit 2"], { timeoutMs: 5_000 });
  assert.equal(bad.ok, false);
  assert.equal(bad.output, "broken\n");
  assert.equal(bad.exitCode, 2);

  const env = await runProbe(["CMD-SHELL", 'echo "$X"'], { timeoutMs: 5_000, env: { X: "y" } });
  assert.equal(env.output, "y\n");

  const missing = await runProbe(["CMD", "/no/such"], { timeoutMs: 5_000 });
  assert.equal(missing.ok, false);
  assert.equal(missing.output, 'cannot run "/no/such": No such file or directory');
});

Deno.test("runProbe kills a probe that exceeds its timeout, and its children", async () => {
  const began = performance.now();
  const result = await runProbe(["CMD-SHELL", "sleep 30 & sleep 30"], { timeoutMs: 100 });
  assert.ok(performance.now() - began < 5_000);
  assert.equal(result.ok, false);
  assert.equal(result.output, "Health check exceeded timeout (100ms)");
});

Deno.test("runProbe caps the output it keeps", async () => {
  const result = await runProbe(["CMD-SHELL", "head -c 10000 /dev/zero | tr '\\0' a"], {
    timeoutMs: 5_000,
  });
  assert.equal(result.ok, true);
  assert.equal(result.output.length, 4096);
});

Deno.test("runProbe HTTP: 2xx and 3xx are healthy, other statuses, refusals and timeouts are not", async () => {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/slow") await new Promise((resolve) => setTimeout(resolve, 300));
    if (path === "/moved") return new Response(null, { status: 302, headers: { location: "/" } });
    return new Response("body", { status: path === "/down" ? 503 : 200 });
  });
  const base = `http://127.0.0.1:${server.addr.port}`;
  try {
    const up = await runProbe(["HTTP", `${base}/health`], { timeoutMs: 5_000 });
    assert.deepEqual([up.ok, up.output], [true, "HTTP 200 OK"]);
    const moved = await runProbe(["HTTP", `${base}/moved`], { timeoutMs: 5_000 });
    assert.equal(moved.ok, true);
    const down = await runProbe(["HTTP", `${base}/down`], { timeoutMs: 5_000 });
    assert.deepEqual([down.ok, down.output], [false, "HTTP 503 Service Unavailable"]);
    const slow = await runProbe(["HTTP", `${base}/slow`], { timeoutMs: 50 });
    assert.deepEqual([slow.ok, slow.output], [false, "Health check exceeded timeout (50ms)"]);
  } finally {
    await server.shutdown();
  }
  const refused = await runProbe(["HTTP", `${base}/health`], { timeoutMs: 5_000 });
  assert.equal(refused.ok, false);
  assert.match(refused.output, /^GET http:\/\/127\.0\.0\.1:\d+\/health failed: /);
});

Deno.test("HealthMonitor turns healthy on the first good probe", async () => {
  await monitoring(
    check({ test: ["CMD", "true"], interval: 20 }),
    async ({ monitor, changes, until }) => {
      assert.equal(monitor.state, "starting");
      monitor.start();
      await until(() => changes.length > 0);
      assert.equal(monitor.state, "healthy");
      assert.deepEqual(changes, ["healthy"]);
    },
  );
});

Deno.test("HealthMonitor turns unhealthy after `retries` consecutive failures, and back", async () => {
  await withDir(async (dir) => {
    const flag = join(dir, "ok");
    await Deno.writeTextFile(flag, "");
    const hc = check({ test: ["CMD", "test", "-e", flag], interval: 20, retries: 3 });
    await monitoring(hc, async ({ monitor, probes, changes, until }) => {
      monitor.start();
      await until(() => monitor.state === "healthy");
      await Deno.remove(flag);
      const healthyProbes = probes.length;
      await until(() => monitor.state === "unhealthy");
      const failing = probes.slice(healthyProbes).filter((p) => !p.result.ok);
      // Exactly the third failure in a row turned it unhealthy.
      assert.deepEqual(failing.map((p) => p.state), ["healthy", "healthy", "unhealthy"]);
      assert.equal(monitor.failingStreak, 3);
      await Deno.writeTextFile(flag, "");
      await until(() => monitor.state === "healthy");
      assert.equal(monitor.failingStreak, 0);
      assert.deepEqual(changes, ["healthy", "unhealthy", "healthy"]);
      assert.ok(monitor.log.length <= 5);
    });
  });
});

Deno.test("HealthMonitor does not count failures during the start period", async () => {
  const hc = check({ test: ["CMD", "false"], interval: 25, retries: 1, startPeriod: 300 });
  await monitoring(hc, async ({ monitor, probes, until }) => {
    const began = performance.now();
    monitor.start();
    await until(() => monitor.state === "unhealthy");
    // Every probe that started within the period left it starting; the first after it counted.
    const during = probes.slice(0, -1);
    assert.ok(during.length >= 3, `${during.length} probes failed quietly`);
    assert.ok(during.every((p) => p.state === "starting"));
    assert.ok(probes.at(-1)!.result.start - Math.floor(performance.timeOrigin + began) >= 290);
  });
});

Deno.test("HealthMonitor counts failures in the start period once a probe has succeeded", async () => {
  await withDir(async (dir) => {
    const flag = join(dir, "ok");
    await Deno.writeTextFile(flag, "");
    const hc = check({
      test: ["CMD", "test", "-e", flag],
      interval: 20,
      retries: 2,
      startPeriod: 60_000,
    });
    await monitoring(hc, async ({ monitor, until }) => {
      monitor.start();
      await until(() => monitor.state === "healthy");
      await Deno.remove(flag);
      await until(() => monitor.state === "unhealthy");
    });
  });
});

Deno.test("HealthMonitor stop() kills a probe in flight and arms nothing more", async () => {
  const clock = new TrackingClock();
  const hc = check({ test: ["CMD", "sleep", "30"], interval: 10, timeout: 60_000 });
  const monitor = new HealthMonitor(hc, { clock });
  monitor.start();
  await new Promise((resolve) => setTimeout(resolve, 100)); // the probe is running now
  assert.equal(clock.armed.size, 0, "no next probe is armed while one runs");
  const began = performance.now();
  await monitor.stop();
  assert.ok(performance.now() - began < 5_000, "the probe was killed, not waited for");
  assert.equal(monitor.log.length, 0);
  assert.equal(monitor.state, "starting");
  assert.equal(clock.armed.size, 0);
  await monitor.stop();
});

Deno.test("HealthMonitor stop() clears the timer of the next probe", async () => {
  const clock = new TrackingClock();
  let probes = 0;
  const monitor = new HealthMonitor(check({ test: ["CMD", "true"], interval: 20 }), {
    clock,
    onProbe: () => probes++,
  });
  monitor.start();
  assert.equal(clock.armed.size, 1);
  await monitor.stop();
  assert.equal(clock.armed.size, 0);
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(probes, 0);
  assert.throws(() => monitor.start(), /twice/);
});
