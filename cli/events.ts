/**
 * `shoal events`: the cluster's events as they happen, from the manager's `/events` stream, as
 * `docker events` prints them (`2026-11-23T10:00:00.000000000Z service create abc (name=web)`),
 * or through `--format`. `--since` and `--until` take times or durations before now (`10m`).
 *
 * @module
 */
import { FILTER_FLAG } from "./flags.ts";
import { list, runSubcommand, str, type Subcommand } from "./command.ts";
import { parseFilters } from "./client.ts";
import type { EventMessage } from "./docker_types.ts";
import { CliError } from "./format.ts";
import { Template } from "./template.ts";
import { parseDuration } from "./units.ts";

/**
 * A `--since`/`--until` value as the API takes it (Docker's `timetypes.GetTimestamp`): a duration
 * counts back from `now`; a date or RFC 3339 time is converted; Unix seconds pass through.
 */
export function eventTimestamp(value: string, now: number): string {
  if (value === "") return "";
  if (value !== "0") {
    try {
      const ns = parseDuration(value);
      return String(Math.trunc((now - ns / 1e6) / 1000));
    } catch {
      // Not a duration.
    }
  }
  if (/^\d+(\.\d{1,9})?$/.test(value)) return value;
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new CliError(`failed to parse value as time or duration: "${value}"`);
  const frac = /\.(\d+)/.exec(value)?.[1] ?? "";
  const secs = Math.floor(ms / 1000);
  const nanos = frac ? frac.slice(0, 9).padEnd(9, "0") : String((ms % 1000) * 1e6).padStart(9, "0");
  return `${secs}.${nanos}`;
}

/**
 * Go's `2006-01-02T15:04:05.000000000Z07:00` of a time in nanoseconds (a bigint: nanoseconds
 * since 1970 do not fit a double exactly), in local time.
 */
export function rfc3339NanoFixed(
  timeNano: bigint,
  offsetMinutes = -new Date(Number(timeNano / 1_000_000n)).getTimezoneOffset(),
): string {
  const ms = Number(timeNano / 1_000_000n);
  const local = new Date(ms + offsetMinutes * 60_000);
  const pad = (n: number, w = 2) => String(n).padStart(w, "0");
  const nanos = String(timeNano % 1_000_000_000n).padStart(9, "0");
  const date = `${local.getUTCFullYear()}-${pad(local.getUTCMonth() + 1)}-${
    pad(local.getUTCDate())
  }`;
  const time = `${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${
    pad(local.getUTCSeconds())
  }`;
  let zone = "Z";
  if (offsetMinutes !== 0) {
    const a = Math.abs(offsetMinutes);
    zone = `${offsetMinutes < 0 ? "-" : "+"}${pad(Math.floor(a / 60))}:${pad(a % 60)}`;
  }
  return `${date}T${time}.${nanos}${zone}`;
}

/** `timeNano` from an event's JSON text, exactly. */
export function timeNanoOf(raw: string): bigint {
  const m = /"timeNano"\s*:\s*(\d+)/.exec(raw);
  return m ? BigInt(m[1]) : 0n;
}

/** One event as `docker events` prints it without `--format` (`raw`: the event's JSON text). */
export function prettyEvent(e: EventMessage, raw = JSON.stringify(e)): string {
  let out = "";
  const nano = timeNanoOf(raw);
  if (nano !== 0n) out += `${rfc3339NanoFixed(nano)} `;
  else if (e.time) out += `${rfc3339NanoFixed(BigInt(e.time) * 1_000_000_000n)} `;
  out += `${e.Type ?? ""} ${e.Action ?? ""} ${e.Actor?.ID ?? ""}`;
  const attrs = e.Actor?.Attributes ?? {};
  const keys = Object.keys(attrs).sort();
  if (keys.length > 0) out += ` (${keys.map((k) => `${k}=${attrs[k]}`).join(", ")})`;
  return out + "\n";
}

/**
 * An event as Docker's `--format json` prints it: its struct re-encoded (fields in Docker's order,
 * empty `status`/`id`/`from` left out, attributes sorted), `timeNano` exact from the text.
 */
export function eventJson(e: EventMessage, raw: string): string {
  const attrs = e.Actor?.Attributes ?? {};
  const out = {
    ...(e.status ? { status: e.status } : {}),
    ...(e.id ? { id: e.id } : {}),
    ...(e.from ? { from: e.from } : {}),
    Type: e.Type ?? "",
    Action: e.Action ?? "",
    Actor: {
      ID: e.Actor?.ID ?? "",
      Attributes: Object.fromEntries(Object.keys(attrs).sort().map((k) => [k, attrs[k]])),
    },
    scope: e.scope ?? "",
    time: e.time ?? 0,
    timeNano: 0,
  };
  return JSON.stringify(out).replace(/"timeNano":0}$/, `"timeNano":${timeNanoOf(raw)}}`);
}

/** An event with Go's field names, for templates (`{{.Actor.ID}}`, `{{.TimeNano}}`). */
function templateData(e: EventMessage) {
  return {
    Status: (e.status as string | undefined) ?? "",
    ID: (e.id as string | undefined) ?? "",
    From: (e.from as string | undefined) ?? "",
    Type: e.Type ?? "",
    Action: e.Action ?? "",
    Actor: { ID: e.Actor?.ID ?? "", Attributes: e.Actor?.Attributes ?? {} },
    Scope: e.scope ?? "",
    Time: e.time ?? 0,
    TimeNano: e.timeNano ?? 0,
  };
}

const events: Subcommand = {
  name: "events",
  use: "[OPTIONS]",
  summary: "Get real time events from the server",
  flags: [
    FILTER_FLAG,
    {
      name: "format",
      kind: "string",
      description: "Format output using a custom template ('json' for JSON)",
    },
    { name: "since", kind: "string", description: "Show all events created since timestamp" },
    { name: "until", kind: "string", description: "Stream events until this timestamp" },
  ],
  args: { exact: 0 },
  async run(env, p) {
    const format = str(p, "format");
    let tmpl: Template | null = null;
    if (format !== "" && format !== "json") {
      try {
        tmpl = new Template(format);
        tmpl.execute(templateData({}));
      } catch (err) {
        throw new CliError(`Error parsing format: ${(err as Error).message}`, 64);
      }
    }
    const now = env.now();
    const since = eventTimestamp(str(p, "since"), now);
    const until = eventTimestamp(str(p, "until"), now);
    let chain = Promise.resolve();
    await env.client.stream(
      "/events",
      {
        since: since || undefined,
        until: until || undefined,
        filters: parseFilters(list(p, "filter")),
      },
      (value, raw) => {
        const e = value as EventMessage;
        const text = format === "json"
          ? eventJson(e, raw) + "\n"
          : tmpl
          ? tmpl.execute(templateData(e)) + "\n"
          : prettyEvent(e, raw);
        chain = chain.then(() => env.io.out(text));
      },
    );
    await chain;
  },
};

/** Runs `shoal events`. */
export function eventsCommand(args: string[]): Promise<number> {
  return runSubcommand("shoal events", events, args);
}
