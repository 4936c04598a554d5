// A small DER encoder and decoder: just what X.509 certificates and PKCS#10
// requests need on the hot path. Encoders return Buffers that callers
// concatenate; the decoder walks TLVs over one Buffer without copying.

export const TAG = {
  boolean: 0x01,
  integer: 0x02,
  bitString: 0x03,
  octetString: 0x04,
  null: 0x05,
  oid: 0x06,
  utf8String: 0x0c,
  printableString: 0x13,
  ia5String: 0x16,
  utcTime: 0x17,
  generalizedTime: 0x18,
  sequence: 0x30,
  set: 0x31,
} as const;

/** A malformed DER input; the message says what and where (byte offset). */
export class DerError extends Error {
  override name = "DerError";
}

function headerSize(len: number): number {
  return len < 0x80 ? 2 : len < 0x100 ? 3 : len < 0x10000 ? 4 : len < 0x1000000 ? 5 : 6;
}

/** One TLV with the given tag around already-encoded content parts (one allocation). */
export function tlv(tag: number, ...parts: Buffer[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const head = headerSize(len);
  const out = Buffer.allocUnsafe(head + len);
  out[0] = tag;
  if (head === 2) out[1] = len;
  else {
    const n = head - 2;
    out[1] = 0x80 | n;
    for (let i = 0; i < n; i++) out[2 + i] = (len >>> (8 * (n - 1 - i))) & 0xff;
  }
  let off = head;
  for (const p of parts) {
    p.copy(out, off);
    off += p.length;
  }
  return out;
}

export const sequence = (...parts: Buffer[]) => tlv(TAG.sequence, ...parts);
export const set = (...parts: Buffer[]) => tlv(TAG.set, ...parts);
/** [n] EXPLICIT (constructed context tag). */
export const explicit = (n: number, ...parts: Buffer[]) => tlv(0xa0 | n, ...parts);
export const octetString = (b: Buffer) => tlv(TAG.octetString, b);
export const utf8String = (s: string) => tlv(TAG.utf8String, Buffer.from(s, "utf8"));
export const ia5String = (s: string) => tlv(TAG.ia5String, Buffer.from(s, "ascii"));
export const NULL = Buffer.from([0x05, 0x00]);
export const boolean = (v: boolean) => Buffer.from([0x01, 0x01, v ? 0xff : 0x00]);

/** BIT STRING with the given number of unused bits in the last byte. */
export function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(TAG.bitString, Buffer.from([unusedBits]), bytes);
}

/** INTEGER from a non-negative big-endian magnitude (minimal encoding, sign byte if needed). */
export function unsignedInteger(magnitude: Buffer): Buffer {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  let m = magnitude.subarray(i);
  if (m.length === 0) m = Buffer.from([0]);
  if ((m[0]! & 0x80) !== 0) return tlv(TAG.integer, Buffer.from([0]), m);
  return tlv(TAG.integer, m);
}

export function smallInteger(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new RangeError(`smallInteger: ${n}`);
  const bytes: number[] = [];
  let v = n;
  do {
    bytes.unshift(v & 0xff);
    v = Math.floor(v / 256);
  } while (v > 0);
  return unsignedInteger(Buffer.from(bytes));
}

