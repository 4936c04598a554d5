// Golden files for Envoy config: canonical proto JSON (original field names, Any
// unpacked, defaults omitted), compared semantically. `UPDATE_GOLDEN=1` rewrites
// them; pruneGoldens then removes the files no test asked for. A mismatch throws
// with the formatDiff output, not a wall of JSON.
import type { JsonValue } from "@bufbuild/protobuf";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { diffEnvoyConfigs, formatDiff } from "./diff-envoy-configs.js";
import { parseEnvoyConfig } from "./envoy-config.js";
import { canonicalMessageJson } from "./canonical-json.js";

/** A golden file that does not match (or does not exist). */
export class GoldenMismatchError extends Error {
  override name = "GoldenMismatchError";
}

const touched = new Set<string>();

/** Root types that are written as they are (everything else is a resource, written as an Any). */
const CONTAINERS = new Set([
  "google.protobuf.Any",
  "envoy.config.bootstrap.v3.Bootstrap",
  "envoy.admin.v3.ConfigDump",
  "envoy.service.discovery.v3.DiscoveryResponse",
]);

/** True when UPDATE_GOLDEN=1 (or true) is set. */
export function updatingGoldens(): boolean {
  return process.env.UPDATE_GOLDEN === "1" || process.env.UPDATE_GOLDEN === "true";
}

/** Canonical text of a config (message, messages or parsed JSON), as golden files hold it. */
export function canonicalConfigText(value: unknown): string {
  const parsed = parseEnvoyConfig(value);
  const json: JsonValue[] = parsed.roots.map((r) => {
    const j = canonicalMessageJson(r.schema, r.message);
    // A bare resource message is written in its Any form so that it reads back as one.
    if (!CONTAINERS.has(r.schema.typeName)) return { "@type": `type.googleapis.com/${r.schema.typeName}`, ...(j as { [k: string]: JsonValue }) };
    return j;
  });
  const body = parsed.kind === "resources" && parsed.roots.length !== 1 ? json : json[0] ?? null;
  return `${JSON.stringify(body, null, 2)}\n`;
}

/**
 * Compares `value` (a message, a list of messages, or parsed JSON/YAML) with the
 * golden file. With UPDATE_GOLDEN=1 the file is (re)written instead.
 */
export function expectGolden(file: string, value: unknown): void {
  const abs = resolve(file);
  touched.add(abs);
  const text = canonicalConfigText(value);
  if (updatingGoldens()) {
    mkdirSync(dirname(abs), { recursive: true });
    if (!existsSync(abs) || readFileSync(abs, "utf8") !== text) writeFileSync(abs, text);
    return;
  }
  if (!existsSync(abs)) throw new GoldenMismatchError(`golden file ${file} is missing: run UPDATE_GOLDEN=1 npm test`);
  const golden = JSON.parse(readFileSync(abs, "utf8")) as unknown;
  const d = diffEnvoyConfigs(golden, JSON.parse(text) as unknown);
  if (!d.same) throw new GoldenMismatchError(`${file}: output differs from the golden file (A = golden, B = actual); run UPDATE_GOLDEN=1 npm test to accept:\n${formatDiff(d)}`);
}

/**
 * Golden files in `dir` (matching `suffix`) that no expectGolden call in this
 * process asked for. With UPDATE_GOLDEN=1 they are deleted; returns their names.
 */
export function pruneGoldens(dir: string, suffix = ".json"): string[] {
  if (!existsSync(dir)) return [];
  const orphans = readdirSync(dir)
    .filter((f) => f.endsWith(suffix))
    .filter((f) => !touched.has(resolve(join(dir, f))));
  if (updatingGoldens()) for (const f of orphans) rmSync(join(dir, f));
  return orphans;
}
