/**
 * The condition language of `shoal debug bisect --until 'EXPR'`: a small expression over the
 * cluster state, compiled to a `(state) => boolean` for `bisect` (`actors/history.ts`).
 *
 * ## Syntax
 *
 * ```text
 * running(web) < 3
 * tasks(web, state=failed) >= 1
 * replicas(web) == 5 and not service(web).update == paused
 * node(worker-1).status == down or nodes(state=ready) < 3
 * (services() > 2 or index() >= 1000) and task(web.1).state >= running
 * ```
 *
 * An expression is comparisons joined with `and`, `or` and `not` (also `&&`, `||`, `!`), grouped
 * with parentheses; `not` binds tightest, then `and`, then `or`. A comparison is
 * `VALUE OP VALUE` with `OP` one of `==` (or `=`), `!=`, `<`, `<=`, `>`, `>=`. A yes/no value
 * (`service(web).exists`) may stand alone.
 *
 * Counts (numbers):
 *
 * | function | value |
 * | --- | --- |
 * | `running(SERVICE)` | tasks of the service whose observed state is `running` |
 * | `tasks([SERVICE], state=S, desired=S, node=NODE)` | tasks matching every filter given (all tasks when none) |
 * | `replicas(SERVICE)` | replicas asked for: `mode.replicas`, a job's total completions, or for a global service its tasks meant to run |
 * | `services()` | services |
 * | `nodes(state=S, role=R, availability=A)` | nodes matching every filter given |
 * | `index()` | the log index of the state being tested |
 *
 * Fields of one object, `KIND(REF).FIELD`:
 *
 * | object | fields |
 * | --- | --- |
 * | `node(NAME or ID)` | `status` (ready, down, unknown, disconnected), `availability`, `role`, `name`, `hostname`, `addr`, `exists` |
 * | `service(NAME or ID)` | `replicas`, `running`, `tasks` (numbers), `mode`, `update` (update status, or `none`), `name`, `exists` |
 * | `task(ID or SERVICE.SLOT)` | `state`, `desired` (task states), `node` (node name, or `none`), `slot`, `exists` |
 *
 * A missing object has `exists == false`, text fields `none`, numbers 0 and a task state below
 * every state; counts over a missing service are 0.
 *
 * Values: numbers (`3`, `0.5`); words (`web`, `worker-1`, `web.1`, a task state such as
 * `running`); or quoted text (`'my service'`, `"and"`) for anything else, including names that
 * are keywords. Task states compare in SwarmKit's order (new < pending < assigned < accepted <
 * preparing < ready < starting < running < complete < shutdown < failed < rejected < remove <
 * orphaned), so `task(web.1).state >= running` means "got as far as running". Text compares only
 * with `==` and `!=`.
 *
 * Errors name the column and what was expected there:
 * `Bad condition at column 13: expected "," or ")", found "<"`.
 *
 * @module
 */
import { TaskState, type TaskStateName } from "../events/schema.ts";
import {
  type ClusterState,
  nodeName,
  type NodeRecord,
  type ServiceRecord,
  type TaskRecord,
} from "./state.ts";

/** A condition that does not parse or does not make sense, with where and what was expected. */
export class BisectExprError extends SyntaxError {
  /** 0-based offset in the source. */
  readonly position: number;
  /** What would have been valid there, in words. */
  readonly expected: string;
  /** What was there instead. */
  readonly found: string;
  /** The source with a caret under the position (two lines). */
  readonly pointer: string;

  /** An error at `position` of `source`. */
  constructor(source: string, position: number, expected: string, found: string) {
    super(`Bad condition at column ${position + 1}: expected ${expected}, found ${found}`);
    this.name = "BisectExprError";
    this.position = position;
    this.expected = expected;
    this.found = found;
    this.pointer = `${source}\n${" ".repeat(position)}^`;
  }
}

