/**
 * The directory an agent keeps for each task, and the secret and config files in it:
 *
 * ```
 * <root>/<task id>/          0700, the process runtime's default working directory
 *   secrets/<target>         the task's secrets, with the reference's mode (default 0444)
 *   configs/<target>         its configs, likewise
 *   logs/output.log[.N]      captured output (see log_capture.ts)
 *   pid                      the running program's process id
 * ```
 *
 * Every directory is owner-only (0700), so although a file's mode may let anyone read it, only
 * the agent's user, which the task runs as, can reach it. The reference's `uid` and `gid` are
 * for containers; files here belong to the agent's user.
 *
 * @module
 */
import { dirname, join, normalize } from "node:path";
import type { FileReference } from "../../events/schema.ts";
import { type ExecutorTask, TaskFailure } from "./executor.ts";

/** Paths of one task's directory. */
export interface TaskDir {
  readonly path: string;
  readonly secrets: string;
  readonly configs: string;
  readonly logs: string;
  readonly pidFile: string;
}

/** The paths of task `taskId`'s directory under `root`. Throws for an id unfit for a path. */
export function taskDirPaths(root: string, taskId: string): TaskDir {
  if (!/^[0-9a-z]+$/.test(taskId)) {
    throw new TaskFailure(
      `task: invalid task id "${taskId}": must be lowercase letters and digits`,
    );
  }
  const path = join(root, taskId);
  return {
    path,
    secrets: join(path, "secrets"),
    configs: join(path, "configs"),
    logs: join(path, "logs", "output.log"),
    pidFile: join(path, "pid"),
  };
}

/**
 * Creates the task's directory `dir` (kept if it exists) and writes its secrets and configs
 * afresh. Throws {@linkcode TaskFailure} when a file's data is missing or its target is unsafe.
 */
export async function prepareTaskDir(dir: TaskDir, task: ExecutorTask): Promise<void> {
  await makePrivateDir(dir.path);
  await writeFiles(dir.secrets, "secret", task.spec.secrets, task.secretData);
  await writeFiles(dir.configs, "config", task.spec.configs, task.configData);
}

/** Deletes the task's directory and everything in it; a missing one is fine. */
export async function removeTaskDir(dir: TaskDir): Promise<void> {
  await Deno.remove(dir.path, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

/**
 * Where a reference's file goes inside its directory: its target (or name), relative, normalised.
 * Absolute targets (`/etc/app.conf`, as configs use in containers) are taken relative to the
 * directory; `..` is refused.
 */
export function fileTarget(ref: FileReference): string | undefined {
  const wanted = (ref.target || ref.name).replace(/^\/+/, "");
  const path = normalize(wanted);
  if (path === "." || path === "" || path.startsWith("..") || path.split("/").includes("..")) {
    return undefined;
  }
  return path;
}

async function writeFiles(
  dirPath: string,
  kind: "secret" | "config",
  refs: readonly FileReference[],
  data: ReadonlyMap<string, Uint8Array> | undefined,
): Promise<void> {
  // Written afresh: a previous attempt may have left other files or older modes.
  await Deno.remove(dirPath, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  await makePrivateDir(dirPath);
  const seen = new Set<string>();
  for (const ref of refs) {
    const target = fileTarget(ref);
    if (target === undefined) {
      throw new TaskFailure(
        `task: invalid ${kind} target "${ref.target}" for ${kind} "${ref.name}": ` +
          `must be a file name inside the ${kind}s directory`,
      );
    }
    if (seen.has(target)) {
      throw new TaskFailure(`task: two ${kind}s have the target "${target}"`);
    }
    seen.add(target);
    const bytes = data?.get(ref.id);
    if (bytes === undefined) {
      throw new TaskFailure(
        `task: cannot write ${kind} "${ref.name}" (${ref.id}): its data did not reach this node`,
      );
    }
    const path = join(dirPath, target);
    if (target.includes("/")) await makePrivateDir(dirname(path));
    await Deno.writeFile(path, bytes, { mode: 0o600, createNew: true });
    await Deno.chmod(path, ref.mode);
  }
}

/** Creates `path` (and missing parents) and makes it 0700 whatever the umask. */
async function makePrivateDir(path: string): Promise<void> {
  await Deno.mkdir(path, { recursive: true, mode: 0o700 });
  await Deno.chmod(path, 0o700);
}
