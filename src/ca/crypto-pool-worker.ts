// The body of a crypto pool worker (started by crypto-pool.ts): makes workload keys and
// CSRs, and for the CA verifies a CSR's self-signature and signs a TBSCertificate with a
// CA key it was sent as a KeyObject (cloned in memory, never written anywhere).
import type { KeyObject } from "node:crypto";
import { parentPort } from "node:worker_threads";
import { createKeyAndCsr } from "./key-and-csr.js";
import { parseCsr, signTbs, signingKeyOf, verifyCsr, type SigningKey } from "./x509.js";
import { ownBytes, type FromCryptoWorker, type ToCryptoWorker } from "./crypto-pool.js";

const port = parentPort!;
const send = (m: FromCryptoWorker) => port.postMessage(m);
const signers = new Map<number, SigningKey>();

const u8 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength);

async function run(m: Extract<ToCryptoWorker, { type: "job" }>): Promise<void> {
  const { id, job } = m;
  try {
    if (job.kind === "keyAndCsr") {
      send({ type: "done", id, value: await createKeyAndCsr(job.keyType) });
      return;
    }
    const signer = signers.get(job.signer);
    if (!signer) throw new Error(`no signing key #${job.signer} in this worker`);
    try {
      verifyCsr(parseCsr(u8(job.csrDer)));
    } catch (err) {
      send({ type: "failed", id, invalid: true, message: (err as Error).message });
      return;
    }
    send({ type: "done", id, value: ownBytes(signTbs(signer, u8(job.tbs))) });
  } catch (err) {
    send({ type: "failed", id, invalid: false, message: (err as Error).message });
  }
}

port.on("message", (m: ToCryptoWorker) => {
  if (m.type === "key") {
    signers.set(m.id, signingKeyOf(m.key as KeyObject));
    return;
  }
  void run(m);
});
send({ type: "ready" });
