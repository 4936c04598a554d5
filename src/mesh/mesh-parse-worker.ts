// The mesh parse worker's body (started by mesh-parser.ts): parses one mesh file at a time
// and sends the model back in batches of services, each sent once the previous one is in,
// or the MeshError with its file, line, path and detail.
import { parentPort } from "node:worker_threads";
import { MeshError, type MeshService } from "./model.js";
import { parseMesh } from "./parse-mesh.js";
import type { FromParseWorker, ToParseWorker } from "./mesh-parser.js";

/** Services per message: small enough that receiving one (and the GC it causes) takes the main thread a few ms. */
const BATCH = 200;

const port = parentPort!;
const send = (m: FromParseWorker) => port.postMessage(m);
let sending: { id: number; services: MeshService[]; next: number; done: () => void } | undefined;

const sendBatch = () => {
  const s = sending!;
  if (s.next >= s.services.length) {
    sending = undefined;
    s.done();
    return;
  }
  send({ type: "services", id: s.id, services: s.services.slice(s.next, s.next + BATCH) });
  s.next += BATCH;
};

port.on("message", (m: ToParseWorker) => {
  if (m.type === "more") {
    if (sending?.id === m.id) sendBatch();
    return;
  }
  const text = typeof m.contents === "string" ? m.contents : Buffer.from(m.contents.buffer, m.contents.byteOffset, m.contents.byteLength).toString("utf8");
  try {
    const model = parseMesh(text, m.file);
    sending = { id: m.id, services: model.services, next: 0, done: () => send({ type: "done", id: m.id, namespaces: model.namespaces }) };
    sendBatch();
  } catch (err) {
    const e = err instanceof MeshError ? err : new MeshError(m.file, undefined, "", `cannot parse: ${(err as Error).message}`);
    send({ type: "error", id: m.id, file: e.file, line: e.line, path: e.path, detail: e.detail });
  }
});
send({ type: "ready" });
