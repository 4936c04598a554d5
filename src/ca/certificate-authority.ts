// The certificate authority: a self-signed root kept in the state directory
// (created once, reloaded on every start) or a plugged-in Istio `cacerts`
// intermediate, and the hot path that turns a verified CSR plus an
// authenticated identity into a SPIFFE leaf certificate.
import * as crypto from "node:crypto";
import { promisify } from "node:util";
import { join } from "node:path";
import { DerError, fromPem, octetString, pemBlocks, toPem, readNode, children, content, TAG, expectTag } from "./der.js";
import { InvalidRequestError, StateDirError } from "./errors.js";
import type { CryptoPool, PoolSigningKey } from "./crypto-pool.js";
import { spiffeIdOf, type WorkloadIdentity } from "../spiffe/index.js";
import { checkTrustDomain, invalidIdentityReason, type KeyType } from "./identity.js";
import { createExclusive, ensureStateDir, readIfExists, readPrivateKeyIfExists } from "./state-files.js";
import {
  EMPTY_NAME,
  KU,
  OID,
  authorityKeyIdentifier,
  basicConstraints,
  buildCertificate,
  buildTbsCertificate,
  extKeyUsage,
  extension,
  keyIdentifier,
  keyUsage,
  name,
  parseCertificate,
  parseCsr,
  randomSerial,
  signingKeyOf,
  signTbs,
  subjectAltName,
  verifyCsr,
  type ParsedCsr,
  type SigningKey,
  type SubjectAltNames,
} from "./x509.js";

export interface CertificateAuthorityOptions {
  stateDir: string;
  trustDomain: string;
  /** Root key type when a root is created (ec-p256 by default). */
  keyType?: KeyType;
  /** Istio cacerts: ca-cert.pem ca-key.pem root-cert.pem cert-chain.pem. */
  pluginCertsDir?: string;
  /** Default leaf TTL (24h). */
  certTtlSeconds?: number;
  /** Largest TTL a caller may ask for (90d). */
  maxCertTtlSeconds?: number;
  /**
   * Verify CSRs and sign leaves on these worker threads (the signing key is handed to them in
   * memory). Default: on the calling thread, as signSync does.
   */
  cryptoPool?: CryptoPool;
}

export interface CertificateAuthority {
  readonly trustDomain: string;
  /** PEM of the root certificate (trust anchor) that validates every issued chain. */
  readonly rootCertPem: string;
  /** Signs a PEM PKCS#10 CSR for the identity. Returns PEMs: leaf, intermediates…, root (one element each). */
  sign(csrPem: string, identity: WorkloadIdentity, ttlSeconds?: number): Promise<string[]>;
  /**
   * Issues a TLS server certificate (fresh P-256 key) for one of meshkey's own endpoints (the CA
   * server, the mTLS ADS server). Only a CA that holds its signing key in this process has it
   * (openCertificateAuthority's); see canIssueServerCertificates.
   */
  issueServerCertificate?(sans: SubjectAltNames, ttlSeconds?: number): IssuedServerCertificate;
}

export interface IssuedServerCertificate {
  /** Leaf then intermediates (what a TLS server sends). */
  certChainPem: string;
  privateKeyPem: string;
}

export const DEFAULT_CERT_TTL_SECONDS = 24 * 3600;
export const DEFAULT_MAX_CERT_TTL_SECONDS = 90 * 24 * 3600;
/** notBefore is moved back this much (at most) for clients whose clocks run behind. */
export const BACKDATE_SECONDS = 5 * 60;
export const ROOT_VALIDITY_SECONDS = 10 * 365 * 24 * 3600;

export const ROOT_CERT_FILE = "root-cert.pem";
export const ROOT_KEY_FILE = "root-key.pem";

const generateKeyPair = promisify(crypto.generateKeyPair);

export async function generatePrivateKey(keyType: KeyType): Promise<crypto.KeyObject> {
  if (keyType === "ec-p256") return crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" }).privateKey;
  if (keyType === "rsa-2048") return (await generateKeyPair("rsa", { modulusLength: 2048 })).privateKey;
  throw new Error(`unknown key type "${String(keyType)}" (use ec-p256 or rsa-2048)`);
}

/** The certificate that signs leaves, with everything precomputed for the hot path. */
interface Issuer {
  signer: SigningKey;
  subject: Buffer;
  notBefore: Date;
  notAfter: Date;
  /** Pre-encoded extensions shared by every leaf (basic constraints, key usage, EKU, AKI). */
  leafExtensions: Buffer[];
  /** PEMs after the leaf: intermediates, then the root. */
  chainAfterLeaf: string[];
  rootPem: string;
}

