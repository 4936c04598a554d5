// Resource names as one string each, however many streams ask for them.
//
// Every request a sidecar sends decodes into fresh strings: a thousand sidecars subscribed
// to the same hundred load assignments would hold a hundred thousand copies of a hundred
// names (about 6 KiB per sidecar). Names are interned per server; a client can send names
// that exist nowhere, so the table is bounded and past its bound names are kept as sent.
export type NameInterner = (name: string) => string;

/** Names kept as each request sent them (a stream given no interner). */
export const keepName: NameInterner = (name) => name;

export const MAX_INTERNED_NAMES = 262_144;

export function createNameInterner(max = MAX_INTERNED_NAMES): NameInterner {
  const names = new Map<string, string>();
  return (name) => {
    const known = names.get(name);
    if (known !== undefined) return known;
    if (names.size < max) names.set(name, name);
    return name;
  };
}
