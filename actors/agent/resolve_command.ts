/**
 * Finds the program a task or health check names, before anything is started, so that a missing
 * or non-executable program is reported with a reason a person can act on.
 *
 * @module
 */
import { isAbsolute, join } from "node:path";

/** Where a program was found, or why it was not. */
export type ResolvedCommand =
  | { readonly ok: true; readonly path: string }
  | { readonly ok: false; readonly reason: string };

/** Where to look for a program. */
export interface ResolveCommandOptions {
  /** `$PATH` to search for a bare name (colon-separated). */
  path: string;
  /** Directory a relative path such as `./run.sh` starts from. */
  cwd: string;
}

/**
 * Resolves `command` as a shell would: a name with a slash is a path (relative to `cwd`), a bare
 * name is searched for in `path`. Reasons read like the operating system's and Go's
 * (`No such file or directory`, `executable file not found in $PATH`).
 */
export async function resolveCommand(
  command: string,
  options: ResolveCommandOptions,
): Promise<ResolvedCommand> {
  if (command.includes("/")) {
    const path = isAbsolute(command) ? command : join(options.cwd, command);
    const problem = await executableProblem(path);
    return problem === undefined ? { ok: true, path } : { ok: false, reason: problem };
  }
  for (const dir of options.path.split(":")) {
    const path = join(
      dir === "" ? options.cwd : isAbsolute(dir) ? dir : join(options.cwd, dir),
      command,
    );
    if (await executableProblem(path) === undefined) return { ok: true, path };
  }
  return { ok: false, reason: "executable file not found in $PATH" };
}

/** Why `path` cannot be executed, or undefined if it looks executable. */
async function executableProblem(path: string): Promise<string | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return "No such file or directory";
    if (error instanceof Deno.errors.PermissionDenied) return "Permission denied";
    if (error instanceof Deno.errors.NotADirectory) return "Not a directory";
    return error instanceof Error ? error.message : String(error);
  }
  if (info.isDirectory) return "is a directory";
  if (!info.isFile) return "not a regular file";
  // Any execute bit: the kernel has the last word when the program is spawned.
  if (info.mode !== null && (info.mode & 0o111) === 0) return "Permission denied";
  return undefined;
}

/** The reason in a spawn error (`Failed to spawn 'x': No such file or directory (os error 2)`). */
export function spawnErrorReason(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const reason = message.replace(/^Failed to spawn '[^']*': /, "").replace(
    / \(os error \d+\)$/,
    "",
  );
  return reason || message;
}
