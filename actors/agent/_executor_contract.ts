/**
 * The one test suite every {@linkcode Executor} passes: the fake and process executors now, the
 * Docker executor later (DESIGN.md: one suite per interface, run against every implementation).
 * Call `testExecutor(name, makeHarness)` from the implementation's `_test.ts` file; the harness
 * turns a runtime-neutral {@linkcode Behaviour} into a task for that runtime.
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  TaskSpec,
  TaskState,
  type TaskStateName,
  taskStateName,
  type TaskStatus,
} from "../../events/schema.ts";
import {
  type Executor,
  type ExecutorOptions,
  type ExecutorTask,
  TaskNotRunError,
} from "./executor.ts";
import type { LogLine } from "./log_capture.ts";

/** What the task under test does, whatever the runtime. */
export type Behaviour =
  /** Prints `output` (lines, on stdout) and exits with `code`. */
  | { kind: "exit"; code: number; output?: string[] }
  /** Prints `output`, then runs until it gets the stop signal, and then exits at once. */
  | { kind: "serve"; output?: string[] }
  /** Names a program that does not exist. */
  | { kind: "missing" };

/** What a runtime's test file gives the suite. */
export interface ExecutorHarness {
  /** A fresh executor, with `options`, and a task that behaves as `behaviour`. */
  make(
    behaviour: Behaviour,
    options: ExecutorOptions,
  ):
    | { executor: Executor; task: ExecutorTask }
    | Promise<{ executor: Executor; task: ExecutorTask }>;
  /** Called after each test, whatever happened. */
  cleanup?(): Promise<void>;
}

/** A task for tests: service `web`, slot 1, on node `node1`, with `spec` parsed from `input`. */
export function sampleTask(
  input: unknown,
  extra: Partial<Omit<ExecutorTask, "spec">> = {},
): ExecutorTask {
  return {
    id: "task1",
    serviceId: "svc1",
    serviceName: "web",
    slot: 1,
    nodeId: "node1",
    ...extra,
    spec: TaskSpec.parse(input),
  };
}

/** Fails with `what` if `promise` takes longer than `ms`; clears its timer either way. */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Collects `lines` until it ends. */
export async function collect(lines: AsyncIterable<LogLine>): Promise<LogLine[]> {
  const out: LogLine[] = [];
  for await (const line of lines) out.push(line);
  return out;
}

const states = (statuses: readonly TaskStatus[]): TaskStateName[] =>
  statuses.map((status) => taskStateName(status.state));

