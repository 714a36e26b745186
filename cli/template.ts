/**
 * Go's `text/template`, the part Docker's `--format` uses: `{{.Field.Sub}}`, pipelines with
 * `|`, variables, `if`/`else if`/`else`, `range` (with `$k, $v :=`), `with`, trim markers
 * (`{{-`, `-}}`), comments, and the functions Go and Docker's CLI provide (`json`, `join`,
 * `split`, `lower`, `upper`, `title`, `pad`, `truncate`, `printf`, `eq`, `len`, `index`...).
 *
 * Values print as Go's `fmt.Sprint` does (`true`, `[a b]`, `map[k:v]`, `<no value>`), and are
 * true or false as Go's templates judge them (empty strings, zero, empty lists and maps are
 * false). Objects marked with {@link STRICT} behave like Go structs: a field they lack is an
 * error, as `can't evaluate field` is in Go; plain objects behave like Go maps.
 *
 * @module
 */

/** Marks an object as a formatting context (a Go struct): unknown fields are errors. */
export const STRICT: unique symbol = Symbol("strict");

/** Functions callable from a template. */
export type TemplateFuncs = Record<string, (...args: unknown[]) => unknown>;

/** A template that failed to parse or to run; the message reads as Go's. */
export class TemplateError extends Error {
  /** Creates a template error. */
  constructor(message: string) {
    super(message);
    this.name = "TemplateError";
  }
}

// ---------------------------------------------------------------------------------------------
// Lexing and parsing

type Node =
  | { kind: "text"; text: string }
  | { kind: "action"; pipe: Pipeline; pos: number }
  | { kind: "if"; branches: { pipe: Pipeline; body: Node[] }[]; otherwise: Node[] | null }
  | { kind: "range"; pipe: Pipeline; body: Node[]; otherwise: Node[] | null }
  | { kind: "with"; pipe: Pipeline; body: Node[]; otherwise: Node[] | null };

interface Pipeline {
  decl: string[];
  cmds: Operand[][];
  /** Source text, for error messages. */
  text: string;
}

type Operand =
  | { kind: "field"; base: Operand | null; path: string[]; text: string }
  | { kind: "dot" }
  | { kind: "var"; name: string; path: string[] }
  | { kind: "literal"; value: unknown }
  | { kind: "func"; name: string }
  | { kind: "pipe"; pipe: Pipeline; path: string[] };

interface Token {
  kind: "text" | "action";
  text: string;
  /** Offset of the action's start, for `:line:col` in messages. */
  pos: number;
}

function lex(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  let trimNext = false;
  while (i < src.length) {
    const open = src.indexOf("{{", i);
    let text = open < 0 ? src.slice(i) : src.slice(i, open);
    if (trimNext) text = text.replace(/^[ \t\r\n]+/, "");
    trimNext = false;
    if (open < 0) {
      if (text) tokens.push({ kind: "text", text, pos: i });
      break;
    }
    let start = open + 2;
    if (
      src.startsWith("- ", start) || src.startsWith("-\t", start) || src.startsWith("-\n", start)
    ) {
      text = text.replace(/[ \t\r\n]+$/, "");
      start += 1;
    }
    if (text) tokens.push({ kind: "text", text, pos: i });
    // Find the closing braces, skipping quoted strings.
    let j = start;
    let close = -1;
    while (j < src.length) {
      const c = src[j];
      if (c === '"' || c === "`" || c === "'") {
        const q = c;
        j++;
        while (j < src.length && src[j] !== q) {
          if (src[j] === "\\" && q !== "`") j++;
          j++;
        }
        j++;
        continue;
      }
      if (src.startsWith("}}", j)) {
        close = j;
        break;
      }
      j++;
    }
    if (close < 0) throw new TemplateError(`template: ${where(src, open)}: unclosed action`);
    let body = src.slice(start, close);
    if (/[ \t\r\n]-$/.test(body)) {
      body = body.slice(0, -1);
      trimNext = true;
    }
    tokens.push({ kind: "action", text: body.trim(), pos: open });
    i = close + 2;
  }
  return tokens;
}

function where(src: string, pos: number): string {
  const before = src.slice(0, pos);
  const line = before.split("\n").length;
  const col = pos - before.lastIndexOf("\n");
  return `:${line}:${col}`;
}

/** A parsed template, ready to execute against any data. */
export class Template {
  readonly #nodes: Node[];
  readonly #src: string;
  readonly #funcs: TemplateFuncs;

