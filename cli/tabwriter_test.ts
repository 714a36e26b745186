import assert from "node:assert/strict";
import { displayWidth, tabwrite } from "./tabwriter.ts";

Deno.test("columns are as wide as their widest cell plus 3, at least 10", () => {
  const out = tabwrite("ID\tNAME\tIMAGE\nabc\tweb\tlocalbusybox:1\n");
  assert.equal(out, "ID        NAME      IMAGE\nabc       web       localbusybox:1\n");
});

Deno.test("the last cell of a line is not a column, so empty last cells leave the padding", () => {
  const out = tabwrite("A\tPORTS\nlocalbusybox:1234567\t\n");
  assert.equal(out, "A                      PORTS\nlocalbusybox:1234567   \n");
});

Deno.test("a column block ends at a line without that column, as Go's elastic tabstops", () => {
  const out = tabwrite("aaaa\tb\tc\nx\nyy\tlong-cell\tz\n");
  assert.equal(out, "aaaa      b         c\nx\nyy        long-cell   z\n");
});

Deno.test("wide characters count twice, the ellipsis once", () => {
  assert.equal(displayWidth("\u2026"), 1);
  assert.equal(displayWidth("\u4e2d\u6587"), 4);
  assert.equal(tabwrite("\u4e2d\u6587\tx\nab\ty\n"), "\u4e2d\u6587      x\nab        y\n");
});
