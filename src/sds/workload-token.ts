// Where Envoy puts the workload's token on an SDS call: the binary metadata header
// set by the file-based-metadata call credentials (Istio's spelling, and the
// misspelling of Istio 1.1), else a standard `authorization: Bearer` header.
import { decodeBinaryHeader } from "@connectrpc/connect";
import { SDS_TOKEN_HEADERS } from "../spiffe/index.js";

/** The token carried by a call, or undefined when there is none. Never logged. */
export function extractWorkloadToken(headers: Headers): string | undefined {
  for (const name of SDS_TOKEN_HEADERS) {
    const raw = headers.get(name);
    if (raw === null || raw.trim() === "") continue;
    // Several values arrive joined by ", "; the first one counts.
    const first = raw.split(",")[0]!.trim();
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(decodeBinaryHeader(first));
    } catch {
      continue;
    }
    const token = stripBearer(text.trim());
    if (token) return token;
  }
  const auth = headers.get("authorization");
  if (auth !== null) {
    const m = /^\s*bearer\s+(\S+)\s*$/i.exec(auth);
    if (m) return m[1];
  }
  return undefined;
}

function stripBearer(value: string): string {
  const m = /^bearer\s+(\S+)$/i.exec(value);
  return m ? m[1]! : value;
}