  /** Parses `src`; throws {@link TemplateError} with Go's wording when it is malformed. */
  constructor(src: string, funcs: TemplateFuncs = {}) {
    this.#src = src;
    this.#funcs = { ...BUILTINS, ...funcs };
    const tokens = lex(src);
    let k = 0;
    const parseList = (ends: string[]): { nodes: Node[]; end: string } => {
      const nodes: Node[] = [];
      while (k < tokens.length) {
        const t = tokens[k++];
        if (t.kind === "text") {
          nodes.push({ kind: "text", text: t.text });
          continue;
        }
        const a = t.text;
        if (a.startsWith("/*")) continue;
        const word = /^[a-z]+/.exec(a)?.[0] ?? "";
        if (word === "end" || word === "else") {
          if (!ends.includes(word)) {
            throw new TemplateError(`template: ${where(src, t.pos)}: unexpected {{${word}}}`);
          }
          return { nodes, end: a };
        }
        if (word === "if" || word === "range" || word === "with") {
          const pipe = this.#parsePipeline(a.slice(word.length), t.pos);
          const first = parseList(["end", "else"]);
          if (word === "if") {
            const branches = [{ pipe, body: first.nodes }];
            let otherwise: Node[] | null = null;
            let end = first.end;
            while (end.startsWith("else")) {
              const rest = end.slice(4).trim();
              const next = parseList(["end", "else"]);
              if (rest.startsWith("if ") || rest.startsWith("if\t")) {
                branches.push({
                  pipe: this.#parsePipeline(rest.slice(2), t.pos),
                  body: next.nodes,
                });
              } else {
                otherwise = next.nodes;
              }
              end = next.end;
              if (otherwise !== null && end !== "end") {
                throw new TemplateError(
                  `template: ${where(src, t.pos)}: expected end; found {{${end}}}`,
                );
              }
            }
            nodes.push({ kind: "if", branches, otherwise });
          } else {
            let otherwise: Node[] | null = null;
            if (first.end.startsWith("else")) otherwise = parseList(["end"]).nodes;
            nodes.push({ kind: word, pipe, body: first.nodes, otherwise });
          }
          continue;
        }
        if (word === "define" || word === "template" || word === "block") {
          throw new TemplateError(`template: ${where(src, t.pos)}: {{${word}}} is not supported`);
        }
        nodes.push({ kind: "action", pipe: this.#parsePipeline(a, t.pos), pos: t.pos });
      }
      if (ends.length > 0) {
        throw new TemplateError(`template: ${where(src, src.length)}: unexpected EOF`);
      }
      return { nodes, end: "" };
    };
    this.#nodes = parseList([]).nodes;
  }

  #parsePipeline(text: string, pos: number): Pipeline {
    const toks = tokenizeAction(text, () => `template: ${where(this.#src, pos)}`);
    let p = 0;
    const fail = (msg: string): never => {
      throw new TemplateError(`template: ${where(this.#src, pos)}: ${msg}`);
    };
    const parsePipe = (inParens: boolean): Pipeline => {
      const decl: string[] = [];
      // `$x :=` or `$k, $v :=`
      const save = p;
      const vars: string[] = [];
      while (toks[p]?.startsWith("$")) {
        vars.push(toks[p++]);
        if (toks[p] === ",") p++;
        else break;
      }
      if (vars.length > 0 && (toks[p] === ":=" || toks[p] === "=")) {
        p++;
        decl.push(...vars);
      } else p = save;
      const cmds: Operand[][] = [];
      let cmd: Operand[] = [];
      while (p < toks.length) {
        const t = toks[p];
        if (t === ")") {
          if (!inParens) fail("unexpected right paren");
          break;
        }
        p++;
        if (t === "|") {
          if (cmd.length === 0) fail("missing command");
          cmds.push(cmd);
          cmd = [];
          continue;
        }
        cmd.push(parseOperand(t));
      }
      if (cmd.length === 0 && (cmds.length > 0 || decl.length > 0)) fail("missing command");
      if (cmd.length > 0) cmds.push(cmd);
      if (cmds.length === 0) fail("missing value for command");
      return { decl, cmds, text: text.trim() };
    };
    const parseOperand = (t: string): Operand => {
      if (t === "(") {
        const pipe = parsePipe(true);
        if (toks[p] !== ")") fail("unclosed left paren");
        p++;
        const path: string[] = [];
        while (toks[p]?.startsWith(".") && toks[p] !== ".") {
          path.push(...toks[p++].slice(1).split("."));
        }
        return { kind: "pipe", pipe, path };
      }
      if (t === ".") return { kind: "dot" };
      if (t.startsWith(".")) {
        return { kind: "field", base: null, path: t.slice(1).split("."), text: t };
      }
      if (t.startsWith("$")) {
        const [name, ...path] = t.split(".");
        return { kind: "var", name, path };
      }
      if (t.startsWith('"')) return { kind: "literal", value: JSON.parse(t) };
      if (t.startsWith("`")) return { kind: "literal", value: t.slice(1, -1) };
      if (t === "true" || t === "false") return { kind: "literal", value: t === "true" };
      if (t === "nil") return { kind: "literal", value: null };
      if (/^[+-]?(\d|\.\d)/.test(t)) {
        const n = Number(t);
        if (Number.isNaN(n)) fail(`bad number syntax: "${t}"`);
        return { kind: "literal", value: n };
      }
      if (/^[A-Za-z_]\w*$/.test(t)) {
        if (!(t in this.#funcs)) fail(`function "${t}" not defined`);
        return { kind: "func", name: t };
      }
      return fail(`unexpected "${t}" in command`);
    };
    const pipe = parsePipe(false);
    if (p < toks.length) fail(`unexpected "${toks[p]}" in operand`);
    return pipe;
  }

  /** Runs the template with `data` as dot; returns the text. */
  execute(data: unknown): string {
    const out: string[] = [];
    const scope = new Scope(null);
    scope.set("$", data);
    this.#run(this.#nodes, data, scope, out);
    return out.join("");
  }

  #run(nodes: Node[], dot: unknown, scope: Scope, out: string[]): void {
    for (const n of nodes) {
      switch (n.kind) {
        case "text":
          out.push(n.text);
          break;
        case "action": {
          const v = this.#evalPipe(n.pipe, dot, scope);
          if (n.pipe.decl.length === 0) out.push(printValue(v));
          break;
        }
        case "if": {
          const inner = new Scope(scope);
          const branch = n.branches.find((b) => truth(this.#evalPipe(b.pipe, dot, inner)));
          if (branch) this.#run(branch.body, dot, inner, out);
          else if (n.otherwise) this.#run(n.otherwise, dot, inner, out);
          break;
        }
        case "with": {
          const inner = new Scope(scope);
          const v = this.#evalPipe(n.pipe, dot, inner);
          if (truth(v)) this.#run(n.body, v, inner, out);
          else if (n.otherwise) this.#run(n.otherwise, dot, inner, out);
          break;
        }
        case "range": {
          const inner = new Scope(scope);
          const decl = n.pipe.decl;
          const v = this.#evalPipe({ ...n.pipe, decl: [] }, dot, inner);
          const entries = rangeEntries(v, n.pipe.text);
          if (entries.length === 0) {
            if (n.otherwise) this.#run(n.otherwise, dot, inner, out);
            break;
          }
          for (const [key, value] of entries) {
            const iter = new Scope(inner);
            if (decl.length === 1) iter.set(decl[0], value);
            if (decl.length === 2) {
              iter.set(decl[0], key);
              iter.set(decl[1], value);
            }
            this.#run(n.body, value, iter, out);
          }
          break;
        }
      }
    }
  }

  #evalPipe(pipe: Pipeline, dot: unknown, scope: Scope): unknown {
    let value: unknown = undefined;
    let hasPrev = false;
    for (const cmd of pipe.cmds) {
      value = this.#evalCmd(cmd, dot, scope, hasPrev ? [value] : [], pipe.text);
      hasPrev = true;
    }
    if (pipe.decl.length === 1) scope.declare(pipe.decl[0], value);
    return value;
  }

  #evalCmd(cmd: Operand[], dot: unknown, scope: Scope, piped: unknown[], text: string): unknown {
    const [head, ...rest] = cmd;
    const args = () => [...rest.map((o) => this.#evalOperand(o, dot, scope, [], text)), ...piped];
    if (head.kind === "func") {
      try {
        return this.#funcs[head.name](...args());
      } catch (err) {
        if (err instanceof TemplateError) throw err;
        throw new TemplateError(
          `template: :1: executing "" at <${head.name}>: error calling ${head.name}: ${
            (err as Error).message
          }`,
        );
      }
    }
    if (rest.length > 0 || piped.length > 0) {
      // A method called with arguments: `{{.Label "name"}}`.
      return this.#evalOperand(head, dot, scope, args(), text);
    }
    return this.#evalOperand(head, dot, scope, [], text);
  }

  #evalOperand(op: Operand, dot: unknown, scope: Scope, args: unknown[], text: string): unknown {
    switch (op.kind) {
      case "dot":
        return dot;
      case "literal":
        return op.value;
      case "func":
        return this.#funcs[op.name]();
      case "field":
        return fieldChain(dot, op.path, args, op.text);
      case "var": {
        if (!scope.has(op.name)) {
          throw new TemplateError(`template: :1: undefined variable: ${op.name}`);
        }
        return fieldChain(scope.get(op.name), op.path, args, op.name + "." + op.path.join("."));
      }
      case "pipe":
        return fieldChain(this.#evalPipe(op.pipe, dot, scope), op.path, args, text);
    }
  }
}

class Scope {
  readonly #vars = new Map<string, unknown>();
  readonly #parent: Scope | null;
  constructor(parent: Scope | null) {
    this.#parent = parent;
  }
  set(name: string, value: unknown) {
    this.#vars.set(name, value);
  }
  declare(name: string, value: unknown) {
    // `$x := v` declares in the current scope; `$x = v` would assign, treated alike here.
    this.#vars.set(name, value);
  }
  has(name: string): boolean {
    return this.#vars.has(name) || (this.#parent?.has(name) ?? false);
  }
  get(name: string): unknown {
    if (this.#vars.has(name)) return this.#vars.get(name);
    return this.#parent?.get(name);
  }
}

function tokenizeAction(text: string, at: () => string): string[] {
  const toks: string[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "(" || c === ")" || c === "|" || c === ",") {
      toks.push(c);
      i++;
      continue;
    }
    if (text.startsWith(":=", i)) {
      toks.push(":=");
      i += 2;
      continue;
    }
    if (c === '"' || c === "`") {
      let j = i + 1;
      while (j < text.length && text[j] !== c) {
        if (text[j] === "\\" && c === '"') j++;
        j++;
      }
      if (j >= text.length) throw new TemplateError(`${at()}: unterminated quoted string`);
      toks.push(text.slice(i, j + 1));
      i = j + 1;
      continue;
    }
    let j = i;
    while (j < text.length && !/[\s()|,]/.test(text[j]) && !text.startsWith(":=", j)) j++;
    if (text[j] === "=" && j === i) j++;
    toks.push(text.slice(i, j));
    i = j;
  }
  return toks;
}

// ---------------------------------------------------------------------------------------------
// Values

/** `<no value>`: what Go prints for a map key that is not there. */
const NO_VALUE: unique symbol = Symbol("no value");

function fieldChain(value: unknown, path: string[], args: unknown[], text: string): unknown {
  let v = value;
  for (let i = 0; i < path.length; i++) {
    const name = path[i];
    const last = i === path.length - 1;
    if (v === null || v === undefined || v === NO_VALUE) {
      throw new TemplateError(
        `template: :1: executing "" at <${text}>: nil pointer evaluating interface {}.${name}`,
      );
    }
    if (typeof v !== "object") {
      throw new TemplateError(
        `template: :1: executing "" at <${text}>: can't evaluate field ${name} in type ${
          goType(v)
        }`,
      );
    }
    const obj = v as Record<string | symbol, unknown>;
    if (!(name in obj)) {
      if (STRICT in obj) {
        throw new TemplateError(
          `template: :1: executing "" at <${text}>: can't evaluate field ${name} in type ${
            String(obj[STRICT])
          }`,
        );
      }
      v = NO_VALUE;
      continue;
    }
    const field = obj[name];
    if (typeof field === "function") {
      v = field.apply(obj, last ? args : []);
    } else {
      if (last && args.length > 0) {
        throw new TemplateError(
          `template: :1: executing "" at <${text}>: ${name} has arguments but cannot be invoked as function`,
        );
      }
      v = field;
    }
  }
  return v;
}

function goType(v: unknown): string {
  if (typeof v === "string") return "string";
  if (typeof v === "number") return Number.isInteger(v) ? "int" : "float64";
  if (typeof v === "boolean") return "bool";
  return "interface {}";
}

/** Go's template truth: false, 0, "", nil, empty lists and maps are false. */
export function truth(v: unknown): boolean {
  if (v === null || v === undefined || v === NO_VALUE) return false;
  if (typeof v === "boolean") return v;
  if (typeof v === "number") return v !== 0;
  if (typeof v === "string") return v.length > 0;
  if (Array.isArray(v)) return v.length > 0;
  if (typeof v === "object") {
    if (STRICT in (v as object)) return true;
    return Object.keys(v as object).length > 0;
  }
  return true;
}

function rangeEntries(v: unknown, text: string): [unknown, unknown][] {
  if (v === null || v === undefined || v === NO_VALUE) return [];
  if (Array.isArray(v)) return v.map((x, i) => [i, x]);
  if (typeof v === "number" && Number.isInteger(v)) {
    return Array.from({ length: Math.max(0, v) }, (_, i) => [i, i]);
  }
  if (typeof v === "object") {
    const obj = v as Record<string, unknown>;
    return Object.keys(obj).sort().map((k) => [k, obj[k]]);
  }
  throw new TemplateError(`template: :1: range can't iterate over ${printValue(v)} (${text})`);
}

/** Prints a value as Go's `fmt.Sprint` would. */
export function printValue(v: unknown): string {
  if (v === NO_VALUE) return "<no value>";
  if (v === null || v === undefined) return "<nil>";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return `[${v.map(printValue).join(" ")}]`;
  if (typeof v === "object") {
    const obj = v as Record<string, unknown>;
    if (STRICT in obj) return `&{${Object.keys(obj).map((k) => printValue(obj[k])).join(" ")}}`;
    return `map[${Object.keys(obj).sort().map((k) => `${k}:${printValue(obj[k])}`).join(" ")}]`;
  }
  return String(v);
}

/**
 * JSON as Go's encoder writes it for `{{json .}}`: formatting contexts become objects of their
 * fields in sorted order (Go's `MarshalJSON` of a context is a map); functions are left out.
 */
export function toGoJson(v: unknown): string {
  const text = JSON.stringify(jsonValue(v)) ?? "null";
  // A context marshals itself with Go's json.Marshal, which escapes HTML characters.
  if (v !== null && typeof v === "object" && STRICT in v) {
    return text.replaceAll("<", "\\u003c").replaceAll(">", "\\u003e").replaceAll("&", "\\u0026");
  }
  return text;
}

/**
 * Go encodes a map's keys sorted and a struct's fields in declared order. Parsed JSON does not
 * say which an object was: one with a key that does not start with an upper-case letter (Go
 * struct fields always do, Docker's JSON names nearly always) is taken for a map.
 */
function looksLikeMap(obj: Record<string, unknown>): boolean {
  return Object.keys(obj).some((k) => !/^[A-Z]/.test(k));
}

function jsonValue(v: unknown): unknown {
  if (v === NO_VALUE || v === undefined) return null;
  if (Array.isArray(v)) return v.map(jsonValue);
  if (v !== null && typeof v === "object") {
    const obj = v as Record<string, unknown>;
    const keys = STRICT in obj || looksLikeMap(obj) ? Object.keys(obj).sort() : Object.keys(obj);
    const out: Record<string, unknown> = {};
    for (const k of keys) {
      if (typeof obj[k] === "function") continue;
      out[k] = jsonValue(obj[k]);
    }
    return out;
  }
  return v;
}

function basicEq(a: unknown, b: unknown): boolean {
  if (a === NO_VALUE) a = undefined;
  if (b === NO_VALUE) b = undefined;
  return a === b || (a == null && b == null);
}

function compare(name: string, a: unknown, b: unknown): number {
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "string" && typeof b === "string") return a < b ? -1 : a > b ? 1 : 0;
  throw new Error(`incompatible types for comparison (${name})`);
}

/** Go's `printf`, for the verbs people use in formats (`%s %v %d %q %t %f %x` with widths). */
export function sprintf(format: string, ...args: unknown[]): string {
  let i = 0;
  return format.replace(
    /%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*))?([svdqtfgxXeEc%])/g,
    (_m, flags: string, width: string | undefined, prec: string | undefined, verb: string) => {
      if (verb === "%") return "%";
      if (width === "*") width = String(args[i++]);
      if (prec === "*") prec = String(args[i++]);
      if (i >= args.length) return `%!${verb}(MISSING)`;
      const a = args[i++];
      let s: string;
      switch (verb) {
        case "d":
          s = typeof a === "number" ? String(Math.trunc(a)) : `%!d(${printValue(a)})`;
          break;
        case "q":
          s = JSON.stringify(printValue(a));
          break;
        case "f":
        case "e":
        case "E":
        case "g":
          s = typeof a !== "number"
            ? `%!${verb}(${printValue(a)})`
            : verb === "f"
            ? a.toFixed(prec === undefined ? 6 : Number(prec))
            : verb === "g"
            ? String(a)
            : a.toExponential(prec === undefined ? 6 : Number(prec));
          break;
        case "x":
        case "X":
          s = typeof a === "number"
            ? a.toString(16)
            : [...new TextEncoder().encode(printValue(a))].map((b) =>
              b.toString(16).padStart(2, "0")
            ).join("");
          if (verb === "X") s = s.toUpperCase();
          break;
        case "c":
          s = typeof a === "number" ? String.fromCodePoint(a) : `%!c(${printValue(a)})`;
          break;
        default:
          s = printValue(a);
          if (prec !== undefined && (verb === "s" || verb === "v")) s = s.slice(0, Number(prec));
      }
      if (width !== undefined) {
        const w = Number(width);
        if (flags.includes("-")) s = s.padEnd(w);
        else if (flags.includes("0") && verb !== "s") s = s.padStart(w, "0");
        else s = s.padStart(w);
      }
      return s;
    },
  );
}

const BUILTINS: TemplateFuncs = {
  and: (...a) => {
    for (const x of a) if (!truth(x)) return x;
    return a[a.length - 1];
  },
  or: (...a) => {
    for (const x of a) if (truth(x)) return x;
    return a[a.length - 1];
  },
  not: (a) => !truth(a),
  len: (a) => {
    if (typeof a === "string") return new TextEncoder().encode(a).length;
    if (Array.isArray(a)) return a.length;
    if (a !== null && typeof a === "object") return Object.keys(a).length;
    throw new Error(`len of type ${goType(a)}`);
  },
  index: (x, ...keys) => {
    let v = x;
    for (const k of keys) {
      if (Array.isArray(v) && typeof k === "number") {
        if (k < 0 || k >= v.length) throw new Error(`index out of range: ${k}`);
        v = v[k];
      } else if (v !== null && typeof v === "object") {
        const obj = v as Record<string, unknown>;
        v = String(k) in obj ? obj[String(k)] : NO_VALUE;
      } else throw new Error(`can't index item of type ${goType(v)}`);
    }
    return v;
  },
  print: (...a) => a.map(printValue).join(""),
  println: (...a) => a.map(printValue).join(" ") + "\n",
  printf: (f, ...a) => sprintf(String(f), ...a),
  eq: (a, ...bs) => bs.some((b) => basicEq(a, b)),
  ne: (a, b) => !basicEq(a, b),
  lt: (a, b) => compare("lt", a, b) < 0,
  le: (a, b) => compare("le", a, b) <= 0,
  gt: (a, b) => compare("gt", a, b) > 0,
  ge: (a, b) => compare("ge", a, b) >= 0,
  urlquery: (...a) => encodeURIComponent(a.map(printValue).join("")),
  // Docker's additions (docker/cli templates/templates.go).
  json: (v) => toGoJson(v),
  split: (s, sep) => String(s).split(String(sep)),
  join: (elems, sep) => {
    if (elems === null || elems === undefined || elems === NO_VALUE) return "";
    if (Array.isArray(elems)) return elems.map(printValue).join(String(sep));
    if (typeof elems === "object") {
      const obj = elems as Record<string, unknown>;
      return Object.keys(obj).map((k) => printValue(obj[k])).sort().join(String(sep));
    }
    throw new Error(`expected slice, got ${goType(elems)}`);
  },
  title: (s) =>
    String(s).replace(/(^|[^\p{L}\p{N}_'])(\p{L})/gu, (_m, a, b) => a + b.toUpperCase()),
  lower: (s) => String(s).toLowerCase(),
  upper: (s) => String(s).toUpperCase(),
  pad: (s, prefix, suffix) => {
    const str = printValue(s);
    if (str === "") return str;
    return " ".repeat(Number(prefix)) + str + " ".repeat(Number(suffix));
  },
  truncate: (s, n) => {
    const str = printValue(s);
    return str.length < Number(n) ? str : str.slice(0, Number(n));
  },
};

/**
 * The functions Docker uses when it renders a table's header row: they return their first
 * argument untouched, so `{{.Name | upper}}` heads its column with `NAME`.
 */
export const HEADER_FUNCS: TemplateFuncs = {
  json: (v) => v,
  split: (v) => v,
  join: (v) => v,
  title: (v) => v,
  lower: (v) => v,
  upper: (v) => v,
  truncate: (v) => v,
};
