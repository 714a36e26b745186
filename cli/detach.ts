/**
 * `--detach` for the commands that run a node (`shoal swarm init`, `shoal swarm join`,
 * `shoal start`), and `shoal stop`.
 *
 * A detached command runs the same command again without `--detach` as a background process in a
 * new session (no terminal), its output appended to `<data dir>/shoal.log`, its pid written to
 * `<data dir>/shoal.pid`. The command itself waits until the node is up (it printed "Press Ctrl-C
 * to stop.", or that the swarm is locked), prints what the node printed, as in the foreground,
 * with how to stop it instead of "Press Ctrl-C", and returns; a node that fails to start prints
 * why (its own words, from the log) and the command fails with its exit code.
 *
 * Stopping: `shoal stop --data-dir DIR` (through the control socket, as Ctrl-C: the node records
 * that it shuts down), or `kill -INT $(cat DIR/shoal.pid)`; `shoal swarm leave --data-dir DIR`
 * leaves the swarm and stops it. The node removes its pid file when it exits.
 *
 * @module
 */
import { join } from "node:path";
import { flagHelp, type FlagSpec, parseFlags, UsageError } from "./flags.ts";
import { CliError } from "./format.ts";

/** The `--detach` flag of the commands that run a node. */
export const DETACH_FLAG = {
  name: "detach",
  short: "d",
  kind: "boolean",
  description: "Run the node in the background (log and pid file in the data dir)",
} as const;

/** Set in the environment of a detached node process. */
const DETACHED_ENV = "SHOAL_DETACHED";

/** Where a detached node writes its output. */
export function logPath(dataDir: string): string {
  return join(dataDir, "shoal.log");
}

/** Where a detached node's pid is. */
export function pidPath(dataDir: string): string {
  return join(dataDir, "shoal.pid");
}

/** Whether this process is a detached node (started by {@linkcode runDetached}). */
export function isDetachedNode(): boolean {
  return Deno.env.get(DETACHED_ENV) === "1";
}

/**
 * `argv` without `--detach` (`-d`, `--detach=true|false`): what the background process runs.
 * Throws a `UsageError` for `--detach=` with another value.
 */
export function withoutDetach(argv: readonly string[]): string[] {
  const out: string[] = [];
  let flagsEnded = false;
  for (const arg of argv) {
    if (!flagsEnded && arg === "--") flagsEnded = true;
    if (!flagsEnded && (arg === "--detach" || arg === "-d" || /^--detach=/.test(arg))) {
      if (/^--detach=/.test(arg) && !/^--detach=(true|false|1|0)$/.test(arg)) {
        throw new UsageError(`invalid argument "${arg.slice(9)}" for "--detach" flag`);
      }
      continue;
    }
    out.push(arg);
  }
  return out;
}

/** A node log line (stderr's logrus format), not part of what the command prints. */
function isLogLine(line: string): boolean {
  return /^time="/.test(line);
}

/** What the command printed in its output so far, without the node's log lines. */
function printed(text: string): string {
  return text.split("\n").filter((l) => !isLogLine(l)).join("\n");
}

/** The ways a node process says it is up. */
const READY = /^Press Ctrl-C to stop\.$|^Swarm is locked: /m;

/** Options of {@linkcode runDetached}. */
export interface DetachOptions {
  /** The node's data dir (absolute). */
  readonly dataDir: string;
  /** The command's arguments, `--detach` included (`Deno.args`). */
  readonly argv: readonly string[];
  /** Writes what the command prints. */
  readonly out: (text: string) => Promise<void>;
  /** How long the node may take to come up, ms (default 120 s). */
  readonly timeoutMs?: number;
  /** The program and its first arguments (default: this Deno running `cli/main.ts`). */
  readonly command?: readonly string[];
}

/**
 * Runs the node command in the background and waits until it is up; resolves with the exit
 * code to return. See the module documentation.
 */
