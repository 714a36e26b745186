/**
 * What `shoal secret` and `shoal config` share: both are named blobs of data created from a file
 * or standard input, listed, inspected and removed the same way (docker/cli
 * `cli/command/secret`, `cli/command/config`). A secret in use cannot be removed; the manager's
 * message says which services hold it.
 *
 * @module
 */
import { INSPECT_FORMAT_FLAG, PRETTY_FLAG, QUIET_FLAG } from "./flags.ts";
import { type CommandEnv, list, str, type Subcommand } from "./command.ts";
import { parseFilters } from "./client.ts";
import type { FileObject } from "./docker_types.ts";
import {
  ago,
  CliError,
  formatContext,
  goTimeString,
  inspectOutput,
  naturalCompare,
  prettyPrint,
  QUIET_FORMAT,
  renderList,
  TABLE,
} from "./format.ts";
import { Template } from "./template.ts";
import { kvMap } from "./service_spec.ts";

/** How secrets and configs differ. */
export interface FileObjectKind {
  /** `secret` or `config`. */
  kind: "secret" | "config";
  /** API path: `/secrets` or `/configs`. */
  path: string;
  /** Largest data accepted (Docker: 500 KiB for secrets, 1000 KiB for configs). */
  maxBytes: number;
  table: string;
  header: Record<string, string>;
  pretty: string;
}

/** Secrets, as Docker lists and shows them. */
export const SECRET_KIND: FileObjectKind = {
  kind: "secret",
  path: "/secrets",
  maxBytes: 500 * 1024,
  table: "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
  header: {
    ID: "ID",
    Name: "NAME",
    Driver: "DRIVER",
    CreatedAt: "CREATED",
    UpdatedAt: "UPDATED",
    Labels: "LABELS",
  },
  pretty: `ID:              {{.ID}}
Name:              {{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Driver:            {{.Driver}}
Created at:        {{.CreatedAt}}
Updated at:        {{.UpdatedAt}}`,
};

/** Configs, as Docker lists and shows them. */
export const CONFIG_KIND: FileObjectKind = {
  kind: "config",
  path: "/configs",
  maxBytes: 1000 * 1024,
  table: "table {{.ID}}\t{{.Name}}\t{{.CreatedAt}}\t{{.UpdatedAt}}",
  header: { ID: "ID", Name: "NAME", CreatedAt: "CREATED", UpdatedAt: "UPDATED", Labels: "LABELS" },
  pretty: `ID:			{{.ID}}
Name:			{{.Name}}
{{- if .Labels }}
Labels:
{{- range $k, $v := .Labels }}
 - {{ $k }}{{if $v }}={{ $v }}{{ end }}
{{- end }}{{ end }}
Created at:            	{{.CreatedAt}}
Updated at:            	{{.UpdatedAt}}
Data:
{{.Data}}`,
};

function labelsString(labels: Record<string, string> | undefined): string {
  if (!labels) return "";
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).sort().join(",");
}

/** One secret's or config's row for `ls`. */
export function fileObjectContext(o: FileObject, now: number) {
  return formatContext("*formatter.fileObjectContext", {
    ID: o.ID,
    Name: o.Spec.Name ?? "",
    Driver: o.Spec.Driver?.Name ?? "",
    CreatedAt: ago(o.CreatedAt, now),
    UpdatedAt: ago(o.UpdatedAt, now),
    Labels: labelsString(o.Spec.Labels),
    Label: (name: unknown) => o.Spec.Labels?.[String(name)] ?? "",
  });
}

/** Renders `secret ls` / `config ls`. */
export function renderFileObjects(
  kind: FileObjectKind,
  items: readonly FileObject[],
  format: string,
  quiet: boolean,
  now: number,
): string {
  let f = format || TABLE;
  if (f === TABLE) f = quiet ? QUIET_FORMAT : kind.table;
  const sorted = [...items].sort((a, b) => naturalCompare(a.Spec.Name ?? "", b.Spec.Name ?? ""));
  return renderList(f, kind.header, sorted.map((o) => fileObjectContext(o, now)));
}

