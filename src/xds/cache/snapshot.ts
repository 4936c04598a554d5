// An immutable snapshot of one node's resources, encoded once: each resource keeps
// its packed Any (shared by every stream that sends it) and a version that is a hash
// of its deterministic encoding; a type's version is a hash over its resources.
import { createHash } from "node:crypto";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";

export interface CachedResource {
  readonly name: string;
  readonly typeUrl: string;
  /** Hash of the encoded resource: the delta protocol's per-resource version. */
  readonly version: string;
  /** The resource packed once; the same object goes into every response. */
  readonly any: Any;
  /** Resources of other types this one needs (an EDS cluster's load assignment, a listener's routes). */
  readonly references: readonly ResourceRef[];
}

export interface ResourceRef {
  typeUrl: string;
  name: string;
}

export interface TypeSnapshot {
  readonly version: string;
  readonly resources: ReadonlyMap<string, CachedResource>;
}

export interface Snapshot {
  readonly types: ReadonlyMap<string, TypeSnapshot>;
  get(typeUrl: string): TypeSnapshot | undefined;
}

export interface ResourceEntry<Desc extends DescMessage = DescMessage> {
  schema: Desc;
  name: string;
  message: MessageShape<Desc>;
}

function hash(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("base64url").slice(0, 16);
}

/** Packs one resource (deterministic encoding) and computes its version. */
export function cacheResource<Desc extends DescMessage>(
  schema: Desc,
  name: string,
  message: MessageShape<Desc>,
  references: readonly ResourceRef[] = [],
): CachedResource {
  const value = toBinary(schema, message);
  const typeUrl = `type.googleapis.com/${schema.typeName}`;
  return { name, typeUrl, version: hash(value), any: create(AnySchema, { typeUrl, value }), references };
}

/** Builds a snapshot from already cached resources, grouped by their type URL. */
export function createSnapshot(resources: Iterable<CachedResource>, typeUrls: Iterable<string> = []): Snapshot {
  const grouped = new Map<string, Map<string, CachedResource>>();
  for (const t of typeUrls) grouped.set(t, new Map());
  for (const r of resources) {
    let m = grouped.get(r.typeUrl);
    if (!m) grouped.set(r.typeUrl, (m = new Map()));
    if (m.has(r.name)) throw new Error(`duplicate ${r.typeUrl} resource "${r.name}"`);
    m.set(r.name, r);
  }
  const types = new Map<string, TypeSnapshot>();
  for (const [typeUrl, m] of grouped) {
    const sorted = new Map([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    const h = createHash("sha256");
    for (const r of sorted.values()) h.update(r.name).update("\0").update(r.version).update("\0");
    types.set(typeUrl, { version: h.digest("base64url").slice(0, 12), resources: sorted });
  }
  return { types, get: (t) => types.get(t) };
}
