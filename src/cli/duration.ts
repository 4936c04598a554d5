// Durations as operators write them: "90d", "24h", "15m", "30s", "500ms", or a
// combination ("1h30m"). A bare number is seconds.
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

export function parseDurationSeconds(text: string, what = "duration"): number {
  const t = text.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return Number(t);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * (UNIT_SECONDS[m[2]!] ?? NaN);
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== t.length || !Number.isFinite(total)) {
    throw new Error(`${what}: "${text}" is not a duration (examples: 30s, 15m, 24h, 90d)`);
  }
  return total;
}

export function formatDuration(seconds: number): string {
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]] as const) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}
