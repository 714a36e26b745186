/**
 * `deno task bench <name> [--json]`: runs one benchmark (or `all`), printing a human table and,
 * with `--json`, one JSON object on the last line. Record results in bench/RESULTS.md.
 *
 * @module
 */
import { runSnapshotBench } from "./snapshot_bench.ts";
import { runReplayBench } from "./replay_bench.ts";
import { runCodecBench } from "./codec_bench.ts";
import { runSchedBench } from "./sched_bench.ts";
import { runTimeTravelBench } from "./timetravel_bench.ts";
import { runRaftBench } from "./raft_bench.ts";
import { runMeshBench } from "./mesh_bench.ts";
import { runE2eBench } from "./e2e_bench.ts";
import { runSwarmBench } from "./swarm_bench.ts";

type Bench = (options: { json: boolean }) => unknown;

const BENCHES: Record<string, Bench> = {
  codec: runCodecBench,
  replay: runReplayBench,
  snapshot: runSnapshotBench,
  sched: runSchedBench,
  timetravel: runTimeTravelBench,
  raft: runRaftBench,
  mesh: runMeshBench,
  e2e: runE2eBench,
  swarm: runSwarmBench,
};

async function main(args: string[]): Promise<number> {
  const json = args.includes("--json");
  const names = args.filter((a) => !a.startsWith("--"));
  if (names.length === 0 || names.some((n) => n !== "all" && !(n in BENCHES))) {
    console.error(
      `usage: deno task bench <${Object.keys(BENCHES).join("|")}|all> [--json]` +
        (names.length ? `\nunknown benchmark: ${names.filter((n) => !(n in BENCHES))}` : ""),
    );
    return 2;
  }
  const chosen = names.includes("all") ? Object.keys(BENCHES) : names;
  for (const name of chosen) await BENCHES[name]({ json });
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
