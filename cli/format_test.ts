import assert from "node:assert/strict";
import {
  CliError,
  compactJson,
  ellipsis,
  formatContext,
  goTimeString,
  indentJson,
  inspectOutput,
  naturalCompare,
  prettyPrint,
  renderList,
  templateString,
  truncateId,
} from "./format.ts";

const rows = [
  formatContext("*test.row", { ID: "drb4ba2hsbrk", Name: "web", Ports: "" }),
  formatContext("*test.row", { ID: "8ajlobtmrchb", Name: "pinger", Ports: "*:80->80/tcp" }),
];
const header = { ID: "ID", Name: "NAME", Ports: "PORTS" };

Deno.test("renderList: a table format gets a header row and aligned columns", () => {
  assert.equal(
    renderList("table {{.ID}}\t{{.Name}}\t{{.Ports}}", header, rows),
    "ID             NAME      PORTS\n" +
      "drb4ba2hsbrk   web       \n" +
      "8ajlobtmrchb   pinger    *:80->80/tcp\n",
  );
  assert.equal(renderList("table {{.Name}}", header, []), "NAME\n", "a header even with no rows");
});

Deno.test("renderList: custom templates, \\t escapes, json", () => {
  assert.equal(renderList("{{.Name}}", header, rows), "web\npinger\n");
  assert.equal(
    renderList("{{.Name}}\\t{{.ID}}", header, rows),
    "web\tdrb4ba2hsbrk\npinger\t8ajlobtmrchb\n",
  );
  assert.equal(
    renderList("json", header, rows.slice(0, 1)),
    '{"ID":"drb4ba2hsbrk","Name":"web","Ports":""}\n',
  );
  assert.throws(() => renderList("{{.Nope}}", header, rows), CliError);
  assert.throws(() => renderList("{{.Name", header, rows), /template parsing error/);
  assert.equal(templateString("table  {{.A}}  "), "{{.A}}");
});

Deno.test("inspectOutput: indented JSON arrays, compact json, templates, errors collected", async () => {
  const get = (ref: string) => {
    if (ref === "nope") return Promise.reject(new CliError("Error: no such service: nope"));
    const raw = `{"ID":"${ref}","Spec":{"Name":"${ref}","Labels":{},"L":[]}}\n`;
    return Promise.resolve({ raw, value: JSON.parse(raw) });
  };
  const indented = await inspectOutput(["a", "nope"], "", get);
  assert.equal(
    indented.out,
    '[\n    {\n        "ID": "a",\n        "Spec": {\n            "Name": "a",\n            "Labels": {},\n            "L": []\n        }\n    }\n]\n',
  );
  assert.deepEqual(indented.errors, ["Error: no such service: nope"]);
  assert.equal(
    (await inspectOutput(["a"], "json", get)).out,
    '[{"ID":"a","Spec":{"Name":"a","Labels":{},"L":[]}}]\n',
  );
  assert.equal((await inspectOutput(["a", "b"], "{{.Spec.Name}}", get)).out, "a\nb\n");
  assert.equal((await inspectOutput(["nope"], "", get)).out, "[]\n");
});

Deno.test("indentJson and compactJson keep strings as they are", () => {
  const src = '{"a": "x, y: {z}", "b":[1, {"c":"\\"q\\""}]}';
  assert.equal(compactJson(src), '{"a":"x, y: {z}","b":[1,{"c":"\\"q\\""}]}');
  assert.equal(
    indentJson(src),
    '{\n    "a": "x, y: {z}",\n    "b": [\n        1,\n        {\n            "c": "\\"q\\""\n        }\n    ]\n}',
  );
});

Deno.test("display rules: ids, states, ellipsis, natural order, Go times", () => {
  assert.equal(truncateId("drb4ba2hsbrkykux0gi2g042p"), "drb4ba2hsbrk");
  assert.equal(truncateId("sha256:0123456789abcdef00"), "0123456789ab");
  assert.equal(prettyPrint("running"), "Running");
  assert.equal(prettyPrint("RUNNING"), "Running");
  assert.equal(
    ellipsis("no suitable node (scheduling constraints)", 30),
    "no suitable node (scheduling \u2026",
  );
  assert.equal(ellipsis("short", 30), "short");
  const names = ["web.10", "web.2", "web.1", "api", "web.01"];
  assert.deepEqual(names.sort(naturalCompare), ["api", "web.1", "web.01", "web.2", "web.10"]);
  assert.equal(
    goTimeString("2026-11-22T14:48:17.334614788Z"),
    "2026-11-22 14:48:17.334614788 +0000 UTC",
  );
  assert.equal(goTimeString("2026-11-22T14:48:17.500Z"), "2026-11-22 14:48:17.5 +0000 UTC");
  assert.equal(goTimeString("2026-11-22T14:48:17+02:00"), "2026-11-22 14:48:17 +0200 +0200");
});
