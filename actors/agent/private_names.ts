/**
 * Name resolution for process tasks through the node's mesh resolver (`node/mesh`), the way a
 * container gets it: where the agent runs as root and util-linux's `unshare` is installed, a
 * process task runs in a private mount namespace in which `/etc/resolv.conf` names the mesh's
 * resolver and `/etc/hosts` names the task itself, both bind-mounted from files in its task
 * directory; everything else it sees is the host's. Elsewhere it finds services through its
 * environment (`SHOAL_SERVICE_<NAME>_HOST`, task_addressing.ts).
 *
 * `unshare --mount` (without `--fork`) execs the shell, which execs the program: the task keeps
 * the pid the agent spawned, so stopping and killing its process group work as without it.
 *
 * @module
 */

let unshare: Promise<string | undefined> | undefined;

/** util-linux's `unshare`, if this node may use it (root, Linux), as a path. */
function findUnshare(): Promise<string | undefined> {
  unshare ??= (async () => {
    if (Deno.build.os !== "linux" || Deno.uid() !== 0) return undefined;
    for (const path of ["/usr/bin/unshare", "/bin/unshare"]) {
      try {
        const out = await new Deno.Command(path, {
          args: ["--mount", "true"],
          stdout: "null",
          stderr: "null",
        }).output();
        if (out.success) return path;
      } catch {
        continue;
      }
    }
    return undefined;
  })();
  return unshare;
}

/** Whether process tasks can get private names here: root, and util-linux's `unshare`. */
export async function privateNamesAvailable(): Promise<boolean> {
  return (await findUnshare()) !== undefined;
}

/** What {@linkcode withPrivateNames} needs. */
export interface PrivateNamesOptions {
  /** The task's directory: `resolv.conf` and `hosts` are written there. */
  dir: string;
  /** Name servers (addresses; port 53). */
  nameservers: readonly string[];
  /** The task's own name and address, for its hosts file. */
  hostname: string;
  addr: string;
  /** The program (resolved path) and its arguments. */
  program: string;
  args: readonly string[];
}

/** The files' contents, for tests and for writing. */
export function privateNamesFiles(
  options: Pick<PrivateNamesOptions, "nameservers" | "hostname" | "addr">,
): { resolvConf: string; hosts: string } {
  const resolvConf = options.nameservers.map((n) => `nameserver ${n}\n`).join("") +
    "options ndots:0\n";
  const hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
    (options.hostname ? `${options.addr}\t${options.hostname}\n` : "");
  return { resolvConf, hosts };
}

/** The shell step run inside the namespace: mount the files (best effort), then exec. */
const MOUNT_AND_EXEC = 'mount --bind "$1" /etc/resolv.conf 2>/dev/null; ' +
  '[ -e /etc/hosts ] && mount --bind "$2" /etc/hosts 2>/dev/null; shift 2; exec "$@"';

/**
 * Writes the task's `resolv.conf` and `hosts` and returns the command that runs the program
 * with them in a private mount namespace.
 */
export async function withPrivateNames(
  options: PrivateNamesOptions,
): Promise<{ program: string; args: string[] }> {
  const program = await findUnshare();
  if (program === undefined) throw new Error("private names need root and util-linux's unshare");
  const files = privateNamesFiles(options);
  const resolv = `${options.dir}/resolv.conf`;
  const hosts = `${options.dir}/hosts`;
  await Deno.writeTextFile(resolv, files.resolvConf, { mode: 0o644 });
  await Deno.writeTextFile(hosts, files.hosts, { mode: 0o644 });
  return {
    program,
    args: [
      "--mount",
      "--",
      "/bin/sh",
      "-c",
      MOUNT_AND_EXEC,
      "shoal-task",
      resolv,
      hosts,
      options.program,
      ...options.args,
    ],
  };
}
