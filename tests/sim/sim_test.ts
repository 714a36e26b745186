import assert from "node:assert/strict";
import { runFoldSeed } from "./fold_sim.ts";
import { runControlSeed } from "./control_sim.ts";
import { checkInvariants } from "../_harness/invariants.ts";
import { ClusterHistory } from "../_harness/cluster_history.ts";

Deno.test("fold simulation: 40 seeds of 300 entries hold every invariant", () => {
  for (let seed = 1000; seed < 1040; seed++) {
    const r = runFoldSeed(seed, 300);
    assert.equal(r.violation, undefined, `seed ${seed}: ${r.violation}`);
    assert.equal(r.entries, 300);
  }
});

Deno.test("fold simulation: the invariant checker catches a broken index", () => {
  const history = new ClusterHistory({ seed: 5 });
  history.take(60);
  const someTask = history.state.tasks.values().next().value!;
  history.state.tasksByState.remove(someTask.status.state, someTask.id);
  assert.throws(() => checkInvariants(history.state), /index tasksByState is out of step/);
});

Deno.test("fold simulation: a seed replays exactly", () => {
  const lines: string[][] = [[], []];
  runFoldSeed(77, 80, (l) => lines[0].push(l));
  runFoldSeed(77, 80, (l) => lines[1].push(l));
  assert.ok(lines[0].length > 80);
  assert.deepEqual(lines[0], lines[1]);
});

Deno.test("control loop simulation: 30 seeds hold every invariant and converge", () => {
  for (let seed = 2000; seed < 2030; seed++) {
    const r = runControlSeed(seed, 120);
    assert.equal(r.violation, undefined, `seed ${seed}: ${r.violation}`);
  }
});

Deno.test("control loop simulation: seed 940, two old tasks left running in one slot (regression)", () => {
  // A node came back with two tasks of two old specs in one slot: both ran, neither was current.
  const r = runControlSeed(940, 150);
  assert.equal(r.violation, undefined, `seed 940: ${r.violation}`);
});