function decodeData(data: string | undefined): string {
  if (!data) return "";
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

/** Renders `secret inspect --pretty` / `config inspect --pretty`. */
export function renderFileObjectPretty(kind: FileObjectKind, items: readonly FileObject[]): string {
  const tmpl = new Template(kind.pretty);
  return items.map((o) =>
    tmpl.execute(formatContext("*inspectContext", {
      ID: o.ID,
      Name: o.Spec.Name ?? "",
      Labels: o.Spec.Labels ?? {},
      Driver: o.Spec.Driver?.Name ?? "",
      CreatedAt: prettyPrint(goTimeString(o.CreatedAt)),
      UpdatedAt: prettyPrint(goTimeString(o.UpdatedAt)),
      Data: decodeData(o.Spec.Data),
    })) + "\n"
  ).join("");
}

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

async function readData(env: CommandEnv, kind: FileObjectKind, file: string): Promise<Uint8Array> {
  let data: Uint8Array;
  if (file === "-") {
    try {
      data = await env.io.readStdin();
    } catch (err) {
      throw new CliError(`error reading from STDIN: ${(err as Error).message}`);
    }
    if (data.length === 0) throw new CliError("error reading from STDIN: data is empty");
  } else if (file === "") {
    throw new CliError(`${kind.kind} file is required`);
  } else {
    try {
      data = await Deno.readFile(file);
    } catch (err) {
      const reason = err instanceof Deno.errors.NotFound
        ? "no such file or directory"
        : (err as Error).message;
      throw new CliError(`error reading from ${file}: open ${file}: ${reason}`);
    }
    if (data.length === 0) throw new CliError(`error reading from ${file}: data is empty`);
  }
  return data.subarray(0, 2 * kind.maxBytes);
}

/** The `create | inspect | ls | rm` subcommands for a kind. */
export function fileObjectCommands(kind: FileObjectKind): Subcommand[] {
  const K = kind.kind.toUpperCase();
  const create: Subcommand = {
    name: "create",
    use: `[OPTIONS] ${K} file|-`,
    summary: kind.kind === "secret"
      ? "Create a secret from a file or STDIN as content"
      : "Create a config from a file or STDIN",
    flags: [{
      name: "label",
      short: "l",
      kind: "list",
      description: `${kind.kind === "secret" ? "Secret" : "Config"} labels`,
    }],
    args: { min: 1, max: 2 },
    async run(env, p) {
      const [name, file = ""] = p.args;
      let data: Uint8Array;
      try {
        data = await readData(env, kind, file);
      } catch (err) {
        if (kind.kind === "config" && err instanceof CliError) {
          throw new CliError(`Error reading content from "${file}": ${err.message}`);
        }
        throw err;
      }
      const res = await env.client.post<{ ID: string }>(`${kind.path}/create`, {
        Name: name,
        Labels: kvMap(list(p, "label")),
        Data: toBase64(data),
      });
      await env.io.out(`${res.ID}\n`);
    },
  };
  const inspect: Subcommand = {
    name: "inspect",
    use: `[OPTIONS] ${K} [${K}...]`,
    summary: `Display detailed information on one or more ${kind.kind}s`,
    flags: [
      INSPECT_FORMAT_FLAG,
      PRETTY_FLAG,
    ],
    args: { min: 1 },
    async run(env, p) {
      let format = str(p, "format");
      if (p.flags.pretty) format = "pretty";
      if (format.startsWith("pretty") && format !== "pretty") {
        throw new CliError("cannot supply extra formatting options to the pretty template");
      }
      const get = (ref: string) =>
        env.client.getRaw<FileObject>(`${kind.path}/${encodeURIComponent(ref)}`);
      if (format === "pretty") {
        const items: FileObject[] = [];
        for (const ref of p.args) items.push((await get(ref)).value);
        await env.io.out(renderFileObjectPretty(kind, items));
        return;
      }
      const { out, errors } = await inspectOutput(p.args, format, get);
      await env.io.out(out);
      if (errors.length > 0) throw new CliError(errors.join("\n"));
    },
  };
  const ls: Subcommand = {
    name: "ls",
    aliases: ["list"],
    use: "[OPTIONS]",
    summary: `List ${kind.kind}s`,
    flags: [
      {
        name: "filter",
        short: "f",
        kind: "list",
        description: "Filter output based on conditions provided",
      },
      {
        name: "format",
        kind: "string",
        description:
          "Format output using a custom template ('table', 'table TEMPLATE', 'json', 'TEMPLATE')",
      },
      QUIET_FLAG,
    ],
    args: { exact: 0 },
    async run(env, p) {
      const items = await env.client.get<FileObject[]>(kind.path, {
        filters: parseFilters(list(p, "filter")),
      });
      await env.io.out(
        renderFileObjects(kind, items, str(p, "format"), p.flags.quiet === true, env.now()),
      );
    },
  };
  const rm: Subcommand = {
    name: "rm",
    aliases: ["remove"],
    use: `${K} [${K}...]`,
    summary: `Remove one or more ${kind.kind}s`,
    flags: [],
    args: { min: 1 },
    async run(env, p) {
      const errors: string[] = [];
      for (const ref of p.args) {
        try {
          await env.client.delete(`${kind.path}/${encodeURIComponent(ref)}`);
          await env.io.out(`${ref}\n`);
        } catch (err) {
          if (!(err instanceof CliError)) throw err;
          errors.push(err.message);
        }
      }
      if (errors.length > 0) throw new CliError(errors.join("\n"));
    },
  };
  return [create, inspect, ls, rm];
}
