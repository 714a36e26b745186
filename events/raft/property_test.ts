/**
 * Property test: random schedules of ticks, deliveries, drops, duplicates, proposals,
 * partitions, compactions and crash-restarts over three nodes (and, in one property, membership
 * changes adding a fourth and removing any), with Raft's safety properties (paper Figure 3)
 * checked after every step:
 *
 * - election safety: at most one leader per term;
 * - log matching: two logs with an entry of the same index and term are identical up to it;
 * - leader completeness: a committed entry is in the log of every leader of a later term;
 * - state machine safety: no two nodes apply different entries at the same index.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { Network } from "./_network_test_helper.ts";
import { ProposalDroppedError } from "./errors.ts";
import type { ConfChange, Entry, NodeId } from "./types.ts";

const IDS: NodeId[] = [1, 2, 3];
/** The node membership changes may add. */
const JOINER: NodeId = 4;

type Command =
  | { kind: "tick"; node: NodeId; times: number }
  | { kind: "tickAll" }
  | { kind: "deliver"; pick: number }
  | { kind: "deliverAll" }
  | { kind: "drop"; pick: number }
  | { kind: "duplicate"; pick: number }
  | { kind: "propose"; node: NodeId | "leader" }
  | { kind: "campaign"; node: NodeId }
  | { kind: "isolate"; node: NodeId }
  | { kind: "recover" }
  | { kind: "compact"; node: NodeId }
  | { kind: "restart"; node: NodeId }
  | { kind: "confChange"; cc: ConfChange };

const pick = fc.nat();

/** Commands addressing the nodes `node` draws. */
function commandOn(node: fc.Arbitrary<NodeId>): fc.Arbitrary<Command> {
  return fc.oneof(
    { weight: 6, arbitrary: pick.map((pick) => ({ kind: "deliver" as const, pick })) },
    { weight: 8, arbitrary: fc.constant({ kind: "deliverAll" as const }) },
    { weight: 5, arbitrary: fc.constant({ kind: "tickAll" as const }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant("tick" as const),
        node,
        times: fc.integer({ min: 1, max: 4 }),
      }),
    },
    { weight: 2, arbitrary: node.map((node) => ({ kind: "propose" as const, node })) },
    { weight: 4, arbitrary: fc.constant({ kind: "propose" as const, node: "leader" as const }) },
    { weight: 1, arbitrary: pick.map((pick) => ({ kind: "drop" as const, pick })) },
    { weight: 1, arbitrary: pick.map((pick) => ({ kind: "duplicate" as const, pick })) },
    { weight: 2, arbitrary: node.map((node) => ({ kind: "campaign" as const, node })) },
    { weight: 1, arbitrary: node.map((node) => ({ kind: "isolate" as const, node })) },
    { weight: 2, arbitrary: fc.constant({ kind: "recover" as const }) },
    { weight: 1, arbitrary: node.map((node) => ({ kind: "compact" as const, node })) },
    { weight: 1, arbitrary: node.map((node) => ({ kind: "restart" as const, node })) },
  );
}

const command = commandOn(fc.constantFrom(...IDS));
const anyNode = fc.constantFrom(...IDS, JOINER);

const confChange: fc.Arbitrary<Command> = fc.oneof(
  fc.constantFrom<ConfChange["type"]>("addLearner", "addNode").map((type) => ({
    kind: "confChange" as const,
    cc: { type, nodeId: JOINER },
  })),
  anyNode.map((nodeId) => ({
    kind: "confChange" as const,
    cc: { type: "removeNode" as const, nodeId },
  })),
);

/** Commands with membership changes mixed in. */
const commandWithMembership: fc.Arbitrary<Command> = fc.oneof(
  { weight: 40, arbitrary: commandOn(anyNode) },
  { weight: 2, arbitrary: confChange },
);

/** Node ids currently running. */
function running(net: Network): NodeId[] {
  return [...net.nodes.keys()].sort((a, b) => a - b);
}

