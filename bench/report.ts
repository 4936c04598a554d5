// Writes one benchmark's figures into its own section of BENCHMARKS.md
// (between <!-- section:NAME --> and <!-- /section:NAME -->), leaving the rest alone.
import { readFileSync, writeFileSync } from "node:fs";

export function writeBenchmarkSection(name: string, markdown: string, file = "BENCHMARKS.md"): void {
  const text = readFileSync(file, "utf8");
  const open = `<!-- section:${name} -->`;
  const close = `<!-- /section:${name} -->`;
  const start = text.indexOf(open);
  const end = text.indexOf(close);
  const body = `${open}\n${markdown.trim()}\n${close}`;
  const next = start >= 0 && end > start ? text.slice(0, start) + body + text.slice(end + close.length) : `${text.trimEnd()}\n\n${body}\n`;
  writeFileSync(file, next);
}
