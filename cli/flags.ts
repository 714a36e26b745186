/**
 * A small parser for Docker-style command lines: `--name value`, `--name=value`, boolean
 * `--flag`, short aliases (`-q`), repeatable flags, and `--` to end options. Unknown flags are an
 * error that names the flag, as Docker's CLI does.
 *
 * @module
 */

/** What one flag takes. */
export interface FlagSpec {
  /** Long name without dashes. */
  name: string;
  /** One-letter alias without the dash. */
  short?: string;
  /** `boolean` flags take no value; `string` flags take one; `list` flags may repeat. */
  kind: "boolean" | "string" | "list";
  /** Shown in help. */
  description: string;
  /** Value when absent (string flags). */
  default?: string;
  /** The value's type as help shows it (`uint`, `duration`, `bytes`...); `string` or `list` if unset. */
  type?: string;
  /** Left out of help. */
  hidden?: boolean;
}

/** How {@link parseFlags} reads a command line. */
export interface ParseOptions {
  /**
   * False: the first positional argument ends the options, and everything after it is an
   * argument (Docker's `SetInterspersed(false)`, so `service create IMAGE CMD --flag` passes
   * `--flag` to the command).
   */
  interspersed?: boolean;
}

/** Parsed flags and the remaining positional arguments. */
export interface ParsedArgs {
  flags: Record<string, string | boolean | string[] | undefined>;
  args: string[];
  /** The flags the command line set (Docker's `flags.Changed`). */
  changed: Set<string>;
}

/** A command line the user got wrong: the message says what and how to fix it. */
export class UsageError extends Error {
  /** The command's usage line (`shoal service create [OPTIONS] IMAGE ...`), when known. */
  usage?: string;
  /** The command's path (`shoal service create`), when known. */
  commandPath?: string;
  /** Creates a usage error. */
  constructor(message: string, where?: { usage: string; commandPath: string }) {
    super(message);
    this.name = "UsageError";
    this.usage = where?.usage;
    this.commandPath = where?.commandPath;
  }
}

/** Parses `argv` against `specs`. */
export function parseFlags(
  argv: readonly string[],
  specs: readonly FlagSpec[],
  options: ParseOptions = {},
): ParsedArgs {
  const byName = new Map<string, FlagSpec>();
  for (const s of specs) {
    byName.set(s.name, s);
    if (s.short) byName.set(s.short, s);
  }
  const flags: ParsedArgs["flags"] = {};
  for (const s of specs) {
    flags[s.name] = s.kind === "boolean" ? false : s.kind === "list" ? [] : s.default;
  }
  const args: string[] = [];
  const changed = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      if (options.interspersed === false) {
        args.push(...argv.slice(i));
        break;
      }
      args.push(arg);
      continue;
    }
    const long = arg.startsWith("--");
    let body = arg.slice(long ? 2 : 1);
    // `-qd`: several boolean short flags at once.
    if (!long && body.length > 1 && !body.includes("=")) {
      const all = [...body].map((c) => byName.get(c));
      if (all.every((sp, k) => sp?.kind === "boolean" && sp.short === body[k])) {
        for (const sp of all) {
          flags[sp!.name] = true;
          changed.add(sp!.name);
        }
        continue;
      }
    }
    // `-eKEY=VALUE` and `-e=VALUE`: a short flag that takes a value, with the value attached.
    if (!long && body.length > 1) {
      const short = byName.get(body[0]);
      if (short && short.short === body[0] && short.kind !== "boolean") {
        body = body[1] === "=" ? body : `${body[0]}=${body.slice(1)}`;
      }
    }
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    const spec = byName.get(name);
    if (spec === undefined || (long ? spec.name !== name : spec.short !== name)) {
      throw new UsageError(`unknown flag: ${arg.slice(0, long ? 2 + name.length : 2)}`);
    }
    changed.add(spec.name);
    if (spec.kind === "boolean") {
      if (eq >= 0) {
        const v = body.slice(eq + 1);
        // Go's strconv.ParseBool forms.
        const yes = ["1", "t", "T", "true", "TRUE", "True"].includes(v);
        if (!yes && !["0", "f", "F", "false", "FALSE", "False"].includes(v)) {
          throw new UsageError(`invalid argument "${v}" for "--${spec.name}" flag: not a boolean`);
        }
        flags[spec.name] = yes;
      } else flags[spec.name] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) value = body.slice(eq + 1);
    else if (i + 1 < argv.length) value = argv[++i];
    else throw new UsageError(`flag needs an argument: --${spec.name}`);
    if (spec.kind === "list") (flags[spec.name] as string[]).push(value);
    else flags[spec.name] = value;
  }
  return { flags, args, changed };
}

/** Help text for a command's flags, aligned like Docker's. */
export function flagHelp(specs: readonly FlagSpec[]): string {
  const rows = specs.filter((s) => !s.hidden).map((s) => {
    const left = `${s.short ? `-${s.short}, ` : "    "}--${s.name}${
      s.kind === "boolean" ? "" : " " + (s.type ?? (s.kind === "list" ? "list" : "string"))
    }`;
    const def = s.default !== undefined ? ` (default "${s.default}")` : "";
    return [left, s.description + def] as const;
  });
  const width = Math.max(...rows.map(([l]) => l.length));
  return rows.map(([l, r]) => `  ${l.padEnd(width)}   ${r}`).join("\n");
}

/** `-f, --filter`: Docker's list filters. */
export const FILTER_FLAG: FlagSpec = {
  name: "filter",
  short: "f",
  kind: "list",
  description: "Filter output based on conditions provided",
};

/** `--format` of a listing: a table, a template, or json. */
export const TABLE_FORMAT_FLAG: FlagSpec = {
  name: "format",
  kind: "string",
  description:
    "Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')",
};

/** `-q, --quiet`: ids only. */
export const QUIET_FLAG: FlagSpec = {
  name: "quiet",
  short: "q",
  kind: "boolean",
  description: "Only display IDs",
};

/** `-f, --format` of an inspect: a template, or json. */
export const INSPECT_FORMAT_FLAG: FlagSpec = {
  name: "format",
  short: "f",
  kind: "string",
  description: "Format output using a custom template ('json' for JSON)",
};

/** `--pretty` of an inspect: Docker's human-friendly layout. */
export const PRETTY_FLAG: FlagSpec = {
  name: "pretty",
  kind: "boolean",
  description: "Print the information in a human friendly format",
};
