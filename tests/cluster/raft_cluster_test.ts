/**
 * Raft for real: three managers as separate OS processes on loopback, synced SQLite, proposals
 * under load, `kill -9` of the leader. A new leader must commit soon after; and once every
 * process has been killed and restarted, every acknowledged proposal must be there, once, in
 * order, at the index it was acknowledged with, on every node.
 */
import assert from "node:assert/strict";
import { bytesOf, NodeError, textOf } from "./raft_protocol.ts";
import { RaftProcesses } from "./raft_processes.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Ack {
  payload: string;
  seq: number;
  index: number;
  node: number;
  at: number;
}

/** Workers proposing unique payloads at whoever leads, following redirects. */
class Load {
  acks: Ack[] = [];
  errors = 0;
  #stop = false;
  #leader: number;
  #workers: Promise<void>[] = [];

  constructor(readonly cluster: RaftProcesses, leader: number, workers: number) {
    this.#leader = leader;
    for (let w = 0; w < workers; w++) this.#workers.push(this.#run(w));
  }

  async #run(w: number): Promise<void> {
    let attempt = 0;
    for (let k = 0; !this.#stop; k++) {
      // Every attempt is a distinct payload, so a retry can never look like a duplicate.
      const payload = `w${w}-k${k}-a${attempt++}-`.padEnd(100, "x");
      const node = this.#leader;
      try {
        const client = await this.cluster.client(node);
        const { seq, index } = await client.propose(bytesOf(payload));
        this.acks.push({ payload, seq, index, node, at: performance.now() });
      } catch (err) {
        this.errors++;
        k--; // same k, next attempt
        if (err instanceof NodeError && err.leaderId > 0) this.#leader = err.leaderId;
        else await this.#findLeader();
      }
    }
  }

  async #findLeader(): Promise<void> {
    await sleep(10);
    for (const st of await this.cluster.statuses()) {
      if (st.role === "leader") this.#leader = st.id;
    }
  }

  async until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(10);
    }
  }

  async stop(): Promise<void> {
    this.#stop = true;
    await Promise.all(this.#workers);
  }
}

Deno.test("raft processes: kill -9 of the leader under load loses no acknowledged proposal", () =>
  killLeaderUnderLoad(false));

Deno.test(
  "raft processes: the same with leaders sending before persisting (leaderSendsBeforePersist)",
  () => killLeaderUnderLoad(true),
);

async function killLeaderUnderLoad(leaderSendsBeforePersist: boolean): Promise<void> {
  const cluster = await RaftProcesses.start({ size: 3, leaderSendsBeforePersist });
  let load: Load | undefined;
  try {
    const first = await cluster.waitForLeader();
    load = new Load(cluster, first, 16);
    await load.until("300 acknowledged proposals", () => load!.acks.length >= 300);

    // kill -9 the leader mid-load.
    const killedAt = performance.now();
    await cluster.kill(first);
    const before = load.acks.length;
    await load.until(
      "a commit by a new leader",
      () => load!.acks.some((a) => a.at > killedAt && a.node !== first),
      10_000,
    );
    const failoverMs = load.acks.find((a) => a.at > killedAt && a.node !== first)!.at - killedAt;
    // Election timeouts are 1 to 2 s; the fast failover of the driver makes it far shorter.
    assert.ok(
      failoverMs < 1_000,
      `a new leader committed ${failoverMs.toFixed(0)} ms after the kill`,
    );
    await load.until("300 more", () => load!.acks.length >= before + 300);

    // The old leader comes back as a follower and catches up, under load.
    await cluster.startNode(first);
    await load.until("200 more", () => load!.acks.length >= before + 500);
    await load.stop();

    // Everyone crashes and restarts.
    for (const id of [1, 2, 3]) await cluster.kill(id);
    await Promise.all([1, 2, 3].map((id) => cluster.startNode(id)));
    const leader = await cluster.waitForLeader();
    const marker = await (await cluster.client(leader)).propose(bytesOf("marker"));
    const deadline = Date.now() + 20_000;
    for (;;) {
      const st = await cluster.statuses();
      if (st.length === 3 && st.every((s) => s.appliedSeq >= marker.seq)) break;
      if (Date.now() > deadline) throw new Error(`not caught up: ${JSON.stringify(st)}`);
      await sleep(20);
    }

    type Row = { seq: number; index: number; term: number; text: string };
    const logs: Row[][] = [];
    for (const id of [1, 2, 3]) {
      const entries = await (await cluster.client(id)).allEntries();
      logs.push(entries.map((e) => ({ ...e, text: textOf(e.data) })));
    }
    // The same log everywhere.
    const show = (l: Row[]) => l.map((e) => `${e.seq}/${e.index}/${e.term}/${e.text}`);
    assert.deepEqual(show(logs[1]), show(logs[0]));
    assert.deepEqual(show(logs[2]), show(logs[0]));
    const log = logs[0];
    assert.deepEqual(log.map((e) => e.seq), log.map((_, i) => i + 1), "seq numbers have no gaps");
    // Nothing twice (every attempt had its own payload).
    assert.equal(new Set(log.map((e) => e.text)).size, log.length, "no entry is duplicated");
    // Every acknowledged proposal, at the position it was acknowledged with.
    for (const ack of load.acks) {
      const e = log[ack.seq - 1];
      assert.equal(e?.text, ack.payload, `acknowledged ${ack.payload} at seq ${ack.seq}`);
      assert.equal(e.index, ack.index);
    }
    // Each worker's acknowledged proposals in the order it made them.
    const byWorker = new Map<string, number[]>();
    for (const a of load.acks) {
      const w = a.payload.split("-")[0];
      byWorker.set(w, [...byWorker.get(w) ?? [], a.seq]);
    }
    for (const seqs of byWorker.values()) assert.deepEqual(seqs, seqs.toSorted((a, b) => a - b));
    assert.equal(log.at(-1)?.text, "marker");
    console.log(
      `  ${load.acks.length} acknowledged, ${log.length} in the log, ${load.errors} retried, ` +
        `failover ${failoverMs.toFixed(0)} ms`,
    );
  } catch (err) {
    for (const n of cluster.nodes) {
      if (n.stderr) console.error(`--- node ${n.id} stderr ---\n${n.stderr.slice(-4000)}`);
    }
    throw err;
  } finally {
    await load?.stop();
    await cluster.stop();
  }
}
