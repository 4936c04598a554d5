// Network and HTTP filters shared by sidecar and proxyless listeners.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { FilterSchema, ListenerFilterSchema, type Filter, type ListenerFilter } from "../../../gen/envoy/config/listener/v3/listener_components_pb.js";
import type { RouteConfigurationSchema } from "../../../gen/envoy/config/route/v3/route_pb.js";
import { RouterSchema } from "../../../gen/envoy/extensions/filters/http/router/v3/router_pb.js";
import { TlsInspectorSchema } from "../../../gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.js";
import {
  HttpConnectionManager_CodecType,
  HttpConnectionManagerSchema,
  HttpFilterSchema,
  type HttpConnectionManager,
} from "../../../gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.js";
import { TcpProxySchema } from "../../../gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.js";
import { adsConfigSource } from "./config-sources.js";

export const HCM_FILTER = "envoy.filters.network.http_connection_manager";
export const TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy";
export const ROUTER_FILTER = "envoy.filters.http.router";
export const TLS_INSPECTOR = "envoy.filters.listener.tls_inspector";

export function routerHttpFilter() {
  return create(HttpFilterSchema, {
    name: ROUTER_FILTER,
    configType: { case: "typedConfig", value: anyPack(RouterSchema, create(RouterSchema)) },
  });
}

/** HttpConnectionManager with RDS over ADS; the router filter last. */
export function rdsConnectionManager(statPrefix: string, routeConfigName: string): HttpConnectionManager {
  const hcm = create(HttpConnectionManagerSchema, {
    statPrefix,
    codecType: HttpConnectionManager_CodecType.AUTO,
    routeSpecifier: { case: "rds", value: { routeConfigName } },
  });
  if (hcm.routeSpecifier.case === "rds") hcm.routeSpecifier.value.configSource = adsConfigSource;
  hcm.httpFilters = [routerHttpFilter()];
  return hcm;
}

/** HttpConnectionManager with an inline route configuration; the router filter last. */
export function inlineConnectionManager(
  statPrefix: string,
  routeConfig: MessageInitShape<typeof RouteConfigurationSchema>,
): HttpConnectionManager {
  const hcm = create(HttpConnectionManagerSchema, {
    statPrefix,
    codecType: HttpConnectionManager_CodecType.AUTO,
    routeSpecifier: { case: "routeConfig", value: routeConfig },
  });
  hcm.httpFilters = [routerHttpFilter()];
  return hcm;
}

export function hcmFilter(hcm: HttpConnectionManager): Filter {
  return create(FilterSchema, {
    name: HCM_FILTER,
    configType: { case: "typedConfig", value: anyPack(HttpConnectionManagerSchema, hcm) },
  });
}

export function tcpProxyFilter(statPrefix: string, cluster: string): Filter {
  return create(FilterSchema, {
    name: TCP_PROXY_FILTER,
    configType: {
      case: "typedConfig",
      value: anyPack(TcpProxySchema, create(TcpProxySchema, { statPrefix, clusterSpecifier: { case: "cluster", value: cluster } })),
    },
  });
}

export function tlsInspector(): ListenerFilter {
  return create(ListenerFilterSchema, {
    name: TLS_INSPECTOR,
    configType: { case: "typedConfig", value: anyPack(TlsInspectorSchema, create(TlsInspectorSchema)) },
  });
}
