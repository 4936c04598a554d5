// meshkey's log: pino, JSON lines on stderr (--log-format json, the default) or one
// human line per record (--log-format text): ISO time, level name, message, then the
// record's fields as key=value, values JSON-quoted when they hold a space or a quote.
import { Writable } from "node:stream";
import { pino, type DestinationStream, type Logger } from "pino";

export type LogFormat = "json" | "text";
export const LOG_FORMATS: readonly LogFormat[] = ["json", "text"];

/** Tokens never reach the log, whatever logs them. */
const redact = ["token", "*.token", "headers.authorization"];

export interface MeshkeyLoggerOptions {
  level: string;
  format: LogFormat;
  /** Where the lines go (default: stderr). */
  write?: (line: string) => void;
}

export function createMeshkeyLogger(options: MeshkeyLoggerOptions): Logger {
  const write = options.write;
  if (options.format === "json") {
    const dest: DestinationStream = write ? { write } : pino.destination(2);
    return pino({ level: options.level, redact }, dest);
  }
  const out = write ?? ((line: string) => process.stderr.write(line));
  return pino({ level: options.level, redact }, textDestination(out));
}

function textDestination(write: (line: string) => void): DestinationStream {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString("utf8").split("\n")) if (line) write(`${formatTextRecord(line)}\n`);
      done();
    },
  });
}

/** One pino JSON record as a text line: `2026-01-02T03:04:05.678Z INFO message key=value …`. */
export function formatTextRecord(json: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, pid: _pid, hostname: _host, ...fields } = rec;
  const when = typeof time === "number" ? new Date(time).toISOString() : String(time ?? "");
  const name = typeof level === "number" ? (pino.levels.labels[level] ?? String(level)) : String(level ?? "");
  const parts = [when, name.toUpperCase(), String(msg ?? "")];
  for (const [k, v] of Object.entries(fields)) parts.push(`${k}=${textValue(v)}`);
  return parts.join(" ");
}

function textValue(v: unknown): string {
  if (v !== null && typeof v === "object") {
    const err = v as { message?: unknown; type?: unknown };
    if (typeof err.message === "string" && typeof err.type === "string") return JSON.stringify(err.message);
    return JSON.stringify(v);
  }
  const s = String(v);
  return s === "" || /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}
