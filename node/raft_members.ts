/**
 * {@linkcode RaftMembers}: keeps the Raft group and the managers' records in the log in step,
 * on the leader only and level-triggered (DESIGN.md contract 5), as SwarmKit's role manager and
 * raft member list do:
 *
 * - a learner (a manager that joined and is catching up) is promoted to voter once it holds
 *   what was committed;
 * - a raft member whose node is gone from the state (`node rm`) is taken out of the group;
 * - each manager's `ManagerStatus` says whether it leads and whether the leader reaches it
 *   (Docker's `Leader`, `Reachable`, `Unreachable`), and a manager the leader has not reached
 *   for a few seconds is marked down (managers have no agent heartbeats: Raft is their
 *   heartbeat), and ready again when it is back.
 *
 * @module
 */
import type { ShoalEvent } from "../events/schema.ts";
import type { RaftDriver } from "../events/raft/driver.ts";
import type { Manager } from "../actors/manager.ts";
import type { Logger } from "../actors/runtime.ts";

/** Options of {@linkcode RaftMembers}. */
export interface RaftMembersOptions {
  driver: RaftDriver;
  manager: Manager;
  logger?: Logger;
  /** How often to look, ms (default 500). */
  intervalMs?: number;
  /** How long a manager may be unreachable before it is marked down, ms (default 3 s). */
  downAfterMs?: number;
}

const BY = "raft";

/** See the module documentation. */
export class RaftMembers {
  #opts: RaftMembersOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  #running: Promise<void> | undefined;
  #promoting = new Set<number>();
  #unreachableSince = new Map<number, number>();
  #stopped = false;

  /** Creates the reconciler; call {@linkcode start}. */
  constructor(options: RaftMembersOptions) {
    this.#opts = options;
  }

  /** Starts looking every interval (it acts only while this node leads). */
  start(): void {
    this.#timer = setInterval(() => this.kick(), this.#opts.intervalMs ?? 500);
  }

  /** Looks now (unless a look is under way). */
  kick(): void {
    if (this.#stopped || this.#running) return;
    this.#running = this.#reconcile().catch((err) => {
      this.#opts.logger?.warn(`raft members: ${(err as Error).message}`);
    }).finally(() => this.#running = undefined);
  }

  /** Stops looking; waits for a look under way. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#running;
  }

  async #reconcile(): Promise<void> {
    const { driver, manager } = this.#opts;
    if (!driver.isLeader || !manager.leading) {
      this.#unreachableSince.clear();
      return;
    }
    const status = driver.status();
    const now = Date.now();
    const members = new Map(status.members.map((m) => [m.id, m]));
    const state = manager.state;
    const events: ShoalEvent[] = [];
    const byRaftId = new Map<number, string>();
    for (const node of state.nodes.values()) {
      const ms = node.managerStatus;
      if (node.role !== "manager" || ms === undefined) continue;
      const raftId = Number(ms.raftId);
      byRaftId.set(raftId, node.id);
      const member = members.get(raftId);
      const self = raftId === driver.id;
      const reachable = member !== undefined && (self || member.connected);
      if (reachable) this.#unreachableSince.delete(raftId);
      else if (!this.#unreachableSince.has(raftId)) this.#unreachableSince.set(raftId, now);
      const leader = raftId === status.leader;
      const reachability = reachable ? "reachable" : "unreachable";
      if (ms.leader !== leader || ms.reachability !== reachability) {
        events.push({
          type: "NodeManagerStatusChanged",
          v: 1,
          data: { id: node.id, managerStatus: { ...ms, leader, reachability } },
          meta: {
            by: BY,
            reason: leader
              ? `raft member ${raftId} leads (term ${status.term})`
              : `the leader ${reachable ? "reaches" : "does not reach"} raft member ${raftId}`,
          },
        });
      }
      const since = this.#unreachableSince.get(raftId);
      const downAfter = this.#opts.downAfterMs ?? 3_000;
      if (since !== undefined && now - since >= downAfter && node.status.state === "ready") {
        events.push({
          type: "NodeStatusChanged",
          v: 1,
          data: {
            id: node.id,
            status: { state: "down", message: "manager unreachable over raft", addr: node.status.addr },
          },
          meta: { by: BY, reason: `raft member ${raftId} unreachable for ${now - since} ms` },
        });
      } else if (
        reachable && !self && node.status.state === "down" &&
        node.status.message === "manager unreachable over raft"
      ) {
        events.push({
          type: "NodeStatusChanged",
          v: 1,
          data: { id: node.id, status: { state: "ready", message: "", addr: node.status.addr } },
          meta: { by: BY, reason: `raft member ${raftId} is reachable again` },
        });
      }
    }
    if (events.length > 0) await manager.propose(events, BY);

    for (const member of status.members) {
      if (member.id === driver.id) continue;
      if (!byRaftId.has(member.id)) {
        // Its node was removed from the swarm: it leaves the group too.
        this.#opts.logger?.info(`raft members: removing raft member ${member.id} (node removed)`);
        await driver.remove(member.id);
        return; // one configuration change at a time
      }
      if (!member.voter && !this.#promoting.has(member.id)) {
        this.#promoting.add(member.id);
        driver.promote(member.id).then(
          () => this.#opts.logger?.info(`raft members: raft member ${member.id} is now a voter`),
          (err) => this.#opts.logger?.warn(`raft members: promoting ${member.id}: ${err.message}`),
        ).finally(() => this.#promoting.delete(member.id));
      }
    }
  }
}
