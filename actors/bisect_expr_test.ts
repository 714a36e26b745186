import assert from "node:assert/strict";
import { BisectExprError, compileBisectExpr } from "./bisect_expr.ts";
import { arraySource, bisect } from "./history.ts";
import { applyBatch, ClusterState } from "./state.ts";
import { type ShoalEvent, TaskState } from "../events/schema.ts";
import { ev, Folder, meta } from "../tests/_harness/events.ts";
import { ClusterHistory } from "../tests/_harness/cluster_history.ts";

/**
 * Two nodes (worker-1 ready, worker-2 down); service web (3 replicas) with tasks running on each
 * node and one failed on worker-1; service api (2 replicas) with one task pending.
 */
function cluster(): ClusterState {
  const f = new Folder();
  f.ok(
    ev.clusterCreated(),
    ev.nodeRegistered("n1", "worker-1"),
    ev.nodeRegistered("n2", "worker-2"),
  );
  const status = (id: string, state: "ready" | "down"): ShoalEvent => ({
    type: "NodeStatusChanged",
    v: 1,
    data: { id, status: { state, message: "", addr: "" } },
    meta: meta("dispatcher"),
  });
  f.ok(status("n1", "ready"), status("n2", "down"));
  const web = f.ok(ev.serviceCreated("s1", "web", 3));
  const api = f.ok(ev.serviceCreated("s2", "api", 2));
  const place = (id: string, svc: string, version: number, slot: number, node?: string) => {
    f.ok(ev.taskCreated(id, svc, version, slot));
    f.ok(ev.taskAllocated(id));
    if (node === undefined) return;
    f.ok(ev.taskAssigned(id, node));
    f.ok(ev.taskReported(id, TaskState.running, `agent:${node}`));
  };
  place("t1", "s1", web, 1, "n1");
  place("t2", "s1", web, 2, "n2");
  place("t3", "s1", web, 3, "n1");
  f.ok(ev.taskReported("t3", TaskState.failed, "agent:n1"));
  place("t4", "s2", api, 1);
  return f.state;
}

Deno.test("conditions evaluate against the state", () => {
  const state = cluster();
  const cases: [string, boolean][] = [
    ["running(web) < 3", true],
    ["running(web) == 2", true],
    ["running(web) = 2", true],
    ["running('web') == 2", true],
    ["tasks(web, state=failed) >= 1", true],
    ["tasks(web, state=failed) >= 2", false],
    ["tasks(state=running) == 2", true],
    ["tasks(web, node=worker-1) == 2", true],
    ["tasks(service=api, state=pending) == 1", true],
    ["tasks(desired=running) == 4", true],
    ["tasks() == 4", true],
    ["replicas(web) == 5", false],
    ["replicas(web) == 3", true],
    ["replicas(nope) == 0 and running(nope) == 0", true],
    ["node(worker-2).status == down", true],
    ["node(n1).status == ready", true],
    ["node(worker-1).role == worker and node(worker-1).availability == active", true],
    ["node(gone).status == none and not node(gone).exists", true],
    ["services() > 2", false],
    ["services() == 2", true],
    ["nodes(state=ready) == 1", true],
    ["nodes(role=worker, availability=active) == 2", true],
    [`index() == ${state.index}`, true],
    ["not running(web) < 3", false],
    ["! running(web) < 3", false],
    ["running(web) < 3 and (services() > 2 or node(worker-2).status == down)", true],
    ["running(web) < 3 AND services() == 2", true],
    ["running(web) > 3 or services() == 1", false],
    ["!(services() == 2) || index() > 0", true],
    ["running(web) < 1 or running(web) > 1 and services() == 2", true],
    ["task(t3).state == failed", true],
    ["task(t3).state > running", true],
    ["task(web.1).state >= running", true],
    ["task(api.1).state < assigned", true],
    ["task(t1).node == worker-1", true],
    ["task(web.9).exists == false", true],
    ["task(web.9).state < new", true],
    ["service(web).exists", true],
    ["not service(nope).exists", true],
    ["service(web).update == none", true],
    ["service(api).running == 0 and service(web).tasks == 3", true],
    ["3 > running(web)", true],
  ];
  for (const [src, expected] of cases) {
    assert.equal(compileBisectExpr(src)(state), expected, src);
  }
});

Deno.test("bad conditions name the column and what was expected", () => {
  const cases: [string, number, RegExp, string?][] = [
    ["", 1, /a condition such as/],
    ["running(web < 3", 13, /"," or "\)"/, '"<"'],
    ["running(web) <", 15, /a value/, "the end of the condition"],
    ["runing(web) < 3", 1, /a function \("running", "tasks"/, '"runing"'],
    ["tasks(web, stat=failed) >= 1", 12, /a key of tasks: "service", "state", "desired" or "node"/],
    ["tasks(web, state=faild) >= 1", 18, /a task state \("new", "pending"/, '"faild"'],
    ["node(worker-1).stat == down", 16, /a field of node \("status", "availability"/, '"stat"'],
    ["node(worker-1) == down", 16, /"\." and a field of node/, '"=="'],
    ["running(web) < three", 16, /a number/, '"three"'],
    ["node(n1).status < down", 17, /"==" or "!=" \(text has no order\)/, '"<"'],
    ["running(web) < 3 and", 21, /a value/],
    ["running(web) < 3)", 17, /"and", "or" or the end/, '")"'],
    ["(running(web) < 3", 18, /"\)", "and" or "or"/],
    ["running() < 3", 9, /SERVICE, as in running\(SERVICE\)/, '")"'],
    ["running(web, api) < 3", 14, /at most 1 plain argument/, '"api"'],
    ["services(web) > 1", 10, /no plain argument/],
    ["running(web) < 3 @ 4", 18, /a value, an operator or a parenthesis/, '"@"'],
    ["running('web) < 3", 9, /a closing '/],
    ["running(web)", 13, /a comparison/],
    ["task(x).state == bogus", 18, /a task state/, '"bogus"'],
    ["web == web", 1, /a count such as running\(web\)/],
    ["running(web).x < 3", 13, /has no fields/],
    ["service(web).exists == maybe", 24, /"true" or "false"/],
    ["node(n1).status == 3", 20, /text to compare with/, "a number"],
    [
      "nodes(state=sleepy) > 1",
      13,
      /a node state \("unknown", "down", "ready" or "disconnected"\)/,
    ],
  ];
  for (const [src, column, expected, found] of cases) {
    assert.throws(() => compileBisectExpr(src), (e: unknown) => {
      assert.ok(e instanceof BisectExprError, `${src}: ${e}`);
      assert.ok(e instanceof SyntaxError);
      assert.equal(e.position + 1, column, `${src}: ${e.message}`);
      assert.match(e.expected, expected, src);
      if (found !== undefined) assert.equal(e.found, found, src);
      assert.match(e.message, new RegExp(`^Bad condition at column ${column}: expected `));
      assert.equal(e.pointer, `${src}\n${" ".repeat(column - 1)}^`);
      return true;
    }, src);
  }
});

Deno.test("a compiled condition drives bisect to the first index where it holds", () => {
  const entries = new ClusterHistory({ seed: 9, batchSize: 40 }).take(600);
  const condition = compileBisectExpr("tasks(state=failed) >= 1 and services() >= 2");
  const state = new ClusterState();
  let expected: number | undefined;
  for (const e of entries) {
    applyBatch(state, e.batch, e.index);
    if (condition(state)) {
      expected = e.index;
      break;
    }
  }
  assert.ok(expected !== undefined, "the history should reach the condition");
  const r = bisect(arraySource(entries), condition);
  assert.equal(r.found && r.index, expected);
});
