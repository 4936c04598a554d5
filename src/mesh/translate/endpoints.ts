// EDS: one ClusterLoadAssignment per service port, endpoints grouped by locality.
import { create } from "@bufbuild/protobuf";
import {
  ClusterLoadAssignmentSchema,
  type ClusterLoadAssignment,
} from "../../../gen/envoy/config/endpoint/v3/endpoint_pb.js";
import type { LocalityLbEndpointsSchema } from "../../../gen/envoy/config/endpoint/v3/endpoint_components_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { targetPort, type MeshEndpoint, type MeshPort, type MeshService } from "../model.js";

export function socketAddress(address: string, port: number) {
  return { address: { case: "socketAddress" as const, value: { address, portSpecifier: { case: "portValue" as const, value: port } } } };
}

/** Callers connect to the workload's own port on its IP (a sidecar's inbound listener takes it). */
export function loadAssignment(
  clusterName: string,
  svc: MeshService,
  port: MeshPort,
): ClusterLoadAssignment {
  const groups = new Map<string, MeshEndpoint[]>();
  for (const ep of svc.endpoints) {
    const key = JSON.stringify([ep.locality.region, ep.locality.zone, ep.locality.subZone]);
    groups.set(key, [...(groups.get(key) ?? []), ep]);
  }
  const endpoints: MessageInitShape<typeof LocalityLbEndpointsSchema>[] = [...groups.keys()].sort().map((key) => {
    const eps = groups.get(key)!;
    const l = eps[0]!.locality;
    return {
      locality: { region: l.region, zone: l.zone, subZone: l.subZone },
      loadBalancingWeight: eps.reduce((sum, e) => sum + e.weight, 0),
      lbEndpoints: eps.map((e) => ({
        hostIdentifier: { case: "endpoint" as const, value: { address: socketAddress(e.address, targetPort(svc, port, e)) } },
        loadBalancingWeight: e.weight,
      })),
    };
  });
  return create(ClusterLoadAssignmentSchema, { clusterName, endpoints });
}
