import { Code, ConnectError } from "@connectrpc/connect";
import type { Node } from "../../../gen/envoy/config/core/v3/base_pb.js";
import type { WatchNode } from "../cache/watch.js";

export function watchNodeOf(node: Node | undefined): WatchNode {
  if (!node || node.id === "") throw new ConnectError("the first request of a stream must carry node.id", Code.InvalidArgument);
  return { id: node.id, cluster: node.cluster, metadata: node.metadata ?? {} };
}

/** Types one stream may subscribe to: bounds the per-stream state and queue. */
export const MAX_TYPES_PER_STREAM = 16;
/** Resource names in one request. */
export const MAX_NAMES_PER_REQUEST = 10_000;