/** Runs one command; the network's Readys are all handled afterwards. */
function run(net: Network, c: Command, counter: { n: number }): void {
  const absent = "node" in c && typeof c.node === "number" && !net.nodes.has(c.node);
  if (absent) return;
  switch (c.kind) {
    case "tick":
      net.tick(c.node, c.times);
      break;
    case "tickAll":
      for (const id of running(net)) net.tick(id);
      break;
    case "deliverAll": {
      // Everything in flight now, in order (what it causes waits for later steps).
      const batch = net.queue;
      net.queue = [];
      for (const m of batch) net.deliver(m);
      break;
    }
    case "deliver":
    case "drop":
    case "duplicate": {
      if (net.queue.length === 0) break;
      const at = c.pick % net.queue.length;
      const m = net.queue[at];
      if (c.kind !== "duplicate") net.queue.splice(at, 1);
      if (c.kind === "drop") net.discard(m);
      else net.deliver(m);
      break;
    }
    case "propose":
      try {
        const at = c.node === "leader" ? net.leader() : c.node;
        if (at !== undefined) net.propose(at, `p${counter.n++}`);
      } catch (e) {
        if (!(e instanceof ProposalDroppedError)) throw e;
      }
      break;
    case "campaign":
      net.node(c.node).campaign();
      break;
    case "isolate":
      net.isolate(c.node);
      break;
    case "recover":
      net.recover();
      break;
    case "compact": {
      const storage = net.storages.get(c.node)!;
      if (net.applied.get(c.node)!.length >= storage.firstIndex()) net.compact(c.node);
      break;
    }
    case "restart":
      net.restart(c.node);
      break;
    case "confChange": {
      const lead = net.leader();
      if (lead === undefined) break;
      try {
        net.proposeConfChange(lead, c.cc);
      } catch (e) {
        if (!(e instanceof ProposalDroppedError)) throw e;
        break;
      }
      if (c.cc.nodeId === JOINER && !net.nodes.has(JOINER) && c.cc.type !== "removeNode") {
        // The joiner starts empty, knowing the configuration it is joining as a learner.
        const cs = net.confStates.get(lead)!;
        net.add(JOINER, { voters: cs.voters, learners: [...cs.learners, JOINER] });
      }
      break;
    }
  }
  net.processAll();
}

/** A node's whole persisted log (everything is persisted once Readys are handled). */
function logOf(net: Network, id: NodeId): { first: number; entries: Entry[] } {
  const s = net.storages.get(id)!;
  const first = s.firstIndex();
  const entries = s.lastIndex() >= first ? s.entries(first, s.lastIndex() + 1, Infinity) : [];
  return { first, entries };
}

const same = (a: Entry, b: Entry) =>
  a.term === b.term && a.type === b.type && a.data.byteLength === b.data.byteLength &&
  a.data.every((x, i) => x === b.data[i]);

/** The invariants' memory across steps. */
class Checker {
  /** Leader of each term seen so far. */
  leaders = new Map<number, NodeId>();
  /** Every entry seen committed: its term, text, and the lowest term a node knew it in. */
  committed = new Map<number, { entry: Entry; knownAt: number }>();

