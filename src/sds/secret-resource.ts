// SecretItem (cache) → Envoy Secret (wire), packed once per item.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack, type Any } from "@bufbuild/protobuf/wkt";
import { SecretSchema } from "../../gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.js";
import type { SecretItem } from "./secret-cache.js";

const encoder = new TextEncoder();
const packed = new WeakMap<SecretItem, Any>();

export function secretInit(item: SecretItem): MessageInitShape<typeof SecretSchema> {
  if (item.kind === "tlsCertificate") {
    return {
      name: item.name,
      type: {
        case: "tlsCertificate",
        value: {
          certificateChain: { specifier: { case: "inlineBytes", value: encoder.encode(item.certificateChainPem ?? "") } },
          privateKey: { specifier: { case: "inlineBytes", value: encoder.encode(item.privateKeyPem ?? "") } },
        },
      },
    };
  }
  return {
    name: item.name,
    type: {
      case: "validationContext",
      value: { trustedCa: { specifier: { case: "inlineBytes", value: encoder.encode(item.trustedCaPem ?? "") } } },
    },
  };
}

/** The item as a google.protobuf.Any holding an Envoy Secret (memoised per item). */
export function packSecret(item: SecretItem): Any {
  let any = packed.get(item);
  if (!any) {
    any = anyPack(SecretSchema, create(SecretSchema, secretInit(item)));
    packed.set(item, any);
  }
  return any;
}
