/**
 * Output as Docker's CLI writes it (docker/cli `cli/command/formatter`): lists rendered through a
 * format (`table ...` aligned by the tab writer with a header row, `json`, or any Go template),
 * `inspect` output (indented JSON arrays, or a template per object), and the small display rules
 * Docker applies everywhere (12-character ids, `Running 5 seconds ago`, natural name order).
 *
 * @module
 */
import { HEADER_FUNCS, STRICT, Template, TemplateError } from "./template.ts";
import { tabwrite } from "./tabwriter.ts";
import { humanDuration } from "./units.ts";

/** Format keys, as Docker's. */
export const TABLE = "table";
/** The key of the `--format json` shorthand. */
export const JSON_KEY = "json";
/** Docker's `-q` template. */
export const QUIET_FORMAT = "{{.ID}}";

/** An error from the CLI itself (not the daemon): printed as is, with an exit status. */
export class CliError extends Error {
  /** The process exit status. */
  readonly status: number;
  /** Creates a CLI error. */
  constructor(message: string, status = 1) {
    super(message);
    this.name = "CliError";
    this.status = status;
  }
}

/**
 * A row of a list, as a Go formatting context: a struct whose fields a template may name. Unknown
 * fields are errors, as in Docker; `{{json .}}` gives every field, sorted by name.
 */
export type FormatContext = Record<string, unknown>;

/** Makes a formatting context named `type` (the Go type named in error messages). */
export function formatContext<T extends Record<string, unknown>>(type: string, fields: T): T {
  Object.defineProperty(fields, STRICT, { value: type, enumerable: false });
  return fields;
}

/** Docker's `Format.templateString`: the template a `--format` value stands for. */
export function templateString(format: string): string {
  if (format === TABLE) return "";
  if (format === JSON_KEY) return "{{json .}}";
  let out = format.startsWith(TABLE) ? format.slice(TABLE.length) : format;
  out = out.replace(/^ +| +$/g, "");
  return out.replaceAll("\\t", "\t").replaceAll("\\n", "\n");
}

/** Parses a format's template, with Docker's `template parsing error:` on failure. */
export function parseTemplate(source: string, funcs = {}): Template {
  try {
    return new Template(source, funcs);
  } catch (err) {
    if (err instanceof TemplateError) throw new CliError(`template parsing error: ${err.message}`);
    throw err;
  }
}

function run(tmpl: Template, data: unknown): string {
  try {
    return tmpl.execute(data);
  } catch (err) {
    if (err instanceof TemplateError) throw new CliError(`template parsing error: ${err.message}`);
    throw err;
  }
}

/**
 * Renders rows as Docker's `formatter.Context.Write`: each row through the template, one per
 * line; a `table` format also gets its header row and the tab writer's alignment.
 */
export function renderList(
  format: string,
  header: Record<string, string>,
  rows: readonly FormatContext[],
): string {
  const source = templateString(format);
  const tmpl = parseTemplate(source);
  let body = "";
  for (const row of rows) body += run(tmpl, row) + "\n";
  if (!format.startsWith(TABLE)) return body;
  const headerRow = run(parseTemplate(source, HEADER_FUNCS), header);
  return tabwrite(headerRow + "\n" + body);
}

/** What an inspect command fetched for one reference: the raw JSON and its parsed value. */
export interface Inspected {
  raw: string;
  value: unknown;
}

/**
 * Docker's `inspect.Inspect`: objects as an indented JSON array (no format), compact JSON
 * (`json`), or one template rendering per object. Errors for references that could not be
 * fetched are collected; the output still shows the others.
 */
export async function inspectOutput(
  refs: readonly string[],
  format: string,
  get: (ref: string) => Promise<Inspected>,
): Promise<{ out: string; errors: string[] }> {
  const tmpl = format === "" || format === JSON_KEY ? null : (() => {
    try {
      return new Template(format);
    } catch (err) {
      throw new CliError(`template parsing error: ${(err as Error).message}`, 64);
    }
  })();
  const raws: string[] = [];
  let text = "";
  const errors: string[] = [];
  for (const ref of refs) {
    let got: Inspected;
    try {
      got = await get(ref);
    } catch (err) {
      errors.push((err as Error).message);
      continue;
    }
    if (tmpl) {
      try {
        text += tmpl.execute(got.value) + "\n";
      } catch (err) {
        errors.push(`template parsing error: ${(err as Error).message}`);
      }
    } else raws.push(got.raw);
  }
  if (tmpl) return { out: text === "" ? "\n" : text, errors };
  if (raws.length === 0) return { out: "[]\n", errors };
  const joined = `[${raws.join(",")}]`;
  return { out: (format === JSON_KEY ? compactJson(joined) : indentJson(joined)) + "\n", errors };
}

