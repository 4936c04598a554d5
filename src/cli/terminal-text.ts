// Text for a terminal: anything a client sent (node ids, NACK messages, SANs) is
// escaped before it is printed, so that no escape sequence or control character
// from the wire reaches the operator's terminal.

/**
 * Every C0/C1 control character (ESC included, so ANSI sequences become inert text)
 * and every bidirectional-override character, as a visible `\xNN` / `\u{NNNN}` escape.
 */
export function terminalSafe(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`).replace(
    /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u{${c.charCodeAt(0).toString(16)}}`,
  );
}

/** A left-aligned table with a header row; every cell goes through terminalSafe. */
export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const cells = [headers, ...rows].map((r) => r.map((c) => terminalSafe(c)));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? "").length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("   ").trimEnd()).join("\n") + "\n";
}

/** "3m12s", "41s", "2h05m": how long ago `since` was, for STALE columns. */
export function formatAge(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
