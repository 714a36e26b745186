/**
 * A task's place on the swarm's networks, as its program sees it: the address to bind, and the
 * virtual IPs of the services it can reach, given as environment variables. Computed by a manager
 * from its state (`taskAddressing`) and sent with the task; turned into the environment by the
 * executors (`addressingEnv`).
 *
 * The variables:
 * - `SHOAL_TASK_ADDR`: the task's main address (its address on its first network, see the
 *   allocator's networking data model), or `127.0.0.1` when it is on no network. Bind it
 *   instead of `0.0.0.0` and two replicas on one node can both listen on the same port.
 * - `SHOAL_SERVICE_<NAME>_HOST=<vip>`, for every service in `vip` mode that shares a network with
 *   the task (the ingress network does not count: as in Docker, it carries published ports, not
 *   names). `<NAME>` is the service's name, upper-cased, with every character other than a letter
 *   or digit replaced by `_` (`my-stack_api` → `SHOAL_SERVICE_MY_STACK_API_HOST`); its aliases on
 *   the shared network and, for a stack's service, its name without the `<stack>_` prefix, give
 *   more names for the same address. When two names map to the same variable, the service
 *   whose own name it is wins, then the first by name.
 *
 * These are fixed when the task is assigned: a service created later is not in them, and `dnsrr`
 * services (which have no VIP) are not either. Names that follow the swarm as it changes are the
 * mesh's DNS (node/mesh/).
 *
 * @module
 */
import type { ClusterState, TaskRecord } from "../state.ts";

/** The label Docker's stack deploy puts on a stack's services. */
const STACK_LABEL = "com.docker.stack.namespace";

/** Where a task is on the swarm's networks. */
export interface TaskAddressing {
  /** Its main address, to bind; `127.0.0.1` when it is on no network. */
  readonly addr: string;
  /** Reachable services: environment name (`SHOAL_SERVICE_API_HOST`) → virtual IP. */
  readonly services: Readonly<Record<string, string>>;
}

/** The address a task on no network binds. */
export const DEFAULT_TASK_ADDR = "127.0.0.1";

/** `my-stack_api` → `SHOAL_SERVICE_MY_STACK_API_HOST`. */
export function serviceHostVariable(name: string): string {
  return `SHOAL_SERVICE_${name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_HOST`;
}

/** The task's main address, from its record alone. */
export function mainAddress(task: Pick<TaskRecord, "networks" | "addresses">): string {
  return task.networks?.[0]?.addr ?? task.addresses?.[0] ?? DEFAULT_TASK_ADDR;
}

/** Where `task` is on the networks of `state`, and the services it can reach there. Pure. */
export function taskAddressing(state: ClusterState, task: TaskRecord): TaskAddressing {
  const shared = new Set<string>();
  for (const a of task.networks ?? []) {
    if (state.networks.get(a.networkId)?.spec.ingress !== true) shared.add(a.networkId);
  }
  const own: [string, string][] = [];
  const extra: [string, string][] = [];
  if (shared.size > 0) {
    const services = [...state.services.values()].sort((a, b) =>
      a.spec.name < b.spec.name ? -1 : a.spec.name > b.spec.name ? 1 : 0
    );
    for (const service of services) {
      const vip = service.endpoint?.virtualIPs?.find((v) => shared.has(v.networkId));
      if (vip === undefined || service.spec.endpoint.mode !== "vip") continue;
      own.push([service.spec.name, vip.addr]);
      // An alias names the service on the network it is given for.
      for (const attachment of service.spec.task.networks) {
        const there = service.endpoint?.virtualIPs?.find((v) =>
          v.networkId === attachment.target && shared.has(v.networkId)
        );
        if (there === undefined) continue;
        for (const alias of attachment.aliases) extra.push([alias, there.addr]);
      }
      const stack = service.spec.labels[STACK_LABEL];
      if (stack && service.spec.name.startsWith(`${stack}_`)) {
        extra.push([service.spec.name.slice(stack.length + 1), vip.addr]);
      }
    }
  }
  const env: Record<string, string> = {};
  for (const [name, addr] of [...own, ...extra]) {
    const key = serviceHostVariable(name);
    if (!(key in env)) env[key] = addr;
  }
  return { addr: mainAddress(task), services: env };
}

/** The environment variables of a task's addressing (see the module documentation). */
export function addressingEnv(addressing: TaskAddressing | undefined): Record<string, string> {
  return {
    ...(addressing?.services ?? {}),
    SHOAL_TASK_ADDR: addressing?.addr ?? DEFAULT_TASK_ADDR,
  };
}
