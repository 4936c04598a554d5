// Durations on the command line and in config: "90d", "24h", "30m", "45s", "1h30m" or plain seconds.

const UNIT: Record<string, number> = { d: 86400, h: 3600, m: 60, s: 1 };

/** Seconds in a duration string; throws an Error naming the bad input. */
export function parseDuration(text: string): number {
  const s = text.trim();
  if (/^\d+$/.test(s)) return Number(s);
  const re = /(\d+)([dhms])/gy;
  let total = 0;
  let matched = 0;
  for (const m of s.matchAll(re)) {
    total += Number(m[1]) * UNIT[m[2]!]!;
    matched += m[0].length;
  }
  if (matched === 0 || matched !== s.length) {
    throw new Error(`invalid duration "${text}" (examples: 90d, 24h, 30m, 45s, 1h30m, 3600)`);
  }
  return total;
}