const LEAF_BASIC_CONSTRAINTS = extension(OID.basicConstraints, true, basicConstraints(false));
const LEAF_KEY_USAGE = extension(OID.keyUsage, true, keyUsage([KU.digitalSignature, KU.keyEncipherment]));
const LEAF_EKU = extension(OID.extKeyUsage, false, extKeyUsage([OID.serverAuth, OID.clientAuth]));

function makeIssuer(signer: SigningKey, certDer: Buffer, chainAfterLeaf: string[], rootPem: string): Issuer {
  const cert = parseCertificate(certDer);
  const ski = cert.extensions.get(OID.subjectKeyIdentifier);
  const keyId = ski ? content(ski.value, expectTag(readNode(ski.value), TAG.octetString, "subjectKeyIdentifier")) : keyIdentifier(cert.spki);
  const aki = extension(OID.authorityKeyIdentifier, false, authorityKeyIdentifier(Buffer.from(keyId)));
  return {
    signer,
    subject: cert.subject,
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    leafExtensions: [LEAF_BASIC_CONSTRAINTS, LEAF_KEY_USAGE, LEAF_EKU, aki],
    chainAfterLeaf,
    rootPem,
  };
}

/** Leaf validity: backdated by up to 5 min (not before the issuer's), never past the issuer's notAfter. */
function validity(issuer: Issuer, ttlSeconds: number): { notBefore: Date; notAfter: Date } {
  const now = Math.floor(Date.now() / 1000) * 1000;
  const back = Math.min(BACKDATE_SECONDS * 1000, Math.floor(ttlSeconds * 1000 / 2));
  const notBefore = new Date(Math.max(now - back, issuer.notBefore.getTime()));
  const notAfter = new Date(Math.min(now + ttlSeconds * 1000, issuer.notAfter.getTime()));
  if (notAfter.getTime() <= now) throw new Error("the CA signing certificate has expired; it cannot issue certificates");
  return { notBefore, notAfter };
}

export class BuiltinCertificateAuthority implements CertificateAuthority {
  readonly rootCertPem: string;
  readonly #issuer: Issuer;
  readonly #defaultTtl: number;
  readonly #maxTtl: number;
  readonly #pooled: PoolSigningKey | undefined;

  constructor(
    readonly trustDomain: string,
    issuer: Issuer,
    defaultTtl: number,
    maxTtl: number,
    pool?: CryptoPool,
  ) {
    this.#issuer = issuer;
    this.rootCertPem = issuer.rootPem;
    this.#defaultTtl = defaultTtl;
    this.#maxTtl = maxTtl;
    this.#pooled = pool?.addSigningKey(issuer.signer.key);
  }

  get defaultTtlSeconds(): number {
    return this.#defaultTtl;
  }
  get maxTtlSeconds(): number {
    return this.#maxTtl;
  }

  /** With a crypto pool, the CSR check and the signature run on a worker; the rest (cheap) here. */
  async sign(csrPem: string, identity: WorkloadIdentity, ttlSeconds?: number): Promise<string[]> {
    const pooled = this.#pooled;
    if (!pooled) return this.signSync(csrPem, identity, ttlSeconds);
    const { der, csr, ttl } = this.#readRequest(csrPem, identity, ttlSeconds);
    const tbs = this.#leafTbs(csr.spki, { uris: [spiffeIdOf(this.trustDomain, identity)] }, ttl, this.#issuer.leafExtensions);
    const leaf = await pooled.verifyCsrAndSign(der, tbs);
    return [toPem("CERTIFICATE", leaf), ...this.#issuer.chainAfterLeaf];
  }

  /** The hot path, synchronous: parse + verify the CSR, build and sign the leaf. */
  signSync(csrPem: string, identity: WorkloadIdentity, ttlSeconds?: number): string[] {
    const { csr, ttl } = this.#readRequest(csrPem, identity, ttlSeconds);
    try {
      verifyCsr(csr);
    } catch (err) {
      throw new InvalidRequestError(`bad CSR: ${(err as Error).message}`);
    }
    const leaf = this.#issue(csr.spki, { uris: [spiffeIdOf(this.trustDomain, identity)] }, ttl, this.#issuer.leafExtensions);
    return [toPem("CERTIFICATE", leaf), ...this.#issuer.chainAfterLeaf];
  }

  /** The identity, the TTL and the parsed CSR (its signature not yet checked); throws InvalidRequestError. */
  #readRequest(csrPem: string, identity: WorkloadIdentity, ttlSeconds: number | undefined): { der: Buffer; csr: ParsedCsr; ttl: number } {
    const invalid = invalidIdentityReason(identity);
    if (invalid) throw new InvalidRequestError(`cannot issue a certificate: ${invalid}`);
    const ttl = this.#ttl(ttlSeconds);
    try {
      const der = csrDerOf(csrPem);
      return { der, csr: parseCsr(der), ttl };
    } catch (err) {
      throw new InvalidRequestError(`bad CSR: ${(err as Error).message}`);
    }
  }

  #ttl(ttlSeconds: number | undefined): number {
    if (ttlSeconds === undefined || ttlSeconds === 0) return this.#defaultTtl;
    if (!Number.isFinite(ttlSeconds) || ttlSeconds < 0) {
      throw new InvalidRequestError(`invalid certificate TTL ${ttlSeconds}s: must be a positive number of seconds`);
    }
    if (ttlSeconds > this.#maxTtl) {
      throw new InvalidRequestError(`requested certificate TTL ${ttlSeconds}s is above the maximum of ${this.#maxTtl}s`);
    }
    return Math.max(1, Math.floor(ttlSeconds));
  }