/** A compiled condition. */
export type StateCondition = (state: ClusterState) => boolean;

// ---------------------------------------------------------------------------------------------
// Tokens

type TokenKind = "word" | "number" | "string" | "punct" | "end";

interface Token {
  kind: TokenKind;
  text: string;
  /** Word or string value; for punctuation, the symbol. */
  value: string;
  pos: number;
}

const PUNCT = ["==", "!=", "<=", ">=", "&&", "||", "(", ")", ",", ".", "=", "<", ">", "!"];
const WORD = /[A-Za-z0-9_][A-Za-z0-9_.-]*/y;
const NUMBER = /^\d+(\.\d+)?$/;

function tokenize(src: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "'" || c === '"') {
      let j = i + 1;
      let value = "";
      while (j < src.length && src[j] !== c) {
        if (src[j] === "\\" && j + 1 < src.length) j++;
        value += src[j++];
      }
      if (j >= src.length) {
        throw new BisectExprError(src, i, `a closing ${c}`, "the end of the condition");
      }
      tokens.push({ kind: "string", text: src.slice(i, j + 1), value, pos: i });
      i = j + 1;
      continue;
    }
    WORD.lastIndex = i;
    const m = WORD.exec(src);
    if (m !== null) {
      const text = m[0];
      tokens.push({ kind: NUMBER.test(text) ? "number" : "word", text, value: text, pos: i });
      i += text.length;
      continue;
    }
    const p = PUNCT.find((p) => src.startsWith(p, i));
    if (p === undefined) {
      throw new BisectExprError(src, i, "a value, an operator or a parenthesis", quote(c));
    }
    tokens.push({ kind: "punct", text: p, value: p, pos: i });
    i += p.length;
  }
  tokens.push({ kind: "end", text: "", value: "", pos: src.length });
  return tokens;
}

function quote(s: string): string {
  return `"${s}"`;
}

function describeToken(t: Token): string {
  return t.kind === "end" ? "the end of the condition" : quote(t.text);
}

// ---------------------------------------------------------------------------------------------
// Typed values

type ValueType = "number" | "text" | "state" | "bool" | "word";

interface Value {
  type: ValueType;
  pos: number;
  /** The literal's text, for literals. */
  literal?: string;
  get(state: ClusterState): number | string | boolean;
}

const TASK_STATES = Object.keys(TaskState) as TaskStateName[];
const NODE_STATES = ["unknown", "down", "ready", "disconnected"];
const ROLES = ["worker", "manager"];
const AVAILABILITIES = ["active", "pause", "drain"];

function oneOf(items: readonly string[]): string {
  if (items.length === 1) return quote(items[0]);
  return `${items.slice(0, -1).map(quote).join(", ")} or ${quote(items[items.length - 1])}`;
}

// ---------------------------------------------------------------------------------------------
// Lookups (by name or id, on the state being tested)

function findService(state: ClusterState, ref: string): ServiceRecord | undefined {
  return state.serviceByName(ref) ?? state.services.get(ref);
}

function findNode(state: ClusterState, ref: string): NodeRecord | undefined {
  const direct = state.nodes.get(ref);
  if (direct !== undefined) return direct;
  for (const id of state.nodesByName.get(ref)) return state.nodes.get(id);
  return undefined;
}

function findTask(state: ClusterState, ref: string): TaskRecord | undefined {
  const direct = state.tasks.get(ref);
  if (direct !== undefined) return direct;
  const m = /^(.+)\.(\d+)$/.exec(ref);
  if (m === null) return undefined;
  const svc = findService(state, m[1]);
  if (svc === undefined) return undefined;
  let newest: TaskRecord | undefined;
  const slot = Number(m[2]);
  for (const t of state.tasksOf(svc.id)) {
    if (t.slot === slot && (newest === undefined || t.createdAt >= newest.createdAt)) newest = t;
  }
  return newest;
}

