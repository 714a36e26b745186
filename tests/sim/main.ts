/**
 * `deno task sim --seeds N [--steps K] [--raft-ticks T] [--start S]` runs N seeds of the
 * simulations (the fold; the control loop of projections and agents, tests/sim/control_sim.ts;
 * and the Raft core under a faulty network and crashing machines, tests/sim/raft_sim.ts) across
 * both cores and prints `N seeds, V violations`; `deno task sim --seed S --trace` replays one
 * seed exactly and prints a readable trace of each. Exit status 1 when any seed violates an
 * invariant. Violations that are known open bugs (tests/sim/regressions.ts) say so.
 *
 * @module
 */
import { runFoldSeed } from "./fold_sim.ts";
import { runControlSeed } from "./control_sim.ts";
import { DEFAULT_RAFT_TICKS, runRaftSeed } from "./raft_sim.ts";
import { RAFT_REGRESSIONS } from "./regressions.ts";
import type { Job, WorkerResult } from "./worker.ts";

function option(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const raw = i >= 0 ? args[i + 1] : args.find((a) => a.startsWith(`--${name}=`))?.split("=")[1];
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${name} needs a whole number, got "${raw}"`);
    Deno.exit(2);
  }
  return n;
}

/** A note naming the open regression `violation` is an instance of, if any. */
function known(violation: string): string {
  const r = RAFT_REGRESSIONS.find((r) => r.status === "open" && r.signature.test(violation));
  return r ? ` (known open bug: "${r.name}", tests/sim/regressions.ts)` : "";
}

async function runParallel(
  seeds: number[],
  steps: number,
  raftTicks: number,
): Promise<WorkerResult[]> {
  const workers = Math.max(1, Math.min(navigator.hardwareConcurrency, seeds.length));
  const parts: number[][] = Array.from({ length: workers }, () => []);
  seeds.forEach((s, i) => parts[i % workers].push(s));
  const results = await Promise.all(
    parts.map((part) =>
      new Promise<WorkerResult[]>((resolve, reject) => {
        const worker = new Worker(new URL("./worker.ts", import.meta.url), { type: "module" });
        worker.onmessage = (e) => {
          worker.terminate();
          resolve(e.data as WorkerResult[]);
        };
        worker.onerror = (e) => {
          worker.terminate();
          reject(new Error(e.message));
        };
        worker.postMessage({ seeds: part, steps, raftTicks } satisfies Job);
      })
    ),
  );
  return results.flat().sort((a, b) => a.seed - b.seed);
}

if (import.meta.main) {
  const args = Deno.args;
  const steps = option(args, "steps", 300);
  const raftTicks = option(args, "raft-ticks", DEFAULT_RAFT_TICKS);
  if (args.includes("--seed") || args.some((a) => a.startsWith("--seed="))) {
    const seed = option(args, "seed", 0);
    const trace = args.includes("--trace") ? console.log : undefined;
    if (trace) console.log("== the fold");
    const result = runFoldSeed(seed, steps, trace);
    console.log(
      `seed ${seed}: ${result.entries} entries, ${result.events} events, ${result.rejected} rejected batches` +
        (result.violation ? `\nVIOLATION: ${result.violation}` : ", no violations"),
    );
    if (trace) console.log("== the control loop");
    const control = runControlSeed(seed, Math.ceil(steps / 2), { trace });
    console.log(
      `seed ${seed} control loop: ${control.steps} steps, ${control.entries} entries` +
        (control.violation ? `\nVIOLATION: ${control.violation}` : ", no violations"),
    );
    if (trace) console.log("== the raft core");
    const raft = runRaftSeed(seed, { ticks: raftTicks, trace });
    console.log(
      `seed ${seed} raft: ${raft.events} events, ${
        (raft.virtualMs / 1000).toFixed(1)
      } s virtual, ` +
        `${raft.acked} acknowledged, ${raft.leaderTerms} leader terms, ${raft.crashes} crashes, ` +
        `${raft.partitions} partitions, ${raft.snapshotsInstalled} snapshots installed, ` +
        `${raft.confChangesApplied} conf changes applied, ${raft.readsServed} reads served, ` +
        `${raft.voters} voters at the end` +
        (raft.violation
          ? `\nVIOLATION: ${raft.violation}${known(raft.violation)}`
          : ", no violations"),
    );
    Deno.exit(result.violation || control.violation || raft.violation ? 1 : 0);
  }
  const count = option(args, "seeds", 100);
  const start = option(args, "start", 1);
  const seeds = Array.from({ length: count }, (_, i) => start + i);
  const t0 = performance.now();
  const results = await runParallel(seeds, steps, raftTicks);
  const bad = results.filter((r) => r.violation);
  const ticksFlag = raftTicks === DEFAULT_RAFT_TICKS ? "" : ` --raft-ticks ${raftTicks}`;
  for (const r of bad) {
    console.log(
      `seed ${r.seed}: ${r.violation}${known(r.violation!)}\n  reproduce: deno task sim ` +
        `--seed ${r.seed} --steps ${steps}${ticksFlag} --trace`,
    );
  }
  const events = results.reduce((n, r) => n + r.events, 0);
  const raftEvents = results.reduce((n, r) => n + r.raftEvents, 0);
  const raftAcked = results.reduce((n, r) => n + r.raftAcked, 0);
  console.log(
    `${count} seeds, ${bad.length} violations (${events} fold events, ${raftEvents} raft ` +
      `events, ${raftAcked} raft proposals acknowledged, in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s)`,
  );
  Deno.exit(bad.length ? 1 : 0);
}
