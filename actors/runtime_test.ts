import assert from "node:assert/strict";
import {
  ActorExistsError,
  type ActorFailedEvent,
  ActorNotFoundError,
  type ActorRestartedEvent,
  ActorStoppedError,
  type ActorStoppedEvent,
  ActorSystem,
  type ActorSystemOptions,
  AskTimeoutError,
  type Behavior,
  type Clock,
  type Logger,
  MailboxFullError,
  reply,
  systemClock,
} from "./runtime.ts";

/** A logger that keeps its lines, so tests can count them and keep stderr quiet. */
class MemoryLogger implements Logger {
  lines: string[] = [];
  info(message: string): void {
    this.lines.push(`info ${message}`);
  }
  warn(message: string): void {
    this.lines.push(`warn ${message}`);
  }
  error(message: string): void {
    this.lines.push(`error ${message}`);
  }
}

/**
 * Real time, but it knows which timers are still armed: Deno's sanitizers do not report a leaked
 * timer, so the tests check this instead.
 */
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

/**
 * Runs `fn` with a fresh system, shuts it down whatever happens, and then checks that the
 * shutdown left no timer armed.
 */
async function withSystem(
  fn: (system: ActorSystem, logger: MemoryLogger) => Promise<void>,
  options: ActorSystemOptions = {},
): Promise<void> {
  const logger = new MemoryLogger();
  const clock = new TrackingClock();
  const system = new ActorSystem({ logger, clock, ...options });
  try {
    await fn(system, logger);
  } finally {
    await system.shutdown();
  }
  assert.equal(clock.armed.size, 0, "shutdown must leave no timer armed");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

type CounterMsg =
  | { type: "add"; n: number }
  | { type: "get" }
  | { type: "boom" }
  | { type: "slow"; gate: Promise<void> };

/** A counter that can be told to crash or to block on a gate. */
const counter: Behavior<number, CounterMsg, number> = {
  init: () => 0,
  async receive(total, msg) {
    switch (msg.type) {
      case "add":
        return total + msg.n;
      case "get":
        return reply(total, total);
      case "boom":
        throw new Error("boom");
      case "slow":
        await msg.gate;
        return total;
    }
  },
};

Deno.test("messages are handled in order, one at a time, even by async handlers", async () => {
  await withSystem(async (system) => {
    const seen: number[] = [];
    let running = 0;
    let maxRunning = 0;
    const ref = system.spawn<null, number>("ordered", {
      init: () => null,
      async receive(state, n) {
        running++;
        maxRunning = Math.max(maxRunning, running);
        // Uneven delays: a runtime that overlapped handlers would reorder these.
        if (n % 3 === 0) await sleep(1);
        else await Promise.resolve();
        seen.push(n);
        running--;
        return state;
      },
    });
    for (let i = 0; i < 50; i++) ref.tell(i);
    assert.deepEqual(seen, [], "tell must not run the handler synchronously");
    await system.idle();
    assert.deepEqual(seen, Array.from({ length: 50 }, (_, i) => i));
    assert.equal(maxRunning, 1);
  });
});

Deno.test("sync handlers keep order across the throughput budget", async () => {
  await withSystem(async (system) => {
    const seen: number[] = [];
    const ref = system.spawn<number, number>("sync", {
      init: () => 0,
      receive(count, n) {
        seen.push(n);
        return count + 1;
      },
    });
    for (let i = 0; i < 500; i++) ref.tell(i); // several throughput turns of 64
    await system.idle();
    assert.deepEqual(seen, Array.from({ length: 500 }, (_, i) => i));
  });
});

Deno.test("ask resolves with the reply; a bare state answers undefined", async () => {
  await withSystem(async (system) => {
    const ref = system.spawn("counter", counter);
    ref.tell({ type: "add", n: 2 });
    assert.equal(await ref.ask({ type: "add", n: 3 }), undefined);
    assert.equal(await ref.ask({ type: "get" }), 5);
    assert.equal(system.get<CounterMsg, number>("counter")?.id, "counter");
    assert.ok(system.has("counter"));
    assert.equal(system.size, 1);
  });
});

Deno.test("ask rejects with AskTimeoutError and the actor carries on", async () => {
  await withSystem(async (system) => {
    const ref = system.spawn("counter", counter);
    const gate = Promise.withResolvers<void>();
    ref.tell({ type: "slow", gate: gate.promise });
    const started = Date.now();
    await assert.rejects(ref.ask({ type: "get" }, { timeoutMs: 20 }), (error) => {
      assert.ok(error instanceof AskTimeoutError);
      assert.equal(error.actorId, "counter");
      assert.equal(error.message, 'Actor "counter" did not reply within 20 ms');
      return true;
    });
    assert.ok(Date.now() - started >= 15, "timed out too early");
    gate.resolve();
    ref.tell({ type: "add", n: 1 });
    assert.equal(await ref.ask({ type: "get" }), 1);
  });
});

Deno.test("a handler error on ask rejects only that ask: no restart, state kept", async () => {
  await withSystem(async (system, logger) => {
    const events: string[] = [];
    system.on("failed", () => events.push("failed"));
    system.on("restarted", () => events.push("restarted"));
    const ref = system.spawn("counter", counter);
    ref.tell({ type: "add", n: 7 });
    const failing = ref.ask({ type: "boom" });
    const after = ref.ask({ type: "get" });
    await assert.rejects(failing, { name: "Error", message: "boom" });
    assert.equal(await after, 7, "state must survive a failed ask");
    assert.deepEqual(events, []);
    assert.deepEqual(logger.lines, []);
  });
});

Deno.test("a crash on tell restarts the actor after a backoff, keeping queued messages", async () => {
  const backoff = { initialMs: 10, maxMs: 5000, resetAfterMs: 10_000 };
  await withSystem(async (system, logger) => {
    const failed: ActorFailedEvent[] = [];
    const restarted: ActorRestartedEvent[] = [];
    system.on("failed", (e) => failed.push(e));
    system.on("restarted", (e) => restarted.push(e));
    let inits = 0;
    const ref = system.spawn<number, CounterMsg, number>("counter", {
      init: () => (inits++, 0),
      receive: counter.receive,
    });
    const started = performance.now();
    ref.tell({ type: "add", n: 5 });
    ref.tell({ type: "boom" });
    ref.tell({ type: "add", n: 1 }); // queued behind the crash: must survive it
    const answer = ref.ask({ type: "get" });
    assert.equal(await answer, 1, "state must be rebuilt by init, then later messages handled");
    assert.ok(performance.now() - started >= 9, "restart must wait for the backoff");
    assert.equal(inits, 2);
    assert.equal(failed.length, 1);
    assert.equal(failed[0].actorId, "counter");
    assert.equal((failed[0].error as Error).message, "boom");
    assert.equal(failed[0].failures, 1);
    assert.equal(failed[0].restartInMs, 10);
    assert.deepEqual(restarted.map((e) => [e.actorId, e.failures]), [["counter", 1]]);
    assert.deepEqual(logger.lines, [
      'error Actor "counter" crashed handling a message (failure 1): Error: boom; ' +
      "restarting in 10 ms",
    ]);
  }, { backoff });
});

/** A virtual clock: timers fire only when the test advances time. */
class ManualClock implements Clock {
  #now = 0;
  #timers = new Map<number, { at: number; callback: () => void }>();
  #next = 0;
  now(): number {
    return this.#now;
  }
  setTimeout(callback: () => void, ms: number): unknown {
    this.#timers.set(++this.#next, { at: this.#now + ms, callback });
    return this.#next;
  }
  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }
  get armed(): number {
    return this.#timers.size;
  }
  advance(ms: number): void {
    this.#now += ms;
    for (const [handle, timer] of [...this.#timers].sort((a, b) => a[1].at - b[1].at)) {
      if (timer.at > this.#now) break;
      this.#timers.delete(handle);
      timer.callback();
    }
  }
}

Deno.test("with a virtual clock, a restart waits exactly for its backoff", async () => {
  const clock = new ManualClock();
  const system = new ActorSystem({ logger: new MemoryLogger(), clock });
  const restarts: number[] = [];
  system.on("restarted", () => restarts.push(clock.now()));
  const ref = system.spawn("counter", counter);
  ref.tell({ type: "boom" });
  ref.tell({ type: "add", n: 1 });
  await sleep(0); // let the crash happen
  assert.equal(clock.armed, 1);
  clock.advance(9);
  assert.deepEqual(restarts, []);
  clock.advance(1);
  assert.deepEqual(restarts, [10]);
  assert.equal(await ref.ask({ type: "get" }, { timeoutMs: Infinity }), 1);
  ref.tell({ type: "boom" }); // second failure in a row: 20 ms
  await sleep(0);
  clock.advance(19);
  assert.deepEqual(restarts, [10]);
  clock.advance(1);
  assert.deepEqual(restarts, [10, 30]);
  await system.shutdown();
  assert.equal(clock.armed, 0);
});

Deno.test("restart backoff doubles up to the maximum and resets after a quiet period", async () => {
  const clock = new ManualClock();
  const logger = new MemoryLogger();
  const backoff = { initialMs: 5, maxMs: 20, resetAfterMs: 60 };
  const system = new ActorSystem({ logger, clock, backoff });
  const delays: number[] = [];
  system.on("failed", (e) => delays.push(e.restartInMs!));
  const ref = system.spawn("counter", counter);
  for (let i = 0; i < 4; i++) ref.tell({ type: "boom" });
  ref.tell({ type: "add", n: 1 });
  for (const ms of [0, 5, 10, 20, 20]) {
    clock.advance(ms);
    await sleep(0); // let the restarted actor reach its next message
  }
  assert.deepEqual(delays, [5, 10, 20, 20]);
  assert.equal(logger.lines.length, 4, "one log line per crash");
  assert.equal(await ref.ask({ type: "get" }, { timeoutMs: Infinity }), 1);

  clock.advance(59); // not quite quiet long enough
  ref.tell({ type: "boom" });
  await sleep(0);
  clock.advance(20);
  assert.deepEqual(delays, [5, 10, 20, 20, 20]);

  clock.advance(60); // quiet long enough: start over
  ref.tell({ type: "boom" });
  await sleep(0);
  assert.deepEqual(delays, [5, 10, 20, 20, 20, 5]);
  assert.match(logger.lines[5], /\(failure 1\)/);
  await system.shutdown();
  assert.equal(clock.armed, 0);
});

Deno.test("a failing init on restart is retried with backoff", async () => {
  await withSystem(async (system, logger) => {
    let inits = 0;
    const ref = system.spawn<number, CounterMsg, number>("flaky", {
      init() {
        inits++;
        if (inits === 2) throw new Error("no database");
        return 100;
      },
      receive: counter.receive,
    });
    ref.tell({ type: "boom" });
    assert.equal(await ref.ask({ type: "get" }), 100);
    assert.equal(inits, 3);
    assert.equal(logger.lines.length, 2);
    assert.match(logger.lines[1], /"flaky" failed to restart \(failure 2\): Error: no database/);
  }, { backoff: { initialMs: 1 } });
});

Deno.test("rejections and non-Error throws never reach the process", async () => {
  await withSystem(async (system, logger) => {
    let handled = 0;
    const ref = system.spawn<number, string>("wild", {
      init: () => 0,
      receive(count, msg) {
        handled++;
        if (msg === "reject") return Promise.reject(new TypeError("async failure"));
        if (msg === "string") throw "a bare string";
        if (msg === "weird") throw Object.create(null);
        return count + 1;
      },
    });
    for (const msg of ["reject", "ok", "string", "ok", "weird", "ok"]) ref.tell(msg);
    await system.idle();
    assert.equal(handled, 6);
    assert.equal(logger.lines.length, 3);
    assert.match(logger.lines[0], /TypeError: async failure/);
    assert.match(logger.lines[1], /a bare string/);
    assert.match(logger.lines[2], /\[object Object\]/);
  }, { backoff: { initialMs: 1 } });
});

Deno.test("a throwing event listener is logged, not fatal", async () => {
  await withSystem(async (system, logger) => {
    const off = system.on("failed", () => {
      throw new Error("listener bug");
    });
    const ref = system.spawn("counter", counter);
    ref.tell({ type: "boom" });
    await system.idle();
    assert.equal(logger.lines.length, 2);
    assert.match(logger.lines[1], /"failed" listener threw: Error: listener bug/);
    off();
    ref.tell({ type: "boom" });
    await system.idle();
    assert.equal(logger.lines.length, 3, "unsubscribed listener must not run");
  }, { backoff: { initialMs: 1 } });
});

Deno.test("a full mailbox refuses tell and ask, and tellAsync waits for room", async () => {
  await withSystem(async (system) => {
    const handled: number[] = [];
    const gate = Promise.withResolvers<void>();
    const started = Promise.withResolvers<void>();
    const ref = system.spawn<null, number>("slow", {
      init: () => null,
      async receive(state, n) {
        started.resolve();
        await gate.promise;
        handled.push(n);
        return state;
      },
    }, { mailboxCapacity: 2 });
    ref.tell(1);
    await started.promise; // 1 is in flight and does not count
    ref.tell(2);
    ref.tell(3);
    assert.throws(() => ref.tell(4), (error) => {
      assert.ok(error instanceof MailboxFullError);
      assert.equal(error.message, 'Cannot deliver to actor "slow": mailbox full (2 messages)');
      assert.equal(error.capacity, 2);
      return true;
    });
    await assert.rejects(ref.ask(4), MailboxFullError);

    let sent = false;
    const producer = ref.tellAsync(4).then(() => sent = true);
    let roomy = false;
    const ready = ref.ready().then(() => roomy = true);
    await sleep(5);
    assert.equal(sent, false, "tellAsync must wait while the mailbox is full");
    assert.equal(roomy, false);
    gate.resolve();
    await producer;
    await ready;
    await system.idle();
    assert.deepEqual(handled, [1, 2, 3, 4]);
  });
});

Deno.test("a slowed producer delivers everything through a tiny mailbox", async () => {
  await withSystem(async (system) => {
    let sum = 0;
    const ref = system.spawn<null, number>("sink", {
      init: () => null,
      async receive(state, n) {
        await Promise.resolve();
        sum += n;
        return state;
      },
    }, { mailboxCapacity: 3 });
    const producers = [0, 1, 2].map(async (p) => {
      for (let i = 1; i <= 100; i++) await ref.tellAsync(p * 1000 + i);
    });
    await Promise.all(producers);
    await system.idle();
    assert.equal(sum, 3 * 5050 + 100 * (0 + 1000 + 2000));
  });
});

Deno.test("stop rejects pending asks, drops queued tells and lets the current message finish", async () => {
  await withSystem(async (system) => {
    const stopped: ActorStoppedEvent[] = [];
    system.on("stopped", (e) => stopped.push(e));
    const ref = system.spawn("counter", counter);
    const gate = Promise.withResolvers<void>();
    const inFlight = ref.ask({ type: "slow", gate: gate.promise }, { timeoutMs: 10_000 });
    await Promise.resolve(); // let the slow message start
    ref.tell({ type: "add", n: 1 });
    ref.tell({ type: "add", n: 2 });
    const queued = ref.ask({ type: "get" }, { timeoutMs: 10_000 });
    const waiting = ref.ready(); // mailbox has room: resolves at once
    const stopping = system.stop("counter");
    await waiting;
    await assert.rejects(queued, (error) => {
      assert.ok(error instanceof ActorStoppedError);
      assert.equal(error.message, 'Actor "counter" stopped before handling the message');
      return true;
    });
    assert.throws(() => ref.tell({ type: "get" }), {
      name: "ActorStoppedError",
      message: 'Cannot deliver to actor "counter": actor stopped',
    });
    assert.ok(system.has("counter"), "stays registered until the current message finishes");
    gate.resolve();
    assert.equal(await inFlight, undefined);
    assert.equal(await stopping, true);
    assert.equal(system.has("counter"), false);
    assert.equal(system.size, 0);
    assert.deepEqual(stopped.map((e) => [e.actorId, e.reason, e.dropped]), [[
      "counter",
      "stop",
      2,
    ]]);
    assert.throws(() => ref.tell({ type: "get" }), ActorNotFoundError);
    await assert.rejects(ref.ask({ type: "get" }), {
      message: 'Cannot deliver to actor "counter": no such actor',
    });
    assert.equal(await system.stop("counter"), false);
    // The id is free again; old refs reach the new actor.
    system.spawn("counter", counter);
    assert.equal(await ref.ask({ type: "get" }), 0);
  });
});

Deno.test("stop with drain handles everything queued first", async () => {
  await withSystem(async (system) => {
    const stopped: ActorStoppedEvent[] = [];
    system.on("stopped", (e) => stopped.push(e));
    const ref = system.spawn("counter", counter);
    for (let i = 1; i <= 4; i++) ref.tell({ type: "add", n: i });
    const last = ref.ask({ type: "get" });
    const stopping = system.stop("counter", { drain: true });
    assert.throws(() => ref.tell({ type: "add", n: 100 }), ActorStoppedError);
    assert.equal(await last, 10);
    assert.equal(await stopping, true);
    assert.equal(stopped[0].dropped, 0);
  });
});

Deno.test("stop during a restart backoff clears the timer", async () => {
  await withSystem(async (system) => {
    const ref = system.spawn("counter", counter);
    ref.tell({ type: "boom" });
    const pending = ref.ask({ type: "get" });
    await sleep(1); // now waiting out a 10 s backoff
    assert.equal(await system.stop("counter"), true);
    await assert.rejects(pending, ActorStoppedError);
  }, { backoff: { initialMs: 10_000 } });
});

Deno.test("stop with drain during a backoff restarts at once and drains", async () => {
  await withSystem(async (system) => {
    const ref = system.spawn("counter", counter);
    ref.tell({ type: "boom" });
    ref.tell({ type: "add", n: 3 });
    const answer = ref.ask({ type: "get" });
    await sleep(1);
    assert.equal(await system.stop("counter", { drain: true }), true);
    assert.equal(await answer, 3);
  }, { backoff: { initialMs: 10_000 } });
});

Deno.test("shutdown settles every ask, waiter and timer, then refuses new work", async () => {
  const clock = new TrackingClock();
  const system = new ActorSystem({
    logger: new MemoryLogger(),
    clock,
    backoff: { initialMs: 10_000 },
  });
  const gate = Promise.withResolvers<void>();
  const slow = system.spawn("slow", counter, { mailboxCapacity: 1 });
  const crashed = system.spawn("crashed", counter);
  const inFlight = slow.ask({ type: "slow", gate: gate.promise }, { timeoutMs: 60_000 });
  await Promise.resolve();
  const queued = slow.ask({ type: "get" }, { timeoutMs: 60_000 });
  const producer = slow.tellAsync({ type: "get" }); // blocked: mailbox full
  crashed.tell({ type: "boom" }); // arms a 10 s restart timer
  const crashedAsk = crashed.ask({ type: "get" }, { timeoutMs: 60_000 });
  for (let i = 0; i < 100; i++) system.spawn(`idle/${i}`, counter);
  await sleep(1);
  assert.equal(clock.armed.size, 4, "three ask timeouts and one restart timer");
  const done = system.shutdown();
  await assert.rejects(queued, ActorStoppedError);
  await assert.rejects(producer, ActorStoppedError);
  await assert.rejects(crashedAsk, ActorStoppedError);
  gate.resolve();
  await done;
  assert.equal(await inFlight, undefined);
  assert.equal(system.size, 0);
  assert.throws(() => system.spawn("late", counter), {
    name: "ActorStoppedError",
    message: 'Cannot spawn actor "late": the actor system is shut down',
  });
  assert.throws(() => slow.tell({ type: "get" }), /the actor system is shut down/);
  await system.idle();
  assert.equal(clock.armed.size, 0, "an ask timeout or restart timer is still armed");
});

Deno.test("a family materializes actors on first message and retires them on stop", async () => {
  await withSystem(async (system) => {
    const created: string[] = [];
    system.family("task/", (id) => {
      created.push(id);
      return counter;
    });
    system.family("task/special/", () => ({ ...counter, init: () => 1000 }));
    const ref = system.ref<CounterMsg, number>("task/abc");
    assert.equal(system.has("task/abc"), false);
    assert.equal(system.get("task/abc"), undefined);
    await ref.ready();
    assert.equal(system.has("task/abc"), false, "ready must not materialize");
    ref.tell({ type: "add", n: 4 });
    assert.ok(system.has("task/abc"));
    assert.equal(await ref.ask({ type: "get" }), 4);
    assert.equal(await system.ref<CounterMsg, number>("task/special/x").ask({ type: "get" }), 1000);
    assert.deepEqual(created, ["task/abc"], "longest prefix wins");
    await system.stop("task/abc");
    assert.equal(await ref.ask({ type: "get" }), 0, "a retired member comes back fresh");
    assert.deepEqual(created, ["task/abc", "task/abc"]);
    assert.throws(() => system.ref("node/1").tell({ type: "get" }), ActorNotFoundError);
    await assert.rejects(system.ref("node/1").ready(), ActorNotFoundError);
    assert.throws(() => system.family("task/", () => counter), /already declared/);
  });
});

Deno.test("spawn refuses a taken id and surfaces a failing init", async () => {
  // deno-lint-ignore require-await
  await withSystem(async (system) => {
    system.spawn("a", counter);
    assert.throws(() => system.spawn("a", counter), (error) => {
      assert.ok(error instanceof ActorExistsError);
      assert.equal(error.message, 'Cannot spawn actor "a": an actor with this id already exists');
      return true;
    });
    assert.throws(
      () =>
        system.spawn("b", {
          init: () => {
            throw new Error("bad config");
          },
          receive: (s) => s,
        }),
      /bad config/,
    );
    assert.equal(system.has("b"), false);
    assert.throws(() => system.spawn("c", counter, { mailboxCapacity: 0 }), RangeError);
    assert.throws(() => new ActorSystem({ askTimeoutMs: -1 }), RangeError);
  });
});

Deno.test("actors can talk to each other and to themselves through the context", async () => {
  await withSystem(async (system) => {
    type PingMsg = { n: number };
    const log: string[] = [];
    system.spawn<null, PingMsg>("pong", {
      init: () => null,
      receive(state, { n }, ctx) {
        log.push(`pong ${n}`);
        if (n > 0) ctx.system.ref<PingMsg>("ping").tell({ n: n - 1 });
        return state;
      },
    });
    const ping = system.spawn<null, PingMsg>("ping", {
      init: () => null,
      receive(state, { n }, ctx) {
        log.push(`${ctx.id} ${n}`);
        if (n > 0) ctx.system.ref<PingMsg>("pong").tell({ n: n - 1 });
        return state;
      },
    });
    ping.tell({ n: 3 });
    await system.idle();
    assert.deepEqual(log, ["ping 3", "pong 2", "ping 1", "pong 0"]);
  });
});

Deno.test("100,000 actors each handle a message, and idle actors stay small", async () => {
  const N = 100_000;
  await withSystem(async (system) => {
    const seen = new Uint8Array(N);
    const behavior: Behavior<number, number, number> = {
      init: () => 0,
      receive(count, n, ctx) {
        seen[Number(ctx.id.slice("entity/".length))]++;
        return reply(count + n, count + n);
      },
    };
    // With --v8-flags=--expose-gc the figures are live memory; without, they include garbage.
    const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});
    gc();
    const before = Deno.memoryUsage().heapUsed;
    const started = performance.now();
    for (let i = 0; i < N; i++) system.spawn(`entity/${i}`, behavior);
    for (let i = 0; i < N; i++) system.ref<number>(`entity/${i}`).tell(1);
    await system.idle();
    const elapsed = performance.now() - started;
    gc();
    const heap = Deno.memoryUsage().heapUsed;
    assert.equal(seen.indexOf(0), -1, "every actor must have handled its message");
    assert.equal(seen.indexOf(2), -1, "no actor may handle its message twice");
    assert.equal(system.size, N);
    assert.equal(await system.ref<number, number>(`entity/${N - 1}`).ask(1), 2);
    assert.equal(await system.ref<number, number>("entity/0").ask(1), 2);
    const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(1);
    console.log(
      `${N} actors: spawned and messaged in ${elapsed.toFixed(0)} ms; heap used ${mb(heap)} MB ` +
        `(+${mb(heap - before)} MB, about ${Math.round((heap - before) / N)} bytes per actor)`,
    );
    // Loose: catches a per-actor timer, closure or eager mailbox, not a few bytes. The test
    // harness alone holds about 80 MB, hence a bound on growth rather than on the total.
    assert.ok(heap - before < 200 * 2 ** 20, `heap grew ${mb(heap - before)} MB, expected < 200`);
  });
});
