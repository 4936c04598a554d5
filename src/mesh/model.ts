// The validated, normalised mesh: what the translator reads. Every optional key of
// the YAML file has its default filled in here, so the translator never guesses.

export type Protocol = "HTTP" | "GRPC" | "TCP";
export type MtlsMode = "STRICT" | "PERMISSIVE" | "DISABLE";

export interface MeshLocality {
  region: string;
  zone: string;
  subZone: string;
}

export interface MeshEndpoint {
  /** IP address of the workload (the pod IP in Kubernetes terms). */
  address: string;
  /** The workload's own port (for a service with one port; see MeshService.ports). */
  port: number;
  /** Per service-port target ports, by port name (multi-port services). */
  ports: Record<string, number>;
  locality: MeshLocality;
  /** load_balancing_weight, >= 1. */
  weight: number;
}

export interface MeshPort {
  name: string;
  port: number;
  protocol: Protocol;
}

export interface MeshService {
  name: string;
  namespace: string;
  serviceAccount: string;
  ports: MeshPort[];
  endpoints: MeshEndpoint[];
  /** `<name>.<namespace>.svc.cluster.local` */
  host: string;
}

export interface MeshNamespace {
  name: string;
  mtls: MtlsMode;
}

export interface MeshModel {
  /** Every namespace declared or used by a service, sorted by name. */
  namespaces: MeshNamespace[];
  /** Sorted by namespace, then name. */
  services: MeshService[];
}

/** A mesh file that cannot be used: names the file, the line (when known) and the field path. */
export class MeshError extends Error {
  override name = "MeshError";
  constructor(
    readonly file: string,
    readonly line: number | undefined,
    readonly path: string,
    readonly detail: string,
  ) {
    super(`${file}${line !== undefined ? `:${line}` : ""}: ${path ? `${path}: ` : ""}${detail}`);
  }
}

export const SERVICE_DOMAIN = "svc.cluster.local";

export function serviceHost(name: string, namespace: string): string {
  return `${name}.${namespace}.${SERVICE_DOMAIN}`;
}

/** The port the workload listens on for `port` of `svc` at `ep`. */
export function targetPort(svc: MeshService, port: MeshPort, ep: MeshEndpoint): number {
  return ep.ports[port.name] ?? (svc.ports.length === 1 ? ep.port : port.port);
}

export function mtlsModeOf(mesh: MeshModel, namespace: string): MtlsMode {
  return mesh.namespaces.find((n) => n.name === namespace)?.mtls ?? "STRICT";
}
