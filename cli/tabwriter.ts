/**
 * Go's `text/tabwriter` (elastic tabstops), as Docker's CLI configures it for tables:
 * `tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)`. Cells are tab-terminated; the text after a
 * line's last tab is not part of a column (which is why Docker's lines can end in spaces).
 *
 * @module
 */

interface Cell {
  text: string;
  width: number;
}

/** Options of a tab writer: Docker's tables use minWidth 10, padding 3. */
export interface TabwriterOptions {
  minWidth: number;
  padding: number;
}

/** Docker's table settings. */
export const DOCKER_TABLE: TabwriterOptions = { minWidth: 10, padding: 3 };

/** The display width of a string: one column per code point, two for East Asian wide ones. */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    w += isWide(cp) ? 2 : 1;
  }
  return w;
}

function isWide(cp: number): boolean {
  return (cp >= 0x1100 && cp <= 0x115f) || (cp >= 0x2e80 && cp <= 0xa4cf) ||
    (cp >= 0xac00 && cp <= 0xd7a3) || (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0xfe30 && cp <= 0xfe4f) || (cp >= 0xff00 && cp <= 0xff60) ||
    (cp >= 0xffe0 && cp <= 0xffe6) || (cp >= 0x1f300 && cp <= 0x1f64f) ||
    (cp >= 0x20000 && cp <= 0x3fffd);
}

/** Aligns tab-separated text into columns exactly as Go's tabwriter does. */
export function tabwrite(text: string, opts: TabwriterOptions = DOCKER_TABLE): string {
  const rawLines = text.split("\n");
  const lines: Cell[][] = rawLines.map((l) =>
    l.split("\t").map((t) => ({ text: t, width: displayWidth(t) }))
  );
  const out: string[] = [];
  const widths: number[] = [];

  const writeLines = (line0: number, line1: number) => {
    for (let i = line0; i < line1; i++) {
      const line = lines[i];
      let s = "";
      for (let j = 0; j < line.length; j++) {
        const c = line[j];
        s += c.text;
        if (j < widths.length) s += " ".repeat(Math.max(0, widths[j] - c.width));
      }
      out.push(s);
    }
  };

  const format = (line0: number, line1: number) => {
    const column = widths.length;
    for (let t = line0; t < line1; t++) {
      if (column >= lines[t].length - 1) continue;
      // A cell in this column: the block of lines that have one starts here.
      writeLines(line0, t);
      line0 = t;
      let width = opts.minWidth;
      for (; t < line1; t++) {
        const line = lines[t];
        if (column >= line.length - 1) break;
        width = Math.max(width, line[column].width + opts.padding);
      }
      widths.push(width);
      format(line0, t);
      widths.pop();
      line0 = t;
    }
    writeLines(line0, line1);
  };

  format(0, lines.length);
  return out.join("\n");
}
