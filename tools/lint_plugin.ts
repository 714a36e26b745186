/**
 * Shoal's `deno lint` plugin: enforces DESIGN.md contract 1 ("Determinism") mechanically.
 *
 * Rule `shoal/deterministic` forbids clocks, randomness, timers and I/O (`Deno.*`, `fetch`,
 * `process`, I/O `node:` modules) in the pure files listed in {@link PURE_FILES}. Time, ids and
 * randomness must enter pure code as inputs; timers are logged facts or `tick()` calls.
 *
 * The only escape hatch is the standard one, with a reason:
 *
 * ```ts
 * // deno-lint-ignore shoal/deterministic -- <why this is still deterministic>
 * ```
 *
 * Enabled in deno.json: `"lint": { "plugins": ["./tools/lint_plugin.ts"] }`.
 * Tested in tools/lint_plugin_test.ts with `Deno.lint.runPlugin`.
 *
 * Limits (no scope analysis is available to lint plugins): the rule matches global names, so a
 * local binding that shadows one (a parameter called `fetch`, say) is reported where it is used;
 * do not shadow these names in pure code. Type-only uses (`Deno.Conn` in a type) are allowed.
 *
 * @module
 */

/**
 * Which files are pure, as paths relative to the project root (forward slashes).
 *
 * Keep this list in step with DESIGN.md "Layout" and contract 1. A file is pure when it matches
 * one `include` pattern and no `exclude` pattern. Test files are never pure.
 */
export const PURE_FILES: {
  readonly description: string;
  readonly include: readonly RegExp[];
  readonly exclude: readonly RegExp[];
} = {
  description: "events/raft core, actors/state.ts, actors/entities/, projection decide functions",
  include: [
    // Entity actors: apply(event) + handle(command).
    /^actors\/entities\//,
    // The fold, snapshots, and time travel (replay must give the same state).
    /^actors\/(state|snapshot|history)\.ts$/,
    // Projections' decision functions and views: actors/projections/**/{decide,*_decide,view}.ts
    /^actors\/projections\/(.+\/)?(decide|[^/]*_decide|view)\.ts$/,
    // The Raft core (everything in events/raft/ except what `exclude` names).
    /^events\/raft\//,
  ],
  exclude: [
    // The Raft driver owns the clock, SQLite storage and the transport (file or folder).
    /^events\/raft\/(driver|sqlite_storage|transport)(\.ts$|\/)/,
    // Tests may use clocks and I/O.
    /(_test|\.test)\.[cm]?[jt]sx?$/,
  ],
};

/** The project root, derived from this file's place (tools/lint_plugin.ts). */
const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

