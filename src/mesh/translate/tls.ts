// TLS transport sockets of a sidecar: the client side (UpstreamTlsContext, per
// destination SAN) and the server side (DownstreamTlsContext, client certs required).
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { TransportSocketSchema, type TransportSocket } from "../../../gen/envoy/config/core/v3/base_pb.js";
import { SubjectAltNameMatcher_SanType } from "../../../gen/envoy/extensions/transport_sockets/tls/v3/common_pb.js";
import {
  CommonTlsContextSchema,
  DownstreamTlsContextSchema,
  UpstreamTlsContextSchema,
  type CommonTlsContext,
} from "../../../gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.js";
import { DEFAULT_SECRET_NAME, ROOT_SECRET_NAME, trustDomainId } from "../../spiffe/index.js";
import { sdsSecret } from "./config-sources.js";
import type { TranslateOptions } from "./resource-set.js";

export const TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls";

function commonTls(
  opts: TranslateOptions,
  san: { exact: string } | { prefix: string },
  alpn: string[],
): CommonTlsContext {
  const ctx = create(CommonTlsContextSchema, {
    alpnProtocols: alpn,
    validationContextType: {
      case: "combinedValidationContext",
      value: {
        defaultValidationContext: {
          matchTypedSubjectAltNames: [
            {
              sanType: SubjectAltNameMatcher_SanType.URI,
              matcher: {
                matchPattern: "exact" in san ? { case: "exact", value: san.exact } : { case: "prefix", value: san.prefix },
              },
            },
          ],
        },
      },
    },
  });
  ctx.tlsCertificateSdsSecretConfigs = [sdsSecret(DEFAULT_SECRET_NAME, opts)];
  if (ctx.validationContextType.case === "combinedValidationContext") {
    ctx.validationContextType.value.validationContextSdsSecretConfig = sdsSecret(ROOT_SECRET_NAME, opts);
  }
  return ctx;
}

/** mTLS to a destination whose certificate must carry `spiffeId`. */
export function upstreamTlsSocket(opts: TranslateOptions, spiffeId: string, sni: string, alpn: string[]): TransportSocket {
  const ctx = create(UpstreamTlsContextSchema, { sni });
  ctx.commonTlsContext = commonTls(opts, { exact: spiffeId }, alpn);
  return create(TransportSocketSchema, {
    name: TLS_TRANSPORT_SOCKET,
    configType: { case: "typedConfig", value: anyPack(UpstreamTlsContextSchema, ctx) },
  });
}

/** mTLS server side: a client certificate from the trust domain is required. */
export function downstreamTlsSocket(opts: TranslateOptions, alpn: string[]): TransportSocket {
  const ctx = create(DownstreamTlsContextSchema, { requireClientCertificate: true });
  ctx.commonTlsContext = commonTls(opts, { prefix: `${trustDomainId(opts.trustDomain)}/` }, alpn);
  return create(TransportSocketSchema, {
    name: TLS_TRANSPORT_SOCKET,
    configType: { case: "typedConfig", value: anyPack(DownstreamTlsContextSchema, ctx) },
  });
}