export async function runDetached(options: DetachOptions): Promise<number> {
  const { dataDir } = options;
  const args = withoutDetach(options.argv);
  const log = logPath(dataDir);
  await Deno.mkdir(dataDir, { recursive: true });
  let start = 0;
  try {
    start = (await Deno.stat(log)).size;
  } catch {
    // No log yet.
  }
  const program = options.command ?? [
    Deno.execPath(),
    "run",
    "--quiet",
    "--allow-all",
    "--v8-flags=--max-semi-space-size=64",
    new URL("./main.ts", import.meta.url).pathname,
  ];
  // sh redirects the output to the log (Deno's stdio is piped, inherited or null only).
  const child = new Deno.Command("/bin/sh", {
    args: ["-c", 'exec "$@" >>"$SHOAL_LOG" 2>&1 </dev/null', "sh", ...program, ...args],
    env: { [DETACHED_ENV]: "1", SHOAL_LOG: log },
    stdin: "null",
    stdout: "null",
    stderr: "null",
    detached: true,
  }).spawn();
  child.unref();
  await Deno.writeTextFile(pidPath(dataDir), `${child.pid}\n`);
  let exited: Deno.CommandStatus | undefined;
  child.status.then((s) => (exited = s));
  const deadline = Date.now() + (options.timeoutMs ?? 120_000);
  let text = "";
  for (;;) {
    text = await readFrom(log, start);
    const ready = READY.exec(text);
    if (ready && !exited) {
      const before = printed(text.slice(0, ready.index));
      const locked = ready[0].startsWith("Swarm is locked");
      await options.out(
        before + (locked ? printed(text.slice(ready.index)).trimEnd() + "\n\n" : "") +
          `The node runs in the background (pid ${child.pid}, log ${log}).\n` +
          `Stop it with "shoal stop --data-dir ${dataDir}".\n`,
      );
      return 0;
    }
    if (exited) break;
    if (Date.now() > deadline) {
      try {
        Deno.kill(-child.pid, "SIGTERM");
      } catch {
        // Gone meanwhile.
      }
      await Deno.remove(pidPath(dataDir)).catch(() => {});
      throw new CliError(
        `the node did not come up within ${(options.timeoutMs ?? 120_000) / 1000} s; see ${log}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await Deno.remove(pidPath(dataDir)).catch(() => {});
  text = await readFrom(log, start);
  const said = text.trim() === "" ? "(it printed nothing)" : text.trimEnd();
  throw new CliError(
    `${said}\n\nthe node did not start (exit code ${exited.code}); its output is in ${log}`,
  );
}

async function readFrom(path: string, offset: number): Promise<string> {
  try {
    const bytes = await Deno.readFile(path);
    return new TextDecoder().decode(bytes.subarray(offset));
  } catch {
    return "";
  }
}

/** Removes the pid file of a detached node that is stopping (if it is its own). */
export async function removeOwnPidFile(dataDir: string): Promise<void> {
  if (!isDetachedNode()) return;
  const path = pidPath(dataDir);
  const text = await Deno.readTextFile(path).catch(() => "");
  // The pid written is the shell's, which exec'd into this process: the same pid.
  if (text.trim() === String(Deno.pid)) await Deno.remove(path).catch(() => {});
}

const STOP_FLAGS: FlagSpec[] = [
  {
    name: "data-dir",
    kind: "string",
    description: "The data dir of the node to stop",
    default: ".shoal",
  },
  { name: "help", kind: "boolean", description: "Print usage" },
];

/**
 * `shoal stop`: stops the node running with a data dir, as Ctrl-C stops one in the foreground
 * (through its control socket), and waits until its process is gone.
 */
export async function stopCommand(argv: string[]): Promise<number> {
  const { flags, args } = parseFlags(argv, STOP_FLAGS);
  if (flags.help) {
    console.log(
      `Usage:  shoal stop [OPTIONS]\n\nStop the node running with a data dir (as Ctrl-C would)\n\nOptions:\n${
        flagHelp(STOP_FLAGS)
      }`,
    );
    return 0;
  }
  if (args.length > 0) throw new UsageError(`"shoal stop" accepts no arguments, got "${args[0]}"`);
  const dataDir = flags["data-dir"] as string;
  const { callControl, controlSocketPath, NodeNotRunningError } = await import(
    "../node/control.ts"
  );
  try {
    await callControl(dataDir, { op: "stop" });
  } catch (err) {
    if (err instanceof NodeNotRunningError) {
      throw new CliError(`Error: ${err.message}`);
    }
    throw err;
  }
  // The node answers, then stops: wait until its socket is gone.
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    try {
      await Deno.stat(controlSocketPath(dataDir));
    } catch {
      console.log("Node stopped.");
      return 0;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new CliError(`the node with data dir ${dataDir} is still stopping after 30 s`);
}
