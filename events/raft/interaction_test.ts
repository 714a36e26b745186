/**
 * Data-driven transcripts (etcd's interaction tests): each file in `testdata/` is a script of
 * commands, each followed by `----` and the output it must produce, built from `describe*`.
 *
 * To accept new output after a change you understand, rewrite the files:
 *
 * ```sh
 * REWRITE=1 ./node_modules/.bin/deno test -A events/raft/interaction_test.ts
 * ```
 *
 * Commands:
 *
 * - `add-nodes <n> [voters=(1 2 3)] [learners=(4)] [prevote=true] [checkquorum=true]`
 * - `add-node <id> voters=(...) [learners=(...)]` starts a joining node
 * - `campaign <id>`, `propose <id> <data>`, `propose-conf-change <id> <type> <node>`
 * - `transfer-leadership <from> <to>`, `read-index <id> <context>`, `compact <id>`
 * - `tick-election <id>`, `tick-heartbeat <id>`
 * - `process-ready <id>...`, `deliver-msgs <id>...`, `drop-msgs <id>...`, `stabilize [<id>...]`
 * - `raft-state`, `status <id>`, `raft-log <id>`
 */
import assert from "node:assert/strict";
import { bytes, Network } from "./_network_test_helper.ts";
import { describeEntries, describeMessage, describeReady } from "./describe.ts";
import { ProposalDroppedError } from "./errors.ts";
import type { ConfChange, Logger, NodeId } from "./types.ts";

const ROLE_NAMES: Record<string, string> = {
  follower: "StateFollower",
  preCandidate: "StatePreCandidate",
  candidate: "StateCandidate",
  leader: "StateLeader",
};

/** Runs commands against a network and renders what happens. */
class Interaction {
  net: Network | undefined;
  #out: string[] = [];
  readonly #logger: Logger = {
    debug: () => {},
    info: (m) => this.#out.push(`INFO ${m}`),
    warn: (m) => this.#out.push(`WARN ${m}`),
    error: (m) => this.#out.push(`ERROR ${m}`),
  };
  #options: { electionTick: number; heartbeatTick: number } = {
    electionTick: 10,
    heartbeatTick: 1,
  };

  get #network(): Network {
    if (!this.net) throw new Error("add-nodes first");
    return this.net;
  }

  run(line: string): string {
    this.#out = [];
    const [cmd, ...rest] = line.trim().split(/\s+/);
    const args = rest.filter((a) => !a.includes("="));
    const kv = new Map(
      rest.filter((a) => a.includes("=")).map((a) => a.split("=") as [string, string]),
    );
    const ids = (key: string) =>
      (kv.get(key) ?? "()").replace(/[()]/g, "").split(",").filter(Boolean).map(Number);
    const nodeArgs = () => args.map(Number);
    try {
      this.#dispatch(cmd, args, kv, ids, nodeArgs);
    } catch (e) {
      if (!(e instanceof ProposalDroppedError)) throw e;
      this.#out.push(`raft: ${e.message}`);
    }
    return this.#out.length === 0 ? "ok" : this.#out.join("\n");
  }

  #dispatch(
    cmd: string,
    args: string[],
    kv: Map<string, string>,
    ids: (key: string) => number[],
    nodeArgs: () => number[],
  ): void {
    switch (cmd) {
      case "add-nodes": {
        const n = Number(args[0]);
        const all = Array.from({ length: n }, (_, i) => i + 1);
        const learners = ids("learners");
        this.net = new Network(all, {
          learners,
          config: {
            ...this.#options,
            preVote: kv.get("prevote") !== "false",
            checkQuorum: kv.get("checkquorum") !== "false",
            // Every election timeout is exactly electionTick: transcripts stay short.
            random: () => 0,
            logger: this.#logger,
          },
        });
        this.#out = [];
        break;
      }
      case "add-node": {
        this.#network.add(Number(args[0]), { voters: ids("voters"), learners: ids("learners") });
        this.#out = [];
        break;
      }
      case "campaign":
        this.#network.node(Number(args[0])).campaign();
        break;
      case "propose":
        this.#network.propose(Number(args[0]), args[1]);
        break;
      case "propose-conf-change": {
        const cc: ConfChange = {
          type: args[1] as ConfChange["type"],
          nodeId: Number(args[2]),
        };
        this.#network.proposeConfChange(Number(args[0]), cc);
        break;
      }
      case "transfer-leadership":
        this.#network.node(Number(args[0])).transferLeader(Number(args[1]));
        break;
      case "read-index":
        this.#network.node(Number(args[0])).readIndex(bytes(args[1]));
        break;
      case "compact": {
        const snap = this.#network.compact(Number(args[0]));
        this.#out.push(`snapshot at ${snap.metadata.index}/${snap.metadata.term}`);
        break;
      }
      case "tick-election":
        this.#network.tick(Number(args[0]), this.#options.electionTick);
        break;
      case "tick-heartbeat":
        this.#network.tick(Number(args[0]), this.#options.heartbeatTick);
        break;
      case "process-ready":
        for (const id of nodeArgs()) this.#processReady(id);
        break;
      case "deliver-msgs":
        for (const id of nodeArgs()) this.#deliver(id);
        break;
      case "drop-msgs": {
        const net = this.#network;
        const drop = new Set(nodeArgs());
        for (const m of net.queue.filter((m) => drop.has(m.to))) {
          this.#out.push(`dropped: ${describeMessage(m)}`);
          net.discard(m);
        }
        net.queue = net.queue.filter((m) => !drop.has(m.to));
        break;
      }
      case "stabilize":
        this.#stabilize(nodeArgs().length > 0 ? nodeArgs() : this.#ids());
        break;
      case "raft-state":
        for (const id of this.#ids()) {
          const st = this.#network.node(id).status();
          const kind = st.config.learners.includes(id)
            ? "Learner"
            : st.config.voters.includes(id)
            ? "Voter"
            : "Non-member";
          this.#out.push(
            `${id}: ${ROLE_NAMES[st.softState.role]} (${kind}) Term:${st.hardState.term} ` +
              `Lead:${st.softState.lead}`,
          );
        }
        break;
      case "status":
        for (const [id, pr] of this.#network.node(Number(args[0])).status().progress) {
          this.#out.push(
            `${id}: State${pr.state[0].toUpperCase()}${pr.state.slice(1)} match=${pr.match} ` +
              `next=${pr.next}${pr.isLearner ? " learner" : ""}${pr.paused ? " paused" : ""}`,
          );
        }
        break;
      case "raft-log": {
        const s = this.#network.storages.get(Number(args[0]))!;
        if (s.lastIndex() < s.firstIndex()) {
          this.#out.push(
            `log is empty: first index=${s.firstIndex()}, last index=${s.lastIndex()}`,
          );
        } else {
          this.#out.push(
            describeEntries(s.entries(s.firstIndex(), s.lastIndex() + 1, Infinity)).trimEnd(),
          );
        }
        break;
      }
      default:
        throw new Error(`unknown command: ${cmd}`);
    }
  }

  #ids(): NodeId[] {
    return [...this.#network.nodes.keys()].sort((a, b) => a - b);
  }

  #processReady(id: NodeId): boolean {
    const net = this.#network;
    if (!net.node(id).hasReady()) return false;
    this.#out.push(`> ${id} handling Ready`);
    const mark = this.#out.length;
    const rd = net.processReady(id)!;
    // Log lines from applying (conf changes) come after the Ready they belong to.
    const logs = this.#out.splice(mark);
    this.#out.push(...indent(describeReady(rd)));
    this.#out.push(...logs.map((l) => `  ${l}`));
    return true;
  }

  #deliver(id: NodeId): boolean {
    const net = this.#network;
    const mine = net.queue.filter((m) => m.to === id);
    if (mine.length === 0) return false;
    net.queue = net.queue.filter((m) => m.to !== id);
    this.#out.push(`> ${id} receiving messages`);
    for (const m of mine) {
      this.#out.push(`  ${describeMessage(m)}`);
      const mark = this.#out.length;
      net.deliver(m);
      const logs = this.#out.splice(mark);
      this.#out.push(...logs.map((l) => `  ${l}`));
    }
    return true;
  }

  #stabilize(ids: NodeId[]): void {
    for (let round = 0; round < 1000; round++) {
      let busy = false;
      for (const id of ids) if (this.#processReady(id)) busy = true;
      for (const id of ids) if (this.#deliver(id)) busy = true;
      if (!busy) return;
    }
    throw new Error("stabilize did not converge");
  }
}