/** Registers the Executor contract tests. */
export function testExecutor(
  name: string,
  makeHarness: () => ExecutorHarness | Promise<ExecutorHarness>,
  options: { timeoutMs?: number } = {},
): void {
  const timeoutMs = options.timeoutMs ?? 10_000;

  const test = (
    title: string,
    behaviour: Behaviour,
    body: (executor: Executor, task: ExecutorTask, seen: TaskStatus[]) => Promise<void>,
  ) =>
    Deno.test(`${name}: ${title}`, async () => {
      const harness = await makeHarness();
      const seen: TaskStatus[] = [];
      const { executor, task } = await harness.make(behaviour, {
        onStatus: (status) => seen.push(status),
      });
      try {
        await within(body(executor, task, seen), timeoutMs, title);
      } finally {
        await executor.remove().catch(() => {});
        await harness.cleanup?.();
      }
    });

  test(
    "a task that exits 0 goes through every state to complete, with SwarmKit's messages",
    { kind: "exit", code: 0 },
    async (executor, task, seen) => {
      assert.equal(executor.status.state, TaskState.assigned);
      const before = Date.now();
      const prepared = await executor.prepare(task);
      assert.equal(prepared.state, TaskState.ready);
      await executor.start();
      const exit = await executor.wait();
      assert.equal(exit.code, 0);
      assert.deepEqual(states(seen), [
        "accepted",
        "preparing",
        "ready",
        "starting",
        "running",
        "complete",
      ]);
      assert.deepEqual(seen.map((s) => s.message), [
        "accepted",
        "preparing",
        "prepared",
        "starting",
        "started",
        "finished",
      ]);
      assert.ok(seen.every((s) => s.err === ""));
      assert.ok(seen[4].runtimeId, "running carries the runtime's id for the task");
      assert.equal(executor.status, seen.at(-1));
      assert.equal(executor.status.exitCode, 0);
      for (let i = 0; i < seen.length; i++) {
        assert.ok(seen[i].timestamp >= (i === 0 ? before : seen[i - 1].timestamp));
        assert.ok(seen[i].timestamp <= Date.now());
      }
    },
  );

  test(
    'a task that exits 3 fails with "task: non-zero exit (3)"',
    { kind: "exit", code: 3 },
    async (executor, task, seen) => {
      await executor.prepare(task);
      await executor.start();
      assert.deepEqual(await executor.wait(), { code: 3, signal: null });
      assert.deepEqual(states(seen).slice(-2), ["running", "failed"]);
      assert.equal(executor.status.state, TaskState.failed);
      assert.equal(executor.status.err, "task: non-zero exit (3)");
      assert.equal(executor.status.exitCode, 3);
    },
  );

  test(
    "a program that does not exist is rejected, and wait() says it never ran",
    { kind: "missing" },
    async (executor, task, seen) => {
      await executor.prepare(task);
      await executor.start();
      assert.equal(executor.status.state, TaskState.rejected);
      assert.match(executor.status.err, /^task: cannot start ".+": /);
      assert.ok(!states(seen).includes("running"));
      await assert.rejects(executor.wait(), TaskNotRunError);
    },
  );

  test(
    "stop() shuts a running task down and the status says shutdown",
    { kind: "serve", output: ["up"] },
    async (executor, task, seen) => {
      await executor.prepare(task);
      const started = await executor.start();
      assert.equal(started.state, TaskState.running);
      assert.equal(executor.status.state, TaskState.running);
      const stopped = await executor.stop(5_000);
      assert.equal(stopped.state, TaskState.shutdown);
      assert.equal(stopped.message, "shutdown");
      assert.equal(stopped.err, "");
      await executor.wait();
      assert.deepEqual(states(seen).slice(-2), ["running", "shutdown"]);
      // Stopping again changes nothing.
      assert.equal(await executor.stop(), stopped);
    },
  );

  test(
    "a task stopped before it started is shut down and never runs",
    { kind: "serve" },
    async (executor, task, seen) => {
      await executor.prepare(task);
      await executor.stop();
      assert.equal(executor.status.state, TaskState.shutdown);
      assert.equal((await executor.start()).state, TaskState.shutdown);
      assert.deepEqual(states(seen), ["accepted", "preparing", "ready", "shutdown"]);
      await assert.rejects(executor.wait(), TaskNotRunError);
    },
  );

  test(
    "start() before prepare() and a second prepare() are refused",
    { kind: "exit", code: 0 },
    async (executor, task) => {
      await assert.rejects(async () => await executor.start(), /Cannot start task/);
      await executor.prepare(task);
      await assert.rejects(async () => await executor.prepare(task), /Cannot prepare task/);
    },
  );

  test(
    "logs() returns the output, stamped, and tail keeps the last lines",
    { kind: "exit", code: 0, output: ["one", "two", "three"] },
    async (executor, task) => {
      const before = Date.now();
      await executor.prepare(task);
      await executor.start();
      await executor.wait();
      const after = Date.now();
      const lines = await collect(executor.logs());
      assert.deepEqual(lines.map((l) => [l.stream, l.text]), [
        ["stdout", "one"],
        ["stdout", "two"],
        ["stdout", "three"],
      ]);
      // Stored with millisecond precision.
      assert.ok(lines.every((l) => l.time >= before - 1 && l.time <= after));
      assert.deepEqual((await collect(executor.logs({ tail: 2 }))).map((l) => l.text), [
        "two",
        "three",
      ]);
      assert.deepEqual(await collect(executor.logs({ tail: 0 })), []);
      // Following a finished task ends after its lines.
      assert.equal((await collect(executor.logs({ follow: true }))).length, 3);
    },
  );

  test(
    "logs({ follow }) of a running task ends when the task stops",
    { kind: "serve", output: ["hello"] },
    async (executor, task) => {
      await executor.prepare(task);
      await executor.start();
      const iterator = executor.logs({ follow: true })[Symbol.asyncIterator]();
      // The line printed at start arrives (now, or as soon as the program prints it).
      const first = await iterator.next();
      assert.equal(first.done, false);
      assert.equal((first.value as LogLine).text, "hello");
      const next = iterator.next();
      await executor.stop(5_000);
      assert.equal((await next).done, true);
    },
  );

  test(
    "logs({ follow, signal }) ends when the signal aborts",
    { kind: "serve" },
    async (executor, task) => {
      await executor.prepare(task);
      await executor.start();
      const controller = new AbortController();
      const reading = collect(executor.logs({ follow: true, signal: controller.signal }));
      setTimeout(() => controller.abort(), 50);
      assert.deepEqual(await reading, []);
      assert.equal(executor.status.state, TaskState.running);
    },
  );

  test(
    "remove() stops a running task and its logs are gone",
    { kind: "serve", output: ["x"] },
    async (executor, task) => {
      await executor.prepare(task);
      await executor.start();
      await executor.remove();
      assert.equal(executor.status.state, TaskState.shutdown);
      assert.deepEqual(await collect(executor.logs()), []);
    },
  );
}
