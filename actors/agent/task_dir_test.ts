import assert from "node:assert/strict";
import { FileReference } from "../../events/schema.ts";
import { fileTarget, taskDirPaths } from "./task_dir.ts";
import { TaskFailure } from "./executor.ts";

const ref = (input: Partial<FileReference>) =>
  FileReference.parse({ id: "s1", name: "db_password", ...input });

Deno.test("fileTarget keeps targets inside their directory", () => {
  assert.equal(fileTarget(ref({})), "db_password");
  assert.equal(fileTarget(ref({ target: "conf/app.ini" })), "conf/app.ini");
  assert.equal(fileTarget(ref({ target: "/etc/app.ini" })), "etc/app.ini");
  assert.equal(fileTarget(ref({ target: "a/./b" })), "a/b");
  assert.equal(fileTarget(ref({ target: "../x" })), undefined);
  assert.equal(fileTarget(ref({ target: "a/../../x" })), undefined);
  assert.equal(fileTarget(ref({ target: "/" })), undefined);
});

Deno.test("taskDirPaths refuses an id that is not fit for a path", () => {
  assert.equal(taskDirPaths("/r", "abc").secrets, "/r/abc/secrets");
  assert.throws(() => taskDirPaths("/r", "../etc"), TaskFailure);
});
