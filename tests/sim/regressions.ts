/**
 * Named seeds of the Raft simulation (tests/sim/raft_sim.ts) that once failed. Each replays
 * exactly with `deno task sim --seed S --trace` (plus the scenario override, where one is given,
 * through `runRaftSeed(seed, { scenario })`).
 *
 * - `fixed`: the seed must pass; raft_sim_test.ts runs it in the default test run.
 * - `open`: the bug is not fixed yet. Its "must pass" test is kept out of the default run
 *   (`ignore`), and a second test checks that it still fails the way `signature` says, so that
 *   whoever fixes it is told to flip it to `fixed`. The bounded run of raft_sim_test.ts tolerates
 *   violations matching an open regression's signature, and no others.
 *
 * @module
 */
import type { Scenario } from "./raft_sim.ts";

/** A seed that failed once, and why. */
export interface RaftRegression {
  /** Short, unique: names the test. */
  readonly name: string;
  readonly seed: number;
  /** Length of the faulty phase, if not the default. */
  readonly ticks?: number;
  /** Scenario overrides, if the failure needs them. */
  readonly scenario?: Partial<Scenario>;
  /** What went wrong, and where the fix belongs. */
  readonly why: string;
  readonly status: "open" | "fixed";
  /** What the violation says while the bug is open. */
  readonly signature: RegExp;
}

/** Every named seed, oldest first. */
export const RAFT_REGRESSIONS: readonly RaftRegression[] = [
  {
    name: "heartbeat response with a full in-flight window (window 1)",
    seed: 17,
    why: "events/raft core: a MsgHeartbeatResp clears msgAppFlowPaused and calls sendAppend " +
      "for a follower in replicate state whose in-flight window is full; maybeSendAppend sends " +
      "entries and Inflights.add throws 'Cannot add to a full Inflights window' out of " +
      "RawNode.step. etcd-io/raft sends an empty MsgApp in that case (maybeSendAppend: 'In a " +
      "throttled StateReplicate only send empty MsgApp'). Failed 3.3 s into the run, with " +
      "maxInflightMsgs 1; half of all seeds failed so. Fixed in the core the same way.",
    status: "fixed",
    signature: /Cannot add to a full Inflights window/,
  },
  {
    name: "heartbeat response with a full in-flight window (default window of 256)",
    seed: 116,
    scenario: { maxInflightMsgs: 256 },
    why: "The same bug at the default window: a follower cut off for a few seconds under load " +
      "fills 256 appends; when it answers a heartbeat again the leader's step() threw (2% of " +
      "seeds at this window). Fixed with the previous one.",
    status: "fixed",
    signature: /Cannot add to a full Inflights window/,
  },
  {
    name: "a joining node refuses a snapshot that predates it (driver.ts behaviour)",
    seed: 1,
    scenario: { freshSnapshots: false },
    why: "Driver contract, not the core: the leader sent its stored snapshot, taken before " +
      "node 7 was added; node 7 is not in its ConfState, so Raft.restore refused it, and the " +
      "leader sent it again forever (until the next snapshot, 10,000 entries later in " +
      "driver.ts). etcd's server sends a fresh snapshot of its applied state instead " +
      "(createMergedSnapshotMessage); the simulator's default driver does so " +
      "(Scenario.freshSnapshots). driver.ts instead takes a snapshot, with the new " +
      "configuration, whenever it applies an addition to a compacted log " +
      "(#snapshotForNewMember), so the stored snapshot never predates a member; with " +
      "freshSnapshots off the simulator now models exactly that (raft_sim.ts " +
      "#snapshotForNewMember), and the seed passes. 200 seeds so: 0 violations.",
    status: "fixed",
    signature: /liveness: members have not all applied/,
  },
  {
    name: "a joining node gets a fresh snapshot",
    seed: 1,
    why: "The previous seed with the simulator's default driver: must pass.",
    status: "fixed",
    signature: /liveness/,
  },
  {
    name: "slow catch-up after healing is not a stall",
    seed: 718,
    why: "Simulator: one entry per message (maxSizePerMsg 8) and a window of 2 replicate about " +
      "25 entries a second, against a backlog of 1,300 entries accepted during the faults; the " +
      "fixed liveness budget ran out. Liveness now fails only when nothing progresses.",
    status: "fixed",
    signature: /Cannot add to a full Inflights window/,
  },
  {
    name: "leadership flaps right after healing",
    seed: 103,
    why: "Simulator: with a 300 ms election timeout and 60 ms latency with a slow tail, the " +
      "check that a leader exists at one instant after healing failed spuriously. The slow " +
      "tail now stops when the network heals, and the liveness check waits for a leader.",
    status: "fixed",
    signature: /liveness/,
  },
  {
    name: "a value acknowledged while settling must reach every member too",
    seed: 1312,
    why: "Simulator: the end waited for the members to apply the first final proposal " +
      "acknowledged, but a retried one was acknowledged after it, at a higher index, before the " +
      "final check, which then found it missing on a member that had not applied it yet. The " +
      "end now waits for every acknowledged value.",
    status: "fixed",
    signature: /lost acknowledged value/,
  },
  {
    name: "a resend storm on a reordering network is bounded",
    seed: 3554,
    why: "Simulator: one-entry messages, a window of 256 and a reordering, duplicating network: " +
      "each stale rejection sends the follower back to probe, and each late acknowledgement " +
      "back to replicate, which resends the whole window (as etcd-io/raft does; it relies on " +
      "an ordered transport). With unbounded links the storm grew past a million events in " +
      "one virtual millisecond. Links now hold at most LINK_CAPACITY messages, dropping and " +
      "reporting the peer unreachable beyond, as transport.ts's bounded queues do.",
    status: "fixed",
    signature: /runaway/,
  },
  {
    name: "a resend storm on a reordering network is bounded (another)",
    seed: 4331,
    why: "Simulator: the same storm stayed under a link capacity of 1,000 (each message is in " +
      "flight only a few ms) and ran past a million events; the capacity is now 512, still " +
      "above a full window of 256 appends plus heartbeats.",
    status: "fixed",
    signature: /runaway/,
  },
];