const oidCache = new Map<string, Buffer>();
/** OBJECT IDENTIFIER from dotted form ("1.2.840.10045.4.3.2"); cached. */
export function oid(dotted: string): Buffer {
  const hit = oidCache.get(dotted);
  if (hit) return hit;
  const arcs = dotted.split(".").map((a) => {
    const n = Number(a);
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`bad OID ${dotted}`);
    return n;
  });
  if (arcs.length < 2) throw new RangeError(`bad OID ${dotted}`);
  const out: number[] = [];
  const push = (v: number) => {
    const chunk: number[] = [v & 0x7f];
    v = Math.floor(v / 128);
    while (v > 0) {
      chunk.unshift((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    out.push(...chunk);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  const enc = tlv(TAG.oid, Buffer.from(out));
  oidCache.set(dotted, enc);
  return enc;
}

function two(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/** X.509 Time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5). */
export function time(d: Date): Buffer {
  const y = d.getUTCFullYear();
  const rest = `${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
  if (y >= 1950 && y < 2050) return tlv(TAG.utcTime, Buffer.from(`${two(y % 100)}${rest}`, "ascii"));
  return tlv(TAG.generalizedTime, Buffer.from(`${String(y).padStart(4, "0")}${rest}`, "ascii"));
}

// ---------------------------------------------------------------- decoding

/** One decoded TLV: positions into the source buffer. */
export interface Node {
  readonly tag: number;
  /** Offset of the tag byte. */
  readonly start: number;
  /** Offset of the first content byte. */
  readonly contentStart: number;
  /** Offset just past the content. */
  readonly end: number;
}

/** Reads the TLV at `offset` of `buf`, bounded by `limit`. */
export function readNode(buf: Buffer, offset = 0, limit = buf.length): Node {
  if (offset + 2 > limit) throw new DerError(`truncated DER at byte ${offset}`);
  const tag = buf[offset]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`unsupported high tag number at byte ${offset}`);
  let p = offset + 1;
  let len = buf[p++]!;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError(`unsupported length encoding at byte ${offset}`);
    if (p + n > limit) throw new DerError(`truncated DER length at byte ${offset}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++]!;
    if (len < 0x80 || (n > 1 && buf[p - n] === 0)) throw new DerError(`non-minimal DER length at byte ${offset}`);
  }
  const end = p + len;
  if (end > limit) throw new DerError(`DER element at byte ${offset} overruns its container`);
  return { tag, start: offset, contentStart: p, end };
}

/** The children of a constructed node. */
export function children(buf: Buffer, node: Node): Node[] {
  const out: Node[] = [];
  let p = node.contentStart;
  while (p < node.end) {
    const c = readNode(buf, p, node.end);
    out.push(c);
    p = c.end;
  }
  return out;
}

export function expectTag(node: Node | undefined, tag: number, what: string): Node {
  if (!node) throw new DerError(`${what}: missing`);
  if (node.tag !== tag) {
    throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, found 0x${node.tag.toString(16)} at byte ${node.start}`);
  }
  return node;
}

export const content = (buf: Buffer, n: Node) => buf.subarray(n.contentStart, n.end);
export const raw = (buf: Buffer, n: Node) => buf.subarray(n.start, n.end);

/** Dotted form of an OBJECT IDENTIFIER node. */
export function readOid(buf: Buffer, n: Node): string {
  const b = content(buf, n);
  if (b.length === 0) throw new DerError(`empty OID at byte ${n.start}`);
  const arcs: number[] = [];
  let v = 0;
  for (const byte of b) {
    v = v * 128 + (byte & 0x7f);
    if ((byte & 0x80) === 0) {
      if (arcs.length === 0) {
        const first = v < 40 ? 0 : v < 80 ? 1 : 2;
        arcs.push(first, v - first * 40);
      } else arcs.push(v);
      v = 0;
    }
  }
  return arcs.join(".");
}

/** UTCTime or GeneralizedTime (Z form) as a Date. */
export function readTime(buf: Buffer, n: Node): Date {
  const s = content(buf, n).toString("ascii");
  let m: RegExpExecArray | null;
  if (n.tag === TAG.utcTime && (m = /^(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    const yy = Number(m[1]);
    return new Date(Date.UTC(yy < 50 ? 2000 + yy : 1900 + yy, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  if (n.tag === TAG.generalizedTime && (m = /^(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)Z$/.exec(s))) {
    return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  }
  throw new DerError(`bad time "${s}" at byte ${n.start}`);
}

/** The bytes of a BIT STRING (the unused-bits count must be 0). */
export function readBitStringBytes(buf: Buffer, n: Node): Buffer {
  const b = content(buf, n);
  if (b.length === 0 || b[0] !== 0) throw new DerError(`BIT STRING at byte ${n.start} has unused bits`);
  return b.subarray(1);
}

// ---------------------------------------------------------------- PEM

export function toPem(label: string, der: Buffer): string {
  const b64 = der.toString("base64");
  let out = `-----BEGIN ${label}-----\n`;
  for (let i = 0; i < b64.length; i += 64) out += `${b64.slice(i, i + 64)}\n`;
  return `${out}-----END ${label}-----\n`;
}

const pemBlock = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** Every PEM block of `text` with its label. */
export function pemBlocks(text: string): Array<{ label: string; der: Buffer }> {
  const out: Array<{ label: string; der: Buffer }> = [];
  for (const m of text.matchAll(pemBlock)) {
    const body = m[2]!.replace(/\s+/g, "");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body)) throw new DerError(`PEM block "${m[1]}" is not valid base64`);
    out.push({ label: m[1]!, der: Buffer.from(body, "base64") });
  }
  return out;
}

/** The DER of the single PEM block labelled `label` (first of several). */
export function fromPem(text: string, label: string): Buffer {
  const block = pemBlocks(text).find((b) => b.label === label);
  if (!block) throw new DerError(`no "${label}" PEM block found`);
  return block.der;
}