function countTasks(
  state: ClusterState,
  serviceRef: string | undefined,
  filter: { state?: number; desired?: number; node?: string },
): number {
  let tasks: Iterable<TaskRecord>;
  if (serviceRef !== undefined) {
    const svc = findService(state, serviceRef);
    if (svc === undefined) return 0;
    tasks = state.tasksOf(svc.id);
  } else if (filter.state !== undefined) {
    tasks = [...state.tasksByState.get(filter.state)].map((id) => state.tasks.get(id)!);
  } else {
    tasks = state.tasks.values();
  }
  let nodeId: string | undefined;
  if (filter.node !== undefined) {
    nodeId = findNode(state, filter.node)?.id;
    if (nodeId === undefined) return 0;
  }
  let n = 0;
  for (const t of tasks) {
    if (filter.state !== undefined && t.status.state !== filter.state) continue;
    if (filter.desired !== undefined && t.desiredState !== filter.desired) continue;
    if (nodeId !== undefined && t.nodeId !== nodeId) continue;
    n++;
  }
  return n;
}

function replicasOf(state: ClusterState, svc: ServiceRecord | undefined): number {
  if (svc === undefined) return 0;
  const mode = svc.spec.mode;
  if (mode.kind === "replicated") return mode.replicas;
  if (mode.kind === "replicated-job") return mode.totalCompletions;
  let n = 0;
  for (const t of state.tasksOf(svc.id)) if (t.desiredState <= TaskState.running) n++;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Parser

interface Arg {
  key?: string;
  keyPos: number;
  value: string;
  pos: number;
}

const FUNCTIONS = [
  "running",
  "tasks",
  "replicas",
  "services",
  "nodes",
  "index",
  "node",
  "service",
  "task",
];

const FIELDS: Record<"node" | "service" | "task", Record<string, ValueType>> = {
  node: {
    status: "text",
    availability: "text",
    role: "text",
    name: "text",
    hostname: "text",
    addr: "text",
    exists: "bool",
  },
  service: {
    replicas: "number",
    running: "number",
    tasks: "number",
    mode: "text",
    update: "text",
    name: "text",
    exists: "bool",
  },
  task: { state: "state", desired: "state", node: "text", slot: "number", exists: "bool" },
};

const KEYWORDS = new Set(["and", "or", "not"]);

class Parser {
  #tokens: Token[];
  #i = 0;

  constructor(readonly src: string) {
    this.#tokens = tokenize(src);
  }

  get peek(): Token {
    return this.#tokens[this.#i];
  }

  fail(expected: string, token: Token = this.peek): never {
    throw new BisectExprError(this.src, token.pos, expected, describeToken(token));
  }

  /** Whether the next token is the keyword or symbol (keywords in any case). */
  at(...symbols: string[]): boolean {
    const t = this.peek;
    if (t.kind === "punct") return symbols.includes(t.value);
    return t.kind === "word" && symbols.includes(t.value.toLowerCase());
  }

  expect(symbol: string, what = quote(symbol)): Token {
    if (!this.at(symbol)) this.fail(what);
    return this.#tokens[this.#i++];
  }

  atEnd(): boolean {
    return this.peek.kind === "end";
  }

  next(): Token {
    return this.#tokens[this.#i++];
  }

  parse(): StateCondition {
    if (this.atEnd()) this.fail("a condition such as running(web) < 3");
    const cond = this.or();
    if (!this.atEnd()) this.fail('"and", "or" or the end of the condition');
    return cond;
  }

  or(): StateCondition {
    let left = this.and();
    while (this.at("or", "||")) {
      this.next();
      const l = left, r = this.and();
      left = (s) => l(s) || r(s);
    }
    return left;
  }

  and(): StateCondition {
    let left = this.not();
    while (this.at("and", "&&")) {
      this.next();
      const l = left, r = this.not();
      left = (s) => l(s) && r(s);
    }
    return left;
  }

  not(): StateCondition {
    if (this.at("not", "!")) {
      this.next();
      const inner = this.not();
      return (s) => !inner(s);
    }
    if (this.at("(")) {
      this.next();
      const inner = this.or();
      this.expect(")", '")", "and" or "or"');
      return inner;
    }
    return this.comparison();
  }

  comparison(): StateCondition {
    const left = this.value();
    const opToken = this.peek;
    const ops = ["==", "=", "!=", "<=", ">=", "<", ">"];
    if (opToken.kind !== "punct" || !ops.includes(opToken.value)) {
      if (left.type === "bool" && left.literal === undefined) {
        return (s) => left.get(s) === true;
      }
      this.fail("a comparison (==, !=, <, <=, > or >=)");
    }
    this.next();
    const right = this.value();
    return compare(this, opToken, left, right);
  }

  value(): Value {
    const t = this.peek;
    if (t.kind === "number") {
      this.next();
      const n = Number(t.value);
      return { type: "number", pos: t.pos, literal: t.text, get: () => n };
    }
    if (t.kind === "string") {
      this.next();
      return { type: "word", pos: t.pos, literal: t.value, get: () => t.value };
    }
    if (t.kind === "word" && !KEYWORDS.has(t.value.toLowerCase())) {
      this.next();
      if (this.at("(")) return this.call(t);
      return { type: "word", pos: t.pos, literal: t.value, get: () => t.value };
    }
    return this.fail(
      "a value: a count such as running(web), a field such as node(n1).status, or a number",
    );
  }

  /** The arguments of a call, and the closing parenthesis. */
  args(): { args: Arg[]; close: Token } {
    this.expect("(");
    const args: Arg[] = [];
    if (this.at(")")) return { args, close: this.next() };
    for (;;) {
      const t = this.peek;
      if (t.kind !== "word" && t.kind !== "string" && t.kind !== "number") {
        this.fail("a name, an id or key=value");
      }
      this.next();
      if (t.kind === "word" && this.at("=")) {
        this.next();
        const v = this.peek;
        if (v.kind !== "word" && v.kind !== "string" && v.kind !== "number") {
          this.fail(`a value for ${t.value}=`);
        }
        this.next();
        args.push({ key: t.value, keyPos: t.pos, value: v.value, pos: v.pos });
      } else {
        args.push({ keyPos: t.pos, value: t.value, pos: t.pos });
      }
      if (this.at(")")) return { args, close: this.next() };
      this.expect(",", '"," or ")"');
    }
  }

  call(name: Token): Value {
    const fn = name.value;
    if (!FUNCTIONS.includes(fn)) this.fail(`a function (${oneOf(FUNCTIONS)})`, name);
    const { args, close } = this.args();
    const pos = name.pos;
    const positional = args.filter((a) => a.key === undefined);
    const keyed = new Map<string, Arg>();
    const checkArgs = (min: number, max: number, keys: readonly string[], what: string) => {
      if (positional.length < min) {
        const first = what.split(",")[0];
        throw new BisectExprError(
          this.src,
          close.pos,
          `${first}, as in ${fn}(${what})`,
          describeToken(close),
        );
      }
      if (positional.length > max) {
        const extra = positional[max];
        throw new BisectExprError(
          this.src,
          extra.pos,
          max === 0
            ? `no plain argument in ${fn}(${what})`
            : `at most ${max} plain argument in ${fn}(${what})`,
          quote(extra.value),
        );
      }
      for (const a of args) {
        if (a.key === undefined) continue;
        if (!keys.includes(a.key)) {
          throw new BisectExprError(
            this.src,
            a.keyPos,
            keys.length === 0 ? `no key=value in ${fn}(${what})` : `a key of ${fn}: ${oneOf(keys)}`,
            quote(a.key),
          );
        }
        keyed.set(a.key, a);
      }
    };
    const checkValue = (arg: Arg | undefined, allowed: readonly string[], what: string) => {
      if (arg !== undefined && !allowed.includes(arg.value)) {
        throw new BisectExprError(
          this.src,
          arg.pos,
          `${what} (${oneOf(allowed)})`,
          quote(arg.value),
        );
      }
      return arg?.value;
    };
    const stateArg = (key: string) => {
      const v = checkValue(keyed.get(key), TASK_STATES, "a task state");
      return v === undefined ? undefined : TaskState[v as TaskStateName];
    };

    if (fn === "node" || fn === "service" || fn === "task") {
      checkArgs(1, 1, [], fn === "task" ? "ID or SERVICE.SLOT" : "NAME or ID");
      const ref = positional[0].value;
      const fields = FIELDS[fn];
      const dot = this.expect(".", `"." and a field of ${fn} (${oneOf(Object.keys(fields))})`);
      const f = this.peek;
      if (f.kind !== "word" || !(f.value in fields)) {
        this.fail(`a field of ${fn} (${oneOf(Object.keys(fields))})`, f.kind === "end" ? dot : f);
      }
      this.next();
      return { type: fields[f.value], pos, get: objectField(fn, ref, f.value) };
    }
    if (this.at(".")) this.fail(`a comparison: ${fn}(...) is a number and has no fields`);
    switch (fn) {
      case "running": {
        checkArgs(1, 1, [], "SERVICE");
        const ref = positional[0].value;
        return {
          type: "number",
          pos,
          get: (s) => countTasks(s, ref, { state: TaskState.running }),
        };
      }
      case "tasks": {
        checkArgs(
          0,
          1,
          ["service", "state", "desired", "node"],
          "[SERVICE], state=, desired=, node=",
        );
        const ref = positional[0]?.value ?? keyed.get("service")?.value;
        const filter = {
          state: stateArg("state"),
          desired: stateArg("desired"),
          node: keyed.get("node")?.value,
        };
        return { type: "number", pos, get: (s) => countTasks(s, ref, filter) };
      }
      case "replicas": {
        checkArgs(1, 1, [], "SERVICE");
        const ref = positional[0].value;
        return { type: "number", pos, get: (s) => replicasOf(s, findService(s, ref)) };
      }
      case "services":
        checkArgs(0, 0, [], "");
        return { type: "number", pos, get: (s) => s.services.size };
      case "index":
        checkArgs(0, 0, [], "");
        return { type: "number", pos, get: (s) => s.index };
      default: {
        checkArgs(0, 0, ["state", "role", "availability"], "state=, role=, availability=");
        const st = checkValue(keyed.get("state"), NODE_STATES, "a node state");
        const role = checkValue(keyed.get("role"), ROLES, "a role");
        const av = checkValue(keyed.get("availability"), AVAILABILITIES, "an availability");
        return {
          type: "number",
          pos,
          get: (s) => {
            if (st === undefined && role === undefined && av === undefined) return s.nodes.size;
            let n = 0;
            for (const node of s.nodes.values()) {
              if (st !== undefined && node.status.state !== st) continue;
              if (role !== undefined && node.role !== role) continue;
              if (av !== undefined && node.spec.availability !== av) continue;
              n++;
            }
            return n;
          },
        };
      }
    }
  }
}

function objectField(
  kind: "node" | "service" | "task",
  ref: string,
  field: string,
): (state: ClusterState) => number | string | boolean {
  if (kind === "node") {
    return (s) => {
      const n = findNode(s, ref);
      if (field === "exists") return n !== undefined;
      if (n === undefined) return "none";
      switch (field) {
        case "status":
          return n.status.state;
        case "availability":
          return n.spec.availability;
        case "role":
          return n.role;
        case "name":
          return nodeName(n);
        case "hostname":
          return n.description.hostname;
        default:
          return n.status.addr;
      }
    };
  }
  if (kind === "service") {
    return (s) => {
      const svc = findService(s, ref);
      if (field === "exists") return svc !== undefined;
      switch (field) {
        case "replicas":
          return replicasOf(s, svc);
        case "running":
          return countTasks(s, ref, { state: TaskState.running });
        case "tasks":
          return countTasks(s, ref, {});
        case "mode":
          return svc?.spec.mode.kind ?? "none";
        case "update":
          return svc?.updateStatus?.state ?? "none";
        default:
          return svc?.spec.name ?? "none";
      }
    };
  }
  return (s) => {
    const t = findTask(s, ref);
    if (field === "exists") return t !== undefined;
    if (t === undefined) return field === "slot" ? 0 : field === "node" ? "none" : -1;
    switch (field) {
      case "state":
        return t.status.state;
      case "desired":
        return t.desiredState;
      case "slot":
        return t.slot;
      default: {
        const node = t.nodeId === "" ? undefined : s.nodes.get(t.nodeId);
        return node === undefined ? (t.nodeId || "none") : nodeName(node);
      }
    }
  };
}

const TYPE_NAMES: Record<ValueType, string> = {
  number: "a number",
  text: "text",
  state: "a task state",
  bool: "true or false",
  word: "a word",
};

/** Type-checks a comparison and builds it. */
function compare(p: Parser, opToken: Token, left: Value, right: Value): StateCondition {
  const op = opToken.value === "=" ? "==" : opToken.value;
  const ordering = op !== "==" && op !== "!=";
  // Resolve literal words against the other side's type.
  const settle = (lit: Value, other: Value): Value => {
    if (lit.type !== "word") return lit;
    const text = lit.literal!;
    switch (other.type) {
      case "state": {
        if (!(text in TaskState)) {
          throw new BisectExprError(
            p.src,
            lit.pos,
            `a task state (${oneOf(TASK_STATES)})`,
            quote(text),
          );
        }
        const v = TaskState[text as TaskStateName];
        return { ...lit, type: "state", get: () => v };
      }
      case "bool": {
        if (text !== "true" && text !== "false") {
          throw new BisectExprError(p.src, lit.pos, '"true" or "false"', quote(text));
        }
        const v = text === "true";
        return { ...lit, type: "bool", get: () => v };
      }
      case "number":
        throw new BisectExprError(p.src, lit.pos, "a number", quote(text));
      default:
        return { ...lit, type: "text" };
    }
  };
  if (left.type === "word" && right.type === "word") {
    throw new BisectExprError(
      p.src,
      left.pos,
      "a count such as running(web) or a field such as node(n1).status",
      quote(left.literal!),
    );
  }
  const l = settle(left, right);
  const r = settle(right, left);
  if (l.type !== r.type) {
    throw new BisectExprError(
      p.src,
      r.pos,
      `${TYPE_NAMES[l.type]} to compare with`,
      TYPE_NAMES[r.type],
    );
  }
  if (ordering && (l.type === "text" || l.type === "bool")) {
    throw new BisectExprError(
      p.src,
      opToken.pos,
      `"==" or "!=" (${TYPE_NAMES[l.type]} has no order)`,
      quote(opToken.text),
    );
  }
  const a = l.get, b = r.get;
  switch (op) {
    case "==":
      return (s) => a(s) === b(s);
    case "!=":
      return (s) => a(s) !== b(s);
    case "<":
      return (s) => (a(s) as number) < (b(s) as number);
    case "<=":
      return (s) => (a(s) as number) <= (b(s) as number);
    case ">":
      return (s) => (a(s) as number) > (b(s) as number);
    default:
      return (s) => (a(s) as number) >= (b(s) as number);
  }
}

/**
 * Compiles a condition (syntax in the module documentation) to a predicate on the state. Throws
 * {@linkcode BisectExprError} naming the column and what was expected.
 */
export function compileBisectExpr(source: string): StateCondition {
  return new Parser(source).parse();
}
