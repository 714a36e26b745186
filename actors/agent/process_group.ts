/**
 * Signals to the process groups tasks and probes run in. Each is spawned `detached`, which makes
 * it the leader of a new process group (its group id is its pid), so everything it starts can be
 * killed with it, as a container's processes die with the container.
 *
 * @module
 */

/** Sends `signal` to process `pid`; false when it is already gone. */
export function signalProcess(pid: number, signal: Deno.Signal): boolean {
  return send(pid, signal);
}

/** Sends `signal` to the process group led by `pid`; false when the group is already gone. */
export function signalGroup(pid: number, signal: Deno.Signal): boolean {
  return send(-pid, signal);
}

function send(target: number, signal: Deno.Signal): boolean {
  try {
    Deno.kill(target, signal);
    return true;
  } catch (error) {
    // Gone (ESRCH), or the id now belongs to another user's process (EPERM): nothing of ours.
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.PermissionDenied) {
      return false;
    }
    throw error;
  }
}
