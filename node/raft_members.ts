/**
 * {@linkcode RaftMembers}: keeps the Raft group and the managers' records in the log in step,
 * on the leader only and level-triggered (DESIGN.md contract 5), as SwarmKit's role manager and
 * raft member list do:
 *
 * - a learner (a manager that joined and is catching up) is promoted to voter once it holds
 *   what was committed;
 * - a raft member whose node is gone from the state (`node rm`) is taken out of the group;
 * - `node promote`: a worker asked to be a manager gets the role and a raft id; its agent hears it
 *   in its next heartbeat answer and comes back as a manager that joins the group;
 * - `node demote`: a manager asked to be a worker (never the last, never when the rest could not
 *   form a quorum; the leader hands leadership over first) gets the worker role, then leaves the
 *   group (the rule above), and its record loses its manager status;
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

/** A raft id no manager of the swarm has (random: ids are never reused). */
function newRaftId(taken: Set<string>): number {
  for (;;) {
    const id = 2 + (crypto.getRandomValues(new Uint32Array(1))[0] % 0x7ffffffd);
    if (!taken.has(String(id))) return id;
  }
}

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

  /**
   * Promotions and demotions asked for (`spec.desiredRole`); true when it changed something (the
   * rest waits for the next look, one change at a time).
   */
  async #roles(status: ReturnType<RaftDriver["status"]>): Promise<boolean> {
    const { driver, manager } = this.#opts;
    const state = manager.state;
    const members = new Map(status.members.map((m) => [m.id, m]));
    const taken = new Set<string>();
    for (const n of state.nodes.values()) if (n.managerStatus) taken.add(n.managerStatus.raftId);
    for (const node of state.nodes.values()) {
      if (node.spec.desiredRole === "manager" && node.role === "worker") {
        const raftId = newRaftId(taken);
        await manager.propose([
          {
            type: "NodeRoleChanged",
            v: 1,
            data: { id: node.id, role: "manager" },
            meta: { by: BY, reason: "node promote: it becomes a manager" },
          },
          {
            type: "NodeManagerStatusChanged",
            v: 1,
            data: {
              id: node.id,
              managerStatus: {
                raftId: String(raftId),
                addr: "",
                leader: false,
                reachability: "unknown",
              },
            },
            meta: { by: BY, reason: `raft id ${raftId} for the promoted node` },
          },
        ], BY);
        this.#opts.logger?.info(`raft members: node ${node.id} promoted (raft ${raftId})`);
        return true;
      }
      if (node.spec.desiredRole === "worker" && node.role === "manager") {
        const raftId = Number(node.managerStatus?.raftId);
        if (raftId === driver.id) {
          // The leader is demoted: another voter leads first, and carries on from there.
          const to = status.members.find((m) => m.voter && m.id !== driver.id && m.connected);
          if (to === undefined) {
            this.#opts.logger?.warn(
              `raft members: cannot demote the leader: no other voter is reachable`,
            );
            return false;
          }
          await driver.transferLeadership(to.id);
          return true;
        }
        const voters = status.members.filter((m) => m.voter && m.id !== raftId);
        const reachable = voters.filter((m) => m.id === driver.id || m.connected).length;
        if (members.has(raftId) && reachable < Math.floor(voters.length / 2) + 1) {
          this.#opts.logger?.warn(
            `raft members: not demoting raft member ${raftId} yet: the other managers could not form a quorum`,
          );
          return false;
        }
        await manager.propose([{
          type: "NodeRoleChanged",
          v: 1,
          data: { id: node.id, role: "worker" },
          meta: { by: BY, reason: "node demote: it becomes a worker" },
        }], BY);
        this.#opts.logger?.info(`raft members: node ${node.id} demoted (raft ${raftId})`);
        return true;
      }
      if (
        node.role === "worker" && node.managerStatus !== undefined &&
        !members.has(Number(node.managerStatus.raftId))
      ) {
        await manager.propose([{
          type: "NodeManagerStatusChanged",
          v: 1,
          data: { id: node.id },
          meta: { by: BY, reason: `raft member ${node.managerStatus.raftId} left the group` },
        }], BY);
        return true;
      }
    }
    return false;
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
            status: {
              state: "down",
              message: "manager unreachable over raft",
              addr: node.status.addr,
            },
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
    if (await this.#roles(status)) return;

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
