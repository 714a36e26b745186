/**
 * The CLI's side of the manager's API over mutual TLS (`node/api_tls.ts`), with Docker's global
 * options: `--tlsverify` (or `--tls`), `--tlscacert`, `--tlscert`, `--tlskey`, and Docker's
 * environment: `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` (a directory holding `ca.pem`, `cert.pem`
 * and `key.pem`; Docker's default is `~/.docker`).
 *
 * A manager's own files serve as they are: `--tlscacert DIR/certificates/swarm-root-ca.crt
 * --tlscert DIR/certificates/swarm-node.crt --tlskey DIR/certificates/swarm-node.key`.
 *
 * @module
 */
import { join } from "node:path";
import { CliError } from "./format.ts";

/** Docker's TLS options, as given before the command name. */
export interface TlsFlags {
  tls?: boolean;
  tlsverify?: boolean;
  tlscacert?: string;
  tlscert?: string;
  tlskey?: string;
}

/** The PEM material of a TLS client. */
export interface TlsClientMaterial {
  readonly caCerts: string[];
  readonly cert: string;
  readonly key: string;
}

/** The global flags Docker has for TLS (`--tlscacert PATH` or `--tlscacert=PATH`, ...). */
const VALUE_FLAGS = ["tlscacert", "tlscert", "tlskey"] as const;

/**
 * Takes Docker's TLS options off the front of `argv` into `flags`; returns how many arguments
 * it used (0 when `argv[0]` is none of them).
 */
export function takeTlsFlag(argv: readonly string[], flags: TlsFlags): number {
  const a = argv[0] ?? "";
  for (const name of ["tls", "tlsverify"] as const) {
    if (a === `--${name}`) {
      flags[name] = true;
      return 1;
    }
    const m = new RegExp(`^--${name}=(true|false)$`).exec(a);
    if (m) {
      flags[name] = m[1] === "true";
      return 1;
    }
  }
  for (const name of VALUE_FLAGS) {
    if (a === `--${name}` && argv.length > 1) {
      flags[name] = argv[1];
      return 2;
    }
    if (a.startsWith(`--${name}=`)) {
      flags[name] = a.slice(name.length + 3);
      return 1;
    }
  }
  return 0;
}

/**
 * The TLS material to use, or undefined for plain HTTP: TLS is on with `--tls`, `--tlsverify`,
 * a `--tlscert`, or `DOCKER_TLS_VERIFY` set (non-empty); the files come from the flags, else
 * `DOCKER_CERT_PATH`, else `~/.docker`. A file that cannot be read is an error naming it.
 */
export async function tlsClientMaterial(
  flags: TlsFlags,
  env: (name: string) => string | undefined,
): Promise<TlsClientMaterial | undefined> {
  const on = flags.tls === true || flags.tlsverify === true || flags.tlscert !== undefined ||
    flags.tlskey !== undefined || flags.tlscacert !== undefined || !!env("DOCKER_TLS_VERIFY");
  if (!on || flags.tlsverify === false && flags.tls === false) return undefined;
  const dir = env("DOCKER_CERT_PATH") || join(env("HOME") ?? ".", ".docker");
  const read = async (path: string, what: string, flag: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (err) {
      throw new CliError(
        `could not read the ${what} ${path} (--${flag}, or DOCKER_CERT_PATH): ${
          (err as Error).message
        }`,
      );
    }
  };
  const [ca, cert, key] = await Promise.all([
    read(flags.tlscacert ?? join(dir, "ca.pem"), "CA certificate", "tlscacert"),
    read(flags.tlscert ?? join(dir, "cert.pem"), "client certificate", "tlscert"),
    read(flags.tlskey ?? join(dir, "key.pem"), "client key", "tlskey"),
  ]);
  return { caCerts: [ca], cert, key };
}
