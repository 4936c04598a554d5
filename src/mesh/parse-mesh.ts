// Mesh file → MeshModel: YAML (with source ranges), ajv schema, then the checks a
// schema cannot express (duplicates, endpoint ports). Every error names the file,
// the line where the YAML has one, and the field path (`services[1].ports[0].port`).
import { open } from "node:fs/promises";
import { isIP } from "node:net";
import { Ajv, type ErrorObject } from "ajv";
import { LineCounter, parseDocument, isCollection, isNode, visit, type Document } from "yaml";
import { meshSchema } from "./mesh-schema.js";
import {
  MeshError,
  serviceHost,
  type MeshEndpoint,
  type MeshModel,
  type MeshNamespace,
  type MeshService,
  type MtlsMode,
  type Protocol,
} from "./model.js";

const ajv = new Ajv({ allErrors: true, strict: true });
ajv.addFormat("ipv4-or-ipv6", (s: string) => isIP(s) !== 0);
const validate = ajv.compile(meshSchema);

type Segment = string | number;

function formatPath(segments: Segment[]): string {
  let out = "";
  for (const s of segments) out += typeof s === "number" ? `[${s}]` : out === "" ? s : `.${s}`;
  return out;
}

function pointerToSegments(pointer: string): Segment[] {
  if (pointer === "") return [];
  return pointer
    .slice(1)
    .split("/")
    .map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"))
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

function lineOf(doc: Document, counter: LineCounter, segments: Segment[]): number | undefined {
  // Walk up until a node with a range is found (a missing key reports its parent).
  for (let n = segments.length; n >= 0; n--) {
    const node = n === 0 ? doc.contents : doc.getIn(segments.slice(0, n), true);
    if (isNode(node) && node.range) return counter.linePos(node.range[0]).line;
  }
  return undefined;
}

function describe(err: ErrorObject): { segments: Segment[]; detail: string } {
  const segments = pointerToSegments(err.instancePath);
  switch (err.keyword) {
    case "required":
      return { segments: [...segments, String(err.params["missingProperty"])], detail: "is required" };
    case "additionalProperty":
    case "additionalProperties":
      return { segments: [...segments, String(err.params["additionalProperty"])], detail: "unknown key" };
    case "enum":
      return {
        segments,
        detail: `must be one of ${(err.params["allowedValues"] as unknown[]).map(String).join(", ")}`,
      };
    case "format":
      return { segments, detail: "must be an IPv4 or IPv6 address" };
    default:
      return { segments, detail: err.message ?? "is invalid" };
  }
}

interface RawEndpoint {
  address: string;
  port?: number;
  ports?: Record<string, number>;
  weight?: number;
  locality?: { region?: string; zone?: string; subZone?: string };
}
interface RawService {
  name: string;
  namespace: string;
  serviceAccount?: string;
  ports: Array<{ name?: string; port: number; protocol?: Protocol }>;
  endpoints?: RawEndpoint[];
}
interface RawMesh {
  namespaces?: Array<{ name: string; mtls?: MtlsMode }>;
  services?: RawService[];
}

/** Parses and validates a mesh file's text. Throws MeshError. */
export function parseMesh(text: string, file = "<mesh>"): MeshModel {
  const counter = new LineCounter();
  const doc = parseDocument(text, { lineCounter: counter, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    const line = e.linePos?.[0]?.line ?? counter.linePos(e.pos[0]).line;
    throw new MeshError(file, line, "", `YAML: ${e.message.split("\n")[0]}`);
  }
  // A mapping key that is itself a map or a list means nothing here (yaml would stringify it, with a process warning).
  visit(doc, {
    Pair(_key, pair) {
      if (isCollection(pair.key)) {
        const at = pair.key.range?.[0];
        throw new MeshError(file, at === undefined ? undefined : counter.linePos(at).line, "", "YAML: a mapping key must be a plain value, not a map or a list");
      }
    },
  });
  // An empty file (or only comments) is what a truncated write leaves behind: it is not a
  // mesh with no services, which must be said explicitly.
  if (doc.contents === null) {
    throw new MeshError(file, undefined, "", `the mesh file is empty (no YAML document); an empty mesh must say so explicitly: "services: []"`);
  }
  let raw: unknown;
  try {
    // toJS throws on an alias with no anchor, or on too many aliases ("billion laughs").
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw new MeshError(file, undefined, "", `YAML: ${(err as Error).message}`);
  }
  const fail = (segments: Segment[], detail: string): never => {
    throw new MeshError(file, lineOf(doc, counter, segments), formatPath(segments), detail);
  };
  if (!validate(raw)) {
    const first = describe(validate.errors![0]!);
    fail(first.segments, first.detail);
  }
  const mesh = raw as RawMesh;
  if (mesh.services === undefined) {
    fail(["services"], `is required: a mesh file with no "services" key is refused (a truncated file?); an empty mesh must say so explicitly: "services: []"`);
  }

  const namespaces = new Map<string, MeshNamespace>();
  (mesh.namespaces ?? []).forEach((ns, i) => {
    if (namespaces.has(ns.name)) fail(["namespaces", i, "name"], `duplicate namespace "${ns.name}"`);
    namespaces.set(ns.name, { name: ns.name, mtls: ns.mtls ?? "STRICT" });
  });

  const services: MeshService[] = [];
  const seen = new Set<string>();
  (mesh.services ?? []).forEach((s, i) => {
    const host = serviceHost(s.name, s.namespace);
    if (seen.has(host)) fail(["services", i, "name"], `duplicate service "${s.name}" in namespace "${s.namespace}"`);
    seen.add(host);
    if (!namespaces.has(s.namespace)) namespaces.set(s.namespace, { name: s.namespace, mtls: "STRICT" });
    const portNames = new Set<string>();
    const portNumbers = new Set<number>();
    const ports = s.ports.map((p, j) => {
      const protocol = p.protocol ?? "TCP";
      const pname = p.name ?? `${protocol.toLowerCase()}-${p.port}`;
      if (portNumbers.has(p.port)) fail(["services", i, "ports", j, "port"], `duplicate port ${p.port}`);
      if (portNames.has(pname)) fail(["services", i, "ports", j, "name"], `duplicate port name "${pname}"`);
      portNumbers.add(p.port);
      portNames.add(pname);
      return { name: pname, port: p.port, protocol };
    });
    const endpoints: MeshEndpoint[] = (s.endpoints ?? []).map((e, j) => {
      for (const key of Object.keys(e.ports ?? {})) {
        if (!portNames.has(key)) fail(["services", i, "endpoints", j, "ports", key], `no port named "${key}" on this service`);
      }
      return endpoint(e, e.port ?? ports[0]!.port);
    });
    services.push({
      name: s.name,
      namespace: s.namespace,
      serviceAccount: s.serviceAccount ?? "default",
      ports,
      endpoints,
      host,
    });
  });

  services.sort((a, b) => (a.namespace === b.namespace ? cmp(a.name, b.name) : cmp(a.namespace, b.namespace)));
  return {
    namespaces: [...namespaces.values()].sort((a, b) => cmp(a.name, b.name)),
    services,
  };
}

function endpoint(e: RawEndpoint, port: number): MeshEndpoint {
  return {
    address: e.address,
    port,
    ports: { ...(e.ports ?? {}) },
    weight: e.weight ?? 1,
    locality: { region: e.locality?.region ?? "", zone: e.locality?.zone ?? "", subZone: e.locality?.subZone ?? "" },
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Largest mesh file read by default (--max-mesh-bytes). */
export const DEFAULT_MAX_MESH_BYTES = 16 * 1024 * 1024;

export interface ReadMeshOptions {
  /** Refuse a file larger than this, before reading or parsing it (default 16 MiB). */
  maxBytes?: number;
}

/**
 * Reads a mesh file's bytes, refusing one above `maxBytes` before it is parsed: its size
 * is checked with fstat, and the read itself stops one byte past the limit, so a file
 * that grows while it is read is refused too. Throws MeshError naming the file.
 */
export async function readMeshBytes(path: string, options: ReadMeshOptions = {}): Promise<Buffer> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MESH_BYTES;
  const tooLarge = (size: string) =>
    new MeshError(path, undefined, "", `the mesh file is ${size} bytes, above the limit of ${maxBytes} bytes (--max-mesh-bytes); not parsed`);
  let handle;
  try {
    handle = await open(path, "r");
  } catch (err) {
    throw new MeshError(path, undefined, "", `cannot read: ${(err as Error).message}`);
  }
  try {
    const { size } = await handle.stat();
    if (size > maxBytes) throw tooLarge(String(size));
    // Read until end of file, never more than maxBytes + 1 bytes in all (the file may grow while read).
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(Math.min(Math.max(size - length, 64 * 1024), maxBytes + 1 - length));
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, length);
      if (bytesRead === 0) break;
      chunks.push(chunk.subarray(0, bytesRead));
      length += bytesRead;
      if (length > maxBytes) throw tooLarge(`more than ${maxBytes}`);
    }
    return Buffer.concat(chunks, length);
  } catch (err) {
    if (err instanceof MeshError) throw err;
    throw new MeshError(path, undefined, "", `cannot read: ${(err as Error).message}`);
  } finally {
    await handle.close();
  }
}

/** Reads a mesh file's text (see readMeshBytes). Throws MeshError naming the file. */
export async function readMeshFile(path: string, options: ReadMeshOptions = {}): Promise<string> {
  return (await readMeshBytes(path, options)).toString("utf8");
}

/**
 * Reads and parses a mesh file on this thread: for small callers (the CLI's render, tests).
 * A server parses off its main thread with loadMeshSource. Throws MeshError naming the file.
 */
export async function loadMeshFile(path: string, options: ReadMeshOptions = {}): Promise<MeshModel> {
  return parseMesh(await readMeshFile(path, options), path);
}