  check(net: Network): void {
    const ids = running(net);
    const logs = new Map(ids.map((id) => [id, logOf(net, id)]));
    const statuses = new Map(ids.map((id) => [id, net.node(id).status()]));

    // Election safety.
    for (const [id, st] of statuses) {
      if (st.softState.role !== "leader") continue;
      const t = st.hardState.term;
      const other = this.leaders.get(t);
      assert.ok(other === undefined || other === id, `two leaders in term ${t}: ${other}, ${id}`);
      this.leaders.set(t, id);
    }

    // Log matching.
    for (const a of ids) {
      for (const b of ids) {
        if (a >= b) continue;
        const la = logs.get(a)!;
        const lb = logs.get(b)!;
        const lo = Math.max(la.first, lb.first);
        const hi = Math.min(la.first + la.entries.length, lb.first + lb.entries.length) - 1;
        let matched = false;
        for (let i = hi; i >= lo; i--) {
          const ea = la.entries[i - la.first];
          const eb = lb.entries[i - lb.first];
          if (ea.term === eb.term) matched = true;
          if (matched) {
            assert.ok(same(ea, eb), `logs of ${a} and ${b} differ at ${i} below a match`);
          }
        }
      }
    }

    // Record what is committed (each node's commit index over its own log).
    for (const id of ids) {
      const { first, entries } = logs.get(id)!;
      const st = statuses.get(id)!;
      for (let i = first; i <= st.hardState.commit && i < first + entries.length; i++) {
        const e = entries[i - first];
        const seen = this.committed.get(i);
        if (seen === undefined) {
          this.committed.set(i, { entry: e, knownAt: st.hardState.term });
        } else {
          assert.ok(same(seen.entry, e), `committed entry ${i} differs on node ${id}`);
          seen.knownAt = Math.min(seen.knownAt, st.hardState.term);
        }
      }
    }

    // Leader completeness.
    for (const [id, st] of statuses) {
      if (st.softState.role !== "leader") continue;
      const { first, entries } = logs.get(id)!;
      for (const [i, { entry, knownAt }] of this.committed) {
        if (st.hardState.term < knownAt || i < first) continue;
        const mine = entries[i - first];
        assert.ok(
          mine !== undefined && same(mine, entry),
          `leader ${id} (term ${st.hardState.term}) lacks committed entry ${i}`,
        );
      }
    }

    // State machine safety.
    for (const a of ids) {
      for (const b of ids) {
        if (a >= b) continue;
        const sa = net.applied.get(a)!;
        const sb = net.applied.get(b)!;
        const n = Math.min(sa.length, sb.length);
        for (let i = 0; i < n; i++) {
          assert.equal(sa[i], sb[i], `nodes ${a} and ${b} applied different entries at ${i + 1}`);
        }
      }
    }
  }
}

Deno.test("property: Raft's safety properties hold under random schedules and faults", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1_000_000 }),
      fc.record({
        electionTick: fc.constantFrom(3, 5),
        preVote: fc.boolean(),
        checkQuorum: fc.boolean(),
      }),
      fc.array(command, { minLength: 100, maxLength: 200, size: "max" }),
      (seed, config, commands) => {
        const net = new Network(IDS, { seed, config });
        const checker = new Checker();
        const counter = { n: 0 };
        for (const c of commands) {
          run(net, c, counter);
          checker.check(net);
        }
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("property: safety holds while members are added and removed", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1_000_000 }),
      fc.record({ electionTick: fc.constantFrom(3, 5), preVote: fc.boolean() }),
      fc.array(commandWithMembership, { minLength: 100, maxLength: 200, size: "max" }),
      (seed, config, commands) => {
        const net = new Network(IDS, { seed, config });
        const checker = new Checker();
        const counter = { n: 0 };
        for (const c of commands) {
          run(net, c, counter);
          checker.check(net);
        }
      },
    ),
    { numRuns: 100 },
  );
});

Deno.test("property: with faults healed, the cluster elects a leader and commits", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 1_000_000 }),
      fc.array(command, { minLength: 1, maxLength: 100, size: "max" }),
      (seed, commands) => {
        const net = new Network(IDS, { seed, config: { electionTick: 5 } });
        const checker = new Checker();
        const counter = { n: 0 };
        for (const c of commands) run(net, c, counter);
        // Heal everything and let time pass: a leader emerges and a proposal commits
        // everywhere (retried, since a leader may still be deposed by a node whose term grew
        // during the faults).
        net.recover();
        const done = () => IDS.every((id) => net.applied.get(id)!.includes("final"));
        for (let tick = 0; tick < 300 && !done(); tick++) {
          const lead = net.leader();
          if (lead !== undefined && tick % 10 === 0) net.propose(lead, "final");
          net.tickAll();
        }
        checker.check(net);
        assert.ok(done(), "no proposal committed everywhere after healing");
      },
    ),
    { numRuns: 50 },
  );
});