  #issue(spki: Buffer, sans: SubjectAltNames, ttl: number, extensions: Buffer[]): Buffer {
    return signTbs(this.#issuer.signer, this.#leafTbs(spki, sans, ttl, extensions));
  }

  #leafTbs(spki: Buffer, sans: SubjectAltNames, ttl: number, extensions: Buffer[]): Buffer {
    const { notBefore, notAfter } = validity(this.#issuer, ttl);
    return buildTbsCertificate({
      serial: randomSerial(),
      signer: this.#issuer.signer,
      issuer: this.#issuer.subject,
      notBefore,
      notAfter,
      subject: EMPTY_NAME,
      spki,
      extensions: [
        extension(OID.subjectAltName, true, subjectAltName(sans)),
        extension(OID.subjectKeyIdentifier, false, octetString(keyIdentifier(spki))),
        ...extensions,
      ],
    });
  }

  /** A TLS server certificate (fresh P-256 key) for one of meshkey's own endpoints (default TTL 1 year). */
  issueServerCertificate(sans: SubjectAltNames, ttlSeconds = 365 * 24 * 3600): IssuedServerCertificate {
    const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    const spki = publicKey.export({ format: "der", type: "spki" });
    const leaf = this.#issue(spki, sans, ttlSeconds, this.#issuer.leafExtensions);
    const intermediates = this.#issuer.chainAfterLeaf.slice(0, -1);
    return {
      certChainPem: [toPem("CERTIFICATE", leaf), ...intermediates].join(""),
      privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    };
  }
}

function csrDerOf(csrPem: string): Buffer {
  if (typeof csrPem !== "string" || csrPem.length === 0) throw new DerError("empty CSR");
  if (csrPem.length > 64 * 1024) throw new DerError("CSR larger than 64 KiB");
  const blocks = pemBlocks(csrPem);
  const block = blocks.find((b) => b.label === "CERTIFICATE REQUEST" || b.label === "NEW CERTIFICATE REQUEST");
  if (!block) throw new DerError('no "CERTIFICATE REQUEST" PEM block found');
  return block.der;
}

// ---------------------------------------------------------------- root

function buildRoot(key: crypto.KeyObject, trustDomain: string): Buffer {
  const signer = signingKeyOf(key);
  const spki = crypto.createPublicKey(key).export({ format: "der", type: "spki" });
  const subject = name([[OID.organization, trustDomain]]);
  const now = Math.floor(Date.now() / 1000) * 1000;
  const keyId = keyIdentifier(spki);
  return buildCertificate({
    serial: randomSerial(),
    signer,
    issuer: subject,
    notBefore: new Date(now - BACKDATE_SECONDS * 1000),
    notAfter: new Date(now + ROOT_VALIDITY_SECONDS * 1000),
    subject,
    spki,
    extensions: [
      extension(OID.basicConstraints, true, basicConstraints(true)),
      extension(OID.keyUsage, true, keyUsage([KU.digitalSignature, KU.keyCertSign, KU.cRLSign])),
      extension(OID.subjectKeyIdentifier, false, octetString(keyId)),
    ],
  });
}

export interface LoadedRoot {
  certPem: string;
  key: crypto.KeyObject;
  created: boolean;
}

/**
 * The trust domain a root made by meshkey was created for (its subject O), or undefined
 * when the certificate has no O. Throws StateDirError when the PEM is not a certificate.
 */
