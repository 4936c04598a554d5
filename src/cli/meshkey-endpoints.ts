// The operator verbs' view of a running meshkey: its CSDS over gRPC (as istioctl
// reads istiod's) and its admin's JSON pages, and a live Envoy's admin. Every
// failure to reach one names the address and the flag that sets it.
import { createClient, ConnectError } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { ClientStatusDiscoveryService, type ClientStatusResponse } from "../../gen/envoy/service/status/v3/csds_pb.js";
import { UsageError } from "./command.js";
import { parseHostPort } from "./serve-config.js";
import { terminalSafe } from "./terminal-text.js";

export const DEFAULT_ADMIN = "127.0.0.1:15014";
export const DEFAULT_XDS = "127.0.0.1:15010";
/**
 * The admin's debug pages are paginated (500 items by default); the proxy tools
 * ask for the most a page gives (DEBUG_PAGE_MAX_LIMIT of src/admin), so that a
 * node agent with more identities than the default page is still read whole.
 */
export const DEBUG_SDS_LIMIT = 5_000;
const TIMEOUT_MS = 5_000;

/** meshkey or Envoy could not be reached or answered with an error: exit 1. */
export class UnreachableError extends Error {
  override name = "UnreachableError";
}

/** Checks a HOST:PORT flag value (a usage error names the flag). */
export function addressFlag(value: string, flag: string): string {
  parseHostPort(value, flag);
  return value;
}

export interface MeshkeyEndpoints {
  readonly admin: string;
  readonly xds: string;
  /** CSDS FetchClientStatus, all nodes or one. */
  clientStatus(nodeId?: string): Promise<ClientStatusResponse>;
  /** GET a JSON page of the admin server; `undefined` on 404 when allowed. */
  adminJson<T>(path: string, opts?: { allow404?: boolean }): Promise<T | undefined>;
}

export function meshkeyEndpoints(addresses: { admin: string; xds: string }): MeshkeyEndpoints {
  const { admin, xds } = addresses;
  return {
    admin,
    xds,
    async clientStatus(nodeId) {
      const client = createClient(ClientStatusDiscoveryService, createGrpcTransport({ baseUrl: `http://${xds}` }));
      try {
        return await client.fetchClientStatus(nodeId === undefined ? {} : { node: { id: nodeId } }, { signal: AbortSignal.timeout(TIMEOUT_MS) });
      } catch (err) {
        const ce = ConnectError.from(err);
        throw new UnreachableError(`cannot read meshkey's CSDS at ${xds} (--xds ADDR): ${terminalSafe(ce.rawMessage || ce.message)}`);
      }
    },
    async adminJson<T>(path: string, opts: { allow404?: boolean } = {}) {
      const res = await httpGet(`http://${admin}${path}`, `meshkey's admin at ${admin} (--admin ADDR)`);
      if (res.status === 404 && opts.allow404) return undefined;
      if (res.status !== 200) throw new UnreachableError(`meshkey's admin at ${admin} answered ${res.status} for ${path}: ${terminalSafe(res.body.slice(0, 200).trim())}`);
      return JSON.parse(res.body) as T;
    },
  };
}

/** One GET; a connection failure becomes an UnreachableError naming `what`. */
export async function httpGet(url: string, what: string): Promise<{ status: number; body: string }> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS), redirect: "error" });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new UnreachableError(`cannot reach ${what}: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  }
  return { status: res.status, body: await res.text() };
}

/** A live Envoy's admin base URL (`--envoy http://127.0.0.1:15000`). */
export function envoyUrlFlag(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--envoy: "${value}" is not a URL (e.g. http://127.0.0.1:15000)`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new UsageError(`--envoy: "${value}" is not an http(s) URL`);
  return url.href.replace(/\/$/, "");
}

/** GET a JSON page of a live Envoy's admin. */
export async function envoyAdminJson<T>(envoyUrl: string, path: string): Promise<T> {
  const res = await httpGet(`${envoyUrl}${path}`, `Envoy's admin at ${envoyUrl} (--envoy URL)`);
  if (res.status !== 200) throw new UnreachableError(`Envoy's admin at ${envoyUrl} answered ${res.status} for ${path}`);
  try {
    return JSON.parse(res.body) as T;
  } catch {
    throw new UnreachableError(`Envoy's admin at ${envoyUrl} did not answer JSON for ${path}`);
  }
}