function indent(text: string): string[] {
  return text.split("\n").map((l) => `  ${l}`);
}

interface Block {
  comments: string[];
  command: string;
  expected: string;
}

/** Parses `# comments`, a command, `----`, then output up to a blank line. */
function parse(text: string): Block[] {
  const blocks: Block[] = [];
  const lines = text.split("\n");
  let comments: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.trim() === "") {
      if (comments.length > 0) comments.push("");
      continue;
    }
    if (line.startsWith("#")) {
      comments.push(line);
      continue;
    }
    assert.equal(lines[i + 1], "----", `line ${i + 2}: expected ---- after "${line}"`);
    const out: string[] = [];
    let j = i + 2;
    for (; j < lines.length && lines[j] !== ""; j++) out.push(lines[j]);
    blocks.push({ comments: trimBlank(comments), command: line, expected: out.join("\n") });
    comments = [];
    i = j;
  }
  return blocks;
}

function trimBlank(lines: string[]): string[] {
  while (lines.at(-1) === "") lines.pop();
  return lines;
}

function render(blocks: Block[]): string {
  return blocks.map((b) => [...b.comments, b.command, "----", b.expected].join("\n")).join("\n\n") +
    "\n";
}

const dir = new URL("./testdata/", import.meta.url);
const rewrite = Deno.env.get("REWRITE") === "1";

for (
  const entry of [...Deno.readDirSync(dir)].filter((e) => e.name.endsWith(".txt")).sort((a, b) =>
    a.name.localeCompare(b.name)
  )
) {
  Deno.test(`interaction: ${entry.name}`, () => {
    const url = new URL(entry.name, dir);
    const blocks = parse(Deno.readTextFileSync(url));
    const env = new Interaction();
    const actual = blocks.map((b) => ({ ...b, expected: env.run(b.command) }));
    if (rewrite) {
      Deno.writeTextFileSync(url, render(actual));
      return;
    }
    for (const [i, b] of blocks.entries()) {
      assert.equal(actual[i].expected, b.expected, `${entry.name}: ${b.command}`);
    }
  });
}
