// JSON schema (ajv) of the mesh file. Keys from ARCHITECTURE.md stay; new keys are optional.
const name = { type: "string", pattern: "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", maxLength: 63 };
const port = { type: "integer", minimum: 1, maximum: 65535 };

export const meshSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    namespaces: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name"],
        properties: {
          name,
          mtls: { enum: ["STRICT", "PERMISSIVE", "DISABLE"] },
        },
      },
    },
    services: {
      type: "array",
      items: {
        type: "object",
        additionalProperties: false,
        required: ["name", "namespace", "ports"],
        properties: {
          name,
          namespace: name,
          serviceAccount: { type: "string", pattern: "^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$", maxLength: 253 },
          ports: {
            type: "array",
            minItems: 1,
            items: {
              type: "object",
              additionalProperties: false,
              required: ["port"],
              properties: {
                name: { type: "string", minLength: 1, maxLength: 63 },
                port,
                protocol: { enum: ["HTTP", "GRPC", "TCP"] },
              },
            },
          },
          endpoints: {
            type: "array",
            items: {
              type: "object",
              additionalProperties: false,
              required: ["address"],
              properties: {
                address: { type: "string", format: "ipv4-or-ipv6" },
                port,
                ports: { type: "object", additionalProperties: port },
                weight: { type: "integer", minimum: 1, maximum: 1_000_000 },
                locality: {
                  type: "object",
                  additionalProperties: false,
                  properties: {
                    region: { type: "string" },
                    zone: { type: "string" },
                    subZone: { type: "string" },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
} as const;
