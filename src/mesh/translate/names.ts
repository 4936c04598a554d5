// Resource names, in Istio's spelling.
import type { MeshPort, MeshService } from "../model.js";

export const outboundClusterName = (port: number, host: string) => `outbound|${port}||${host}`;
export const inboundClusterName = (port: number) => `inbound|${port}||`;
export const outboundSni = (port: number, host: string) => `outbound_.${port}_._.${host}`;
export const inboundListenerName = (ip: string, port: number) => `inbound_${ip}_${port}`;
export const outboundListenerName = (bind: string, port: number) => `${bind}_${port}`;
/** Sidecar outbound HTTP routes are per port, as in Istio. */
export const sidecarRouteName = (port: number) => `${port}`;
/** Proxyless listeners, routes: `<host>:<port>`. */
export const proxylessName = (svc: MeshService, port: MeshPort) => `${svc.host}:${port.port}`;

export function alpnFor(protocol: MeshPort["protocol"]): string[] {
  return protocol === "GRPC" ? ["h2"] : ["istio-peer-exchange", "istio"];
}
