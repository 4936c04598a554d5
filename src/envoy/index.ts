// Strict offline Envoy config validation (proto3 JSON + PGV rules + load-time
// cross-references), semantic diff, and golden-file helpers.
export { envoyTypeRegistry, envoyRegistryFiles } from "./type-registry.js";
export { type ValidationIssue, formatIssues } from "./issue-path.js";
export { validateMessage, type MessageVisitor } from "./validate-message.js";
export { compileFieldRules, compilePattern, type CompiledRules } from "./compile-rules.js";
export { ConfigSchemaError, fieldByJsonKey } from "./parse-message-json.js";
export {
  parseEnvoyConfig,
  detectConfigKind,
  type EnvoyConfigKind,
  type ParsedEnvoyConfig,
  type ParsedRoot,
  type ConfigResource,
} from "./envoy-config.js";
export {
  validateEnvoyConfig,
  validateParsedConfig,
  type ValidateEnvoyConfigOptions,
  type EnvoyConfigValidation,
} from "./validate-envoy-config.js";
export { parseConfigText, ConfigTextError } from "./parse-config-text.js";
export { diffEnvoyConfigs, formatDiff, type ConfigDiff, type DiffChange } from "./diff-envoy-configs.js";
export { expectGolden, pruneGoldens, canonicalConfigText, updatingGoldens, GoldenMismatchError } from "./golden.js";
export { canonicalMessageJson } from "./canonical-json.js";
export { redactSensitive } from "./redact-sensitive.js";