export function rootTrustDomainOf(certPem: string, where = "root certificate"): string | undefined {
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(certPem);
  } catch (err) {
    throw new StateDirError(`${where}: cannot read the root certificate: ${(err as Error).message}`);
  }
  const o = cert.subject.split("\n").find((line) => line.startsWith("O="));
  return o?.slice(2);
}

/** The root certificate PEM in `stateDir`, or undefined when there is none yet. */
export async function readRootCertPem(stateDir: string): Promise<string | undefined> {
  return readIfExists(join(stateDir, ROOT_CERT_FILE));
}

/**
 * Loads the root from `stateDir`, creating it only when no root exists. The key
 * file is created first; a key without a certificate (a crash in between) gets
 * its certificate made from that same key. A certificate without its key is an error.
 */
export async function loadOrCreateRoot(stateDir: string, trustDomain: string, keyType: KeyType): Promise<LoadedRoot> {
  await ensureStateDir(stateDir);
  const keyPath = join(stateDir, ROOT_KEY_FILE);
  const certPath = join(stateDir, ROOT_CERT_FILE);
  let created = false;
  let keyPem = await readPrivateKeyIfExists(keyPath);
  let certPem = await readIfExists(certPath);
  if (certPem !== undefined && keyPem === undefined) {
    throw new StateDirError(`${certPath} exists but its key ${keyPath} is missing; restore it (a new root is never minted over an existing one)`);
  }
  if (keyPem === undefined) {
    const key = await generatePrivateKey(keyType);
    const pem = key.export({ format: "pem", type: "pkcs8" }).toString();
    if (await createExclusive(keyPath, pem)) created = true;
    keyPem = (await readPrivateKeyIfExists(keyPath))!;
  }
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(keyPem);
  } catch (err) {
    throw new StateDirError(`${keyPath}: cannot read the root key (restore it; a new root is never minted over an existing one): ${(err as Error).message}`);
  }
  if (certPem === undefined) {
    const der = buildRoot(key, trustDomain);
    if (await createExclusive(certPath, toPem("CERTIFICATE", der))) created = true;
    certPem = (await readIfExists(certPath))!;
  }
  let cert: crypto.X509Certificate;
  try {
    cert = new crypto.X509Certificate(certPem);
  } catch (err) {
    throw new StateDirError(`${certPath}: cannot read the root certificate (restore it; a new root is never minted over an existing one): ${(err as Error).message}`);
  }
  if (!cert.checkPrivateKey(key)) throw new StateDirError(`${keyPath} does not match the public key of ${certPath}`);
  return { certPem: toPem("CERTIFICATE", fromPem(certPem, "CERTIFICATE")), key, created };
}

// ---------------------------------------------------------------- plugged-in CA (Istio cacerts)

async function readRequired(dir: string, file: string): Promise<string> {
  const text = await readIfExists(join(dir, file));
  if (text === undefined) throw new Error(`plugin certs: ${join(dir, file)} is missing`);
  return text;
}

function certsOf(text: string, where: string): crypto.X509Certificate[] {
  const blocks = pemBlocks(text).filter((b) => b.label === "CERTIFICATE");
  if (blocks.length === 0) throw new Error(`plugin certs: ${where} holds no CERTIFICATE`);
  return blocks.map((b, i) => {
    try {
      return new crypto.X509Certificate(b.der);
    } catch (err) {
      throw new Error(`plugin certs: certificate #${i + 1} of ${where} cannot be read: ${(err as Error).message}`);
    }
  });
}

/**
 * Whether `cert` may sign certificates, as OpenSSL judges it (`X509Certificate.ca`:
 * basicConstraints CA:TRUE and, when keyUsage is present, keyCertSign), and if not, why.
 */
function isCaCert(cert: crypto.X509Certificate): { ok: boolean; why: string } {
  if (cert.ca) return { ok: true, why: "" };
  return { ok: false, why: whyNotCa(cert.raw) };
}

/** The reason for an error message only: the decision is OpenSSL's (isCaCert). */
function whyNotCa(der: Buffer): string {
  try {
    const { extensions } = parseCertificate(der);
    const bc = extensions.get(OID.basicConstraints);
    if (!bc) return "it has no basicConstraints extension (CA:TRUE required)";
    const [first] = children(bc.value, readNode(bc.value));
    const caTrue = first?.tag === TAG.boolean && content(bc.value, first)[0] !== 0x00;
    if (!caTrue) return "its basicConstraints say CA:FALSE";
    if (extensions.has(OID.keyUsage)) return "its keyUsage lacks keyCertSign";
  } catch {
    // an extension OpenSSL read and this parser cannot: the generic reason below
  }
  return "OpenSSL does not accept it as a CA (basicConstraints CA:TRUE and, with keyUsage, keyCertSign required)";
}

