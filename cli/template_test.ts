import assert from "node:assert/strict";
import { HEADER_FUNCS, printValue, sprintf, STRICT, Template, toGoJson } from "./template.ts";

const run = (src: string, data: unknown) => new Template(src).execute(data);

Deno.test("fields, nested fields, variables and dot", () => {
  const data = { Name: "web", Spec: { Mode: { Replicated: { Replicas: 3 } } }, Tags: ["a", "b"] };
  assert.equal(run("{{.Name}}", data), "web");
  assert.equal(run("{{ .Spec.Mode.Replicated.Replicas }}", data), "3");
  assert.equal(run("{{.Tags}}", data), "[a b]");
  assert.equal(run("{{.Missing}}", data), "<no value>");
  assert.equal(run("{{$x := .Name}}{{$x}}-{{$.Name}}", data), "web-web");
  assert.equal(run("{{.}}", "plain"), "plain");
  assert.equal(run("{{.Spec}}", { Spec: { b: 1, a: "x" } }), "map[a:x b:1]");
});

Deno.test("if / else if / else, range over lists and maps, with", () => {
  assert.equal(run("{{if .A}}yes{{else}}no{{end}}", { A: "" }), "no");
  assert.equal(run("{{if .A}}a{{else if .B}}b{{else}}c{{end}}", { A: 0, B: [1] }), "b");
  assert.equal(run("{{range .L}}<{{.}}>{{end}}", { L: ["x", "y"] }), "<x><y>");
  assert.equal(run("{{range $i, $v := .L}}{{$i}}={{$v}} {{end}}", { L: ["x", "y"] }), "0=x 1=y ");
  assert.equal(
    run("{{range $k, $v := .M}}{{$k}}:{{$v}};{{end}}", { M: { zone: "east", arch: "x86" } }),
    "arch:x86;zone:east;",
    "map keys in order, as Go's range",
  );
  assert.equal(run("{{range .L}}x{{else}}empty{{end}}", { L: [] }), "empty");
  assert.equal(run("{{with .A}}{{.B}}{{end}}", { A: { B: "in" } }), "in");
});

Deno.test("trim markers remove the white space beside them", () => {
  assert.equal(run("a  {{- .X -}}  b", { X: "1" }), "a1b");
  assert.equal(
    run("Service Mode:\n{{- if .G }}\tGlobal{{end}}", { G: true }),
    "Service Mode:\tGlobal",
  );
  assert.equal(run("x\n{{- /* a comment */ -}}\ny", {}), "xy");
});

Deno.test("functions: Go's and Docker's", () => {
  const d = { Name: "Web Server", L: ["a", "b"], M: { b: "2", a: "1" }, N: 3 };
  assert.equal(run("{{lower .Name}} {{upper .Name}}", d), "web server WEB SERVER");
  assert.equal(run("{{.Name | lower}}", d), "web server");
  assert.equal(run('{{join .L ","}} {{join .M "+"}}', d), "a,b 1+2");
  assert.equal(run('{{split "a:b" ":"}}', d), "[a b]");
  assert.equal(run('{{title "hello world"}}', d), "Hello World");
  assert.equal(run("{{pad .Name 1 2}}|", d), " Web Server  |");
  assert.equal(run("{{truncate .Name 3}}", d), "Web");
  assert.equal(run("{{json .L}} {{json .M}}", d), '["a","b"] {"a":"1","b":"2"}');
  assert.equal(run('{{len .L}} {{index .L 1}} {{index .M "a"}}', d), "2 b 1");
  assert.equal(run("{{if eq .N 3}}three{{end}}{{if gt .N 1}}>1{{end}}", d), "three>1");
  assert.equal(run("{{if and .N (not .Missing)}}ok{{end}}", d), "ok");
  assert.equal(run('{{printf "%-5s|%3d" .Name .N}}', { Name: "ab", N: 7 }), "ab   |  7");
  assert.equal(sprintf("%q %v %t", "x", [1, 2], true), '"x" [1 2] true');
});

Deno.test("contexts behave like Go structs: unknown fields are errors; json sorts fields", () => {
  const ctx = Object.defineProperty(
    { Name: "web", ID: "abc", Label: (k: unknown) => `L(${k})` },
    STRICT,
    {
      value: "*service.serviceContext",
    },
  );
  assert.equal(run('{{.Name}} {{.Label "zone"}}', ctx), "web L(zone)");
  assert.throws(
    () => run("{{.Nope}}", ctx),
    /can't evaluate field Nope in type \*service.serviceContext/,
  );
  assert.equal(toGoJson(ctx), '{"ID":"abc","Name":"web"}');
  assert.equal(
    toGoJson(Object.defineProperty({ P: "*:80->80/tcp" }, STRICT, { value: "x" })),
    '{"P":"*:80-\\u003e80/tcp"}',
    "a context's JSON escapes HTML, as Go's json.Marshal",
  );
});

Deno.test("header functions leave the header label alone", () => {
  const t = new Template("{{.Name | lower}}\t{{json .ID}}", HEADER_FUNCS);
  assert.equal(t.execute({ Name: "NAME", ID: "ID" }), "NAME\tID");
});

Deno.test("malformed templates fail to parse with Go-like messages", () => {
  assert.throws(() => new Template("{{.Name"), /unclosed action/);
  assert.throws(() => new Template("{{if .A}}x"), /unexpected EOF/);
  assert.throws(() => new Template("{{end}}"), /unexpected \{\{end\}\}/);
  assert.throws(() => new Template("{{nofunc .A}}"), /function "nofunc" not defined/);
});

Deno.test("printValue prints as fmt.Sprint", () => {
  assert.equal(printValue(null), "<nil>");
  assert.equal(printValue(true), "true");
  assert.equal(printValue(0.5), "0.5");
  assert.equal(printValue(["a", 1]), "[a 1]");
});