/** Go's `json.Indent(dst, src, "", "    ")`: re-indents JSON text, keeping every token as is. */
export function indentJson(src: string, indent = "    "): string {
  let out = "";
  let depth = 0;
  let needIndent = false; // an opening bracket was just written
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === " " || c === "\t" || c === "\n" || c === "\r") continue;
    if (needIndent && c !== "]" && c !== "}") {
      needIndent = false;
      depth++;
      out += "\n" + indent.repeat(depth);
    }
    if (c === '"') {
      const end = stringEnd(src, i);
      out += src.slice(i, end);
      i = end - 1;
      continue;
    }
    switch (c) {
      case "{":
      case "[":
        out += c;
        needIndent = true;
        break;
      case ",":
        out += ",\n" + indent.repeat(depth);
        break;
      case ":":
        out += ": ";
        break;
      case "}":
      case "]":
        if (needIndent) needIndent = false;
        else {
          depth--;
          out += "\n" + indent.repeat(depth);
        }
        out += c;
        break;
      default:
        out += c;
    }
  }
  return out;
}

/** Go's `json.Compact`: JSON text without insignificant white space. */
export function compactJson(src: string): string {
  let out = "";
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c === '"') {
      const end = stringEnd(src, i);
      out += src.slice(i, end);
      i = end - 1;
    } else if (c !== " " && c !== "\t" && c !== "\n" && c !== "\r") out += c;
  }
  return out;
}

function stringEnd(src: string, start: number): number {
  let j = start + 1;
  while (j < src.length && src[j] !== '"') j += src[j] === "\\" ? 2 : 1;
  return j + 1;
}

// ---------------------------------------------------------------------------------------------
// Display rules

/** Docker's `PrettyPrint`: first letter upper case, the rest lower case (`running` → `Running`). */
export function prettyPrint(s: string): string {
  if (s.length === 0) return s;
  if (s.length === 1) return s.toLowerCase();
  return s[0].toUpperCase() + s.slice(1).toLowerCase();
}

/** Docker's `TruncateID`: the first 12 characters of an id. */
export function truncateId(id: string): string {
  const colon = id.indexOf(":");
  const bare = colon >= 0 ? id.slice(colon + 1) : id;
  return bare.length > 12 ? bare.slice(0, 12) : bare;
}

/** Docker's `Ellipsis`: at most `max` columns, the last one `…` when cut. */
export function ellipsis(s: string, max: number): string {
  if (max <= 0) return "";
  const chars = [...s];
  if (max === 1) return chars[0] ?? "";
  if (chars.length <= max) return s;
  return chars.slice(0, max - 1).join("") + "\u2026";
}

/** Natural order (`web.2` before `web.10`), as Docker's `sortorder.NaturalLess`. */
export function naturalCompare(a: string, b: string): number {
  const isDigit = (c: string) => c >= "0" && c <= "9";
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const c1 = a[i];
    const c2 = b[j];
    const d1 = isDigit(c1);
    const d2 = isDigit(c2);
    if (d1 !== d2) return d1 ? -1 : 1;
    if (!d1) {
      if (c1 !== c2) return c1 < c2 ? -1 : 1;
      i++;
      j++;
      continue;
    }
    while (i < a.length && a[i] === "0") i++;
    while (j < b.length && b[j] === "0") j++;
    const nz1 = i;
    const nz2 = j;
    while (i < a.length && isDigit(a[i])) i++;
    while (j < b.length && isDigit(b[j])) j++;
    const n1 = a.slice(nz1, i);
    const n2 = b.slice(nz2, j);
    if (n1.length !== n2.length) return n1.length - n2.length;
    if (n1 !== n2) return n1 < n2 ? -1 : 1;
    if (nz1 !== nz2) return nz1 - nz2;
  }
  return Math.sign(a.length - b.length);
}

/** Milliseconds since the epoch of an RFC 3339 time as the API sends it (nanoseconds allowed). */
export function parseTime(text: string | undefined): number {
  if (!text) return 0;
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!m) return Date.parse(text);
  const frac = (m[2] ?? "").slice(0, 3).padEnd(3, "0");
  return Date.parse(`${m[1]}.${frac}${m[3]}`);
}

/** Go's `time.Time.String()` of an RFC 3339 time: `2026-11-22 14:48:17.334614788 +0000 UTC`. */
export function goTimeString(text: string | undefined): string {
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(text ?? "");
  if (!m) return text ?? "";
  const frac = (m[3] ?? "").replace(/0+$/, "");
  const zone = m[4] === "Z" ? "+0000 UTC" : `${m[4].replace(":", "")} ${m[4].replace(":", "")}`;
  return `${m[1]} ${m[2]}${frac ? "." + frac : ""} ${zone}`;
}

/** `5 seconds ago`, as Docker prints a past time. */
export function ago(time: string | undefined, now: number): string {
  return `${humanDuration(now - parseTime(time))} ago`;
}
