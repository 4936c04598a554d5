import { Code, ConnectError } from "@connectrpc/connect";
import type { Node } from "../../../gen/envoy/config/core/v3/base_pb.js";
import type { WatchNode } from "../cache/watch.js";
import { TypeUrl } from "../resource/type-urls.js";

export function watchNodeOf(node: Node | undefined): WatchNode {
  if (!node || node.id === "") throw new ConnectError("the first request of a stream must carry node.id", Code.InvalidArgument);
  if (Buffer.byteLength(node.id, "utf8") > MAX_NODE_ID_BYTES) {
    throw new ConnectError(`node.id is longer than ${MAX_NODE_ID_BYTES} bytes (MAX_NODE_ID_BYTES)`, Code.InvalidArgument);
  }
  return { id: node.id, cluster: node.cluster, metadata: node.metadata ?? {} };
}

// The ADS wire limits, in one place.

/** Types one stream may subscribe to: bounds the per-stream state and queue. */
export const MAX_TYPES_PER_STREAM = 16;
/** Resource names in one request, and names one stream may watch per type (delta's initial_resource_versions included). */
export const MAX_NAMES_PER_REQUEST = 10_000;
/**
 * Longest resource name, in UTF-8 bytes. Names are built from Kubernetes names (each ≤ 253
 * characters), e.g. `outbound|<port>||<service>.<namespace>.svc.<domain>`; 1,024 leaves room.
 */
export const MAX_RESOURCE_NAME_BYTES = 1_024;
/** Longest node id, in UTF-8 bytes. */
export const MAX_NODE_ID_BYTES = 1_024;

/** The only type URLs ADS serves (anything else is INVALID_ARGUMENT). */
export const ADS_TYPE_URLS: ReadonlySet<string> = new Set([TypeUrl.Cluster, TypeUrl.Endpoint, TypeUrl.Listener, TypeUrl.Route]);

export function checkTypeUrl(typeUrl: string): void {
  if (typeUrl === "") throw new ConnectError("type_url is required on an ADS stream", Code.InvalidArgument);
  if (!ADS_TYPE_URLS.has(typeUrl)) {
    const shown = typeUrl.length > 128 ? `${typeUrl.slice(0, 128)}…` : typeUrl;
    throw new ConnectError(`unknown type_url "${shown}": ADS serves only ${[...ADS_TYPE_URLS].join(", ")} (ADS_TYPE_URLS)`, Code.InvalidArgument);
  }
}

/** Refuses more than MAX_NAMES_PER_REQUEST names (RESOURCE_EXHAUSTED) and any name above MAX_RESOURCE_NAME_BYTES (INVALID_ARGUMENT). */
export function checkResourceNames(names: readonly string[], what = "resource names"): void {
  if (names.length > MAX_NAMES_PER_REQUEST) {
    throw new ConnectError(`too many ${what} (${names.length} > ${MAX_NAMES_PER_REQUEST}, MAX_NAMES_PER_REQUEST)`, Code.ResourceExhausted);
  }
  for (const n of names) {
    if (n.length > MAX_RESOURCE_NAME_BYTES || Buffer.byteLength(n, "utf8") > MAX_RESOURCE_NAME_BYTES) {
      throw new ConnectError(
        `a resource name of ${Buffer.byteLength(n, "utf8")} bytes is longer than ${MAX_RESOURCE_NAME_BYTES} (MAX_RESOURCE_NAME_BYTES)`,
        Code.InvalidArgument,
      );
    }
  }
}