/** `filename` relative to the project root, or `undefined` when it is outside the root. */
function projectPath(filename: string): string | undefined {
  let path = filename.replaceAll("\\", "/");
  if (path.startsWith("file://")) path = decodeURIComponent(new URL(path).pathname);
  if (!path.startsWith("/") && !/^[A-Za-z]:\//.test(path)) return path.replace(/^\.\//, "");
  return path.startsWith(ROOT) ? path.slice(ROOT.length) : undefined;
}

/** Whether the rule applies to `filename` (absolute, `file://` URL, or project-relative). */
export function isPure(filename: string): boolean {
  const matches = (path: string) =>
    PURE_FILES.include.some((re) => re.test(path)) &&
    !PURE_FILES.exclude.some((re) => re.test(path));
  const rel = projectPath(filename);
  if (rel !== undefined) return matches(rel);
  // Outside this checkout (e.g. linted through another root): try every path suffix.
  const parts = filename.replaceAll("\\", "/").split("/");
  return parts.some((_, i) => i > 0 && matches(parts.slice(i).join("/")));
}

const WHY = {
  clock: "time must enter as an input",
  random: "ids and randomness must enter as inputs (a seeded random source)",
  timer: "timers are logged facts or tick() inputs, owned by the driver",
  io: "I/O belongs to the driver and runtime, never to pure code",
} as const;
type Why = keyof typeof WHY;

/** Forbidden members of otherwise allowed globals: `Date.now`, `Math.random`, ... */
const FORBIDDEN_MEMBERS: Record<string, Record<string, Why>> = {
  Date: { now: "clock" },
  Math: { random: "random" },
  crypto: { randomUUID: "random", getRandomValues: "random" },
  Temporal: { Now: "clock" },
};

/** Globals forbidden outright, whatever is done with them. */
const FORBIDDEN_GLOBALS: Record<string, Why> = {
  Deno: "io",
  fetch: "io",
  process: "io",
  performance: "clock",
  setTimeout: "timer",
  setInterval: "timer",
  queueMicrotask: "timer",
};

/** `node:` modules that are clocks, timers or I/O. */
const FORBIDDEN_NODE_MODULES: Record<string, Why> = {
  "node:timers": "timer",
  "node:timers/promises": "timer",
  "node:perf_hooks": "clock",
  "node:process": "io",
  "node:fs": "io",
  "node:fs/promises": "io",
  "node:child_process": "io",
  "node:net": "io",
  "node:tls": "io",
  "node:http": "io",
  "node:https": "io",
  "node:http2": "io",
  "node:dgram": "io",
  "node:dns": "io",
  "node:os": "io",
  "node:readline": "io",
  "node:worker_threads": "io",
  "node:cluster": "io",
};
/** From node:crypto, hashing is fine but randomness is not. */
const FORBIDDEN_NODE_CRYPTO = /^(random|getRandomValues$|webcrypto$)/;

/** Objects through which globals are reached: `globalThis.setTimeout(...)`. */
const GLOBAL_OBJECTS = new Set(["globalThis", "self", "window"]);

/** TS nodes that wrap a runtime expression (everything else starting with "TS" is type-level). */
const TS_EXPRESSIONS = new Set([
  "TSAsExpression",
  "TSNonNullExpression",
  "TSSatisfiesExpression",
  "TSTypeAssertion",
  "TSInstantiationExpression",
  "TSExportAssignment",
]);

type Node = Deno.lint.Node;
/** Every node but the Program has a parent. */
type Child = Extract<Node, { parent: Node }>;

function message(label: string, why: Why): string {
  return `${label} is not allowed in pure code (${PURE_FILES.description}): ${
    WHY[why]
  } (DESIGN.md contract 1)`;
}

/** Whether an identifier is a runtime read of a variable (not a key, binding or type). */
function isReference(node: Deno.lint.Identifier): boolean {
  const p = node.parent;
  if (p.type.startsWith("TS")) return TS_EXPRESSIONS.has(p.type);
  switch (p.type) {
    case "MemberExpression":
      return p.object === node || p.computed;
    case "Property":
      if (p.key === node && !p.computed) return false;
      // A value inside a destructuring pattern is a binding.
      return p.value !== node || p.parent.type !== "ObjectPattern";
    case "MethodDefinition":
    case "PropertyDefinition":
      return p.key !== node || p.computed;
    case "VariableDeclarator":
      return p.id !== node;
    case "AssignmentPattern":
      return p.left !== node;
    case "FunctionDeclaration":
    case "FunctionExpression":
    case "ArrowFunctionExpression":
    case "ClassDeclaration":
    case "ClassExpression":
    case "CatchClause":
    case "ArrayPattern":
    case "RestElement":
      // Names and parameters; `class extends X` and arrow bodies are references.
      return ("superClass" in p && p.superClass === node) ||
        ("body" in p && p.body === node);
    case "ImportSpecifier":
    case "ImportDefaultSpecifier":
    case "ImportNamespaceSpecifier":
    case "ExportSpecifier":
    case "LabeledStatement":
    case "BreakStatement":
    case "ContinueStatement":
      return false;
    default:
      return true;
  }
}

/** The name of a non-computed or string-literal member: `a.b`, `a["b"]`. */
function memberName(member: Deno.lint.MemberExpression): string | undefined {
  const prop = member.property;
  if (!member.computed && prop.type === "Identifier") return prop.name;
  if (member.computed && prop.type === "Literal" && typeof prop.value === "string") {
    return prop.value;
  }
  return undefined;
}

/** Skip TS wrappers and parentheses upwards: `(Deno as any).env` is a use of `Deno`. */
function outerExpression(node: Child): Child {
  let current = node;
  while (
    TS_EXPRESSIONS.has(current.parent.type) && current.parent.type !== "TSExportAssignment"
  ) {
    current = current.parent as Child;
  }
  return current;
}

function isCalled(node: Child): boolean {
  const p = node.parent;
  return (p.type === "CallExpression" || p.type === "NewExpression") && p.callee === node;
}

const deterministic: Deno.lint.Rule = {
  create(context) {
    if (!isPure(context.filename)) return {};

    const report = (node: Node, label: string, why: Why) =>
      context.report({ node, message: message(label, why) });

    /** Check a use of the global `name`, reached through `ref` (an identifier or `globalThis.x`). */
    const checkGlobal = (name: string, ref: Child) => {
      const use = outerExpression(ref);
      const parent = use.parent;
      const member = parent.type === "MemberExpression" && parent.object === use
        ? parent
        : undefined;
      const prop = member && memberName(member);

      const outright = FORBIDDEN_GLOBALS[name];
      if (outright) {
        if (member) {
          const label = `${name}.${prop ?? "[...]"}${isCalled(member) ? "()" : ""}`;
          report(member, label, outright);
        } else {
          report(use, isCalled(use) ? `${name}()` : name, outright);
        }
        return;
      }

      if (name === "Date" && isCalled(use)) {
        const call = parent as Deno.lint.CallExpression | Deno.lint.NewExpression;
        if (call.type === "CallExpression") report(call, "Date()", "clock");
        else if (call.arguments.length === 0) report(call, "new Date()", "clock");
        return;
      }

      const members = FORBIDDEN_MEMBERS[name];
      if (!members) return;
      if (member && prop !== undefined && Object.hasOwn(members, prop)) {
        report(member, `${name}.${prop}${isCalled(member) ? "()" : ""}`, members[prop]);
      }
      // `const { random } = Math`
      if (parent.type === "VariableDeclarator" && parent.init === use) {
        if (parent.id.type !== "ObjectPattern") return;
        for (const property of parent.id.properties) {
          if (property.type !== "Property") continue;
          const key = property.key.type === "Identifier" && !property.computed
            ? property.key.name
            : property.key.type === "Literal"
            ? String(property.key.value)
            : undefined;
          if (key !== undefined && Object.hasOwn(members, key)) {
            report(property, `${name}.${key}`, members[key]);
          }
        }
      }
    };

    const isForbiddenName = (name: string) =>
      Object.hasOwn(FORBIDDEN_GLOBALS, name) || Object.hasOwn(FORBIDDEN_MEMBERS, name) ||
      name === "Date";

    const checkModule = (
      node: Node,
      source: string,
      specifiers: readonly Node[],
    ) => {
      const why = FORBIDDEN_NODE_MODULES[source];
      if (why) return report(node, `import from "${source}"`, why);
      if (source !== "node:crypto") return;
      for (const s of specifiers) {
        const imported = s.type === "ImportSpecifier"
          ? s.imported
          : s.type === "ExportSpecifier"
          ? s.local
          : undefined;
        const name = imported?.type === "Identifier"
          ? imported.name
          : imported?.type === "Literal"
          ? String(imported.value)
          : undefined;
        if (name !== undefined && FORBIDDEN_NODE_CRYPTO.test(name)) {
          report(s, `${name} from "node:crypto"`, "random");
        }
      }
    };

    return {
      Identifier(node) {
        if (!isReference(node)) return;
        if (GLOBAL_OBJECTS.has(node.name)) {
          // globalThis.setTimeout, globalThis.Deno.env, ...
          const p = node.parent;
          if (p.type !== "MemberExpression" || p.object !== node) return;
          const name = memberName(p);
          if (name !== undefined && isForbiddenName(name)) checkGlobal(name, p);
          return;
        }
        if (isForbiddenName(node.name)) checkGlobal(node.name, node);
      },
      ImportDeclaration(node) {
        if (node.importKind === "type") return;
        checkModule(node, node.source.value, node.specifiers);
      },
      ExportNamedDeclaration(node) {
        if (node.source) checkModule(node, node.source.value, node.specifiers);
      },
      ExportAllDeclaration(node) {
        checkModule(node, node.source.value, []);
      },
      ImportExpression(node) {
        if (node.source.type === "Literal" && typeof node.source.value === "string") {
          checkModule(node, node.source.value, []);
        }
      },
    };
  },
};

const plugin: Deno.lint.Plugin = {
  name: "shoal",
  rules: { deterministic },
};

export default plugin;