export async function loadPluginCerts(dir: string): Promise<{ key: crypto.KeyObject; certDer: Buffer; chainAfterLeaf: string[]; rootPem: string }> {
  const caCertPem = await readRequired(dir, "ca-cert.pem");
  const caKeyPem = await readRequired(dir, "ca-key.pem");
  const rootText = await readRequired(dir, "root-cert.pem");
  const chainText = await readIfExists(join(dir, "cert-chain.pem"));

  const [caCert] = certsOf(caCertPem, join(dir, "ca-cert.pem"));
  const [root] = certsOf(rootText, join(dir, "root-cert.pem"));
  const caDer = caCert!.raw;
  const ca = isCaCert(caCert!);
  if (!ca.ok) throw new Error(`plugin certs: ${join(dir, "ca-cert.pem")} is not a CA certificate: ${ca.why}; it cannot sign workload certificates`);
  let key: crypto.KeyObject;
  try {
    key = crypto.createPrivateKey(caKeyPem);
  } catch (err) {
    throw new Error(`plugin certs: ${join(dir, "ca-key.pem")} cannot be read: ${(err as Error).message}`);
  }
  if (!caCert!.checkPrivateKey(key)) {
    throw new Error(`plugin certs: ${join(dir, "ca-key.pem")} does not match the public key of ${join(dir, "ca-cert.pem")}`);
  }
  const now = Date.now();
  if (new Date(caCert!.validTo).getTime() <= now) throw new Error(`plugin certs: ${join(dir, "ca-cert.pem")} has expired (${caCert!.validTo})`);

  // Intermediates between ca-cert and the root, from cert-chain.pem (which in
  // Istio's layout starts with ca-cert itself and may end with the root).
  const chain = chainText ? certsOf(chainText, join(dir, "cert-chain.pem")) : [];
  const intermediates = chain.filter((c) => !c.raw.equals(caDer) && !c.raw.equals(root!.raw));
  const path = [caCert!, ...intermediates, root!];
  for (let i = 0; i < path.length - 1; i++) {
    const child = path[i]!;
    const parent = path[i + 1]!;
    if (!child.checkIssued(parent) || !child.verify(parent.publicKey)) {
      throw new Error(
        `plugin certs: the chain does not verify: "${child.subject.replace(/\n/g, ", ")}" is not signed by "${parent.subject.replace(/\n/g, ", ")}" (check cert-chain.pem and root-cert.pem)`,
      );
    }
  }
  const pem = (c: crypto.X509Certificate) => toPem("CERTIFICATE", c.raw);
  const rootPem = pem(root!);
  const same = caDer.equals(root!.raw);
  return { key, certDer: caDer, chainAfterLeaf: same ? [rootPem] : [...path.slice(0, -1).map(pem), rootPem], rootPem };
}

// ---------------------------------------------------------------- factory

export async function openCertificateAuthority(options: CertificateAuthorityOptions): Promise<CertificateAuthority> {
  checkTrustDomain(options.trustDomain);
  const defaultTtl = options.certTtlSeconds ?? DEFAULT_CERT_TTL_SECONDS;
  const maxTtl = options.maxCertTtlSeconds ?? DEFAULT_MAX_CERT_TTL_SECONDS;
  if (!(defaultTtl > 0)) throw new Error(`certificate TTL must be positive (got ${defaultTtl}s)`);
  if (!(maxTtl >= defaultTtl)) throw new Error(`maximum certificate TTL ${maxTtl}s is below the default TTL ${defaultTtl}s`);
  let issuer: Issuer;
  if (options.pluginCertsDir) {
    const p = await loadPluginCerts(options.pluginCertsDir);
    issuer = makeIssuer(signingKeyOf(p.key), p.certDer, p.chainAfterLeaf, p.rootPem);
  } else {
    const root = await loadOrCreateRoot(options.stateDir, options.trustDomain, options.keyType ?? "ec-p256");
    issuer = makeIssuer(signingKeyOf(root.key), fromPem(root.certPem, "CERTIFICATE"), [root.certPem], root.certPem);
  }
  return new BuiltinCertificateAuthority(options.trustDomain, issuer, defaultTtl, maxTtl, options.cryptoPool);
}
