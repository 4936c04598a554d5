// Reads a config file's text as JSON or YAML. Errors name the file and, where
// the parser knows it, the line and column.
import { parseDocument } from "yaml";

/** A config file that is neither valid JSON nor valid YAML. */
export class ConfigTextError extends Error {
  override name = "ConfigTextError";
  constructor(
    message: string,
    readonly file: string,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(message);
  }
}

function lineColumn(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let last = -1;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      last = i;
    }
  }
  return { line, column: offset - last };
}

/**
 * Parses `text` (the contents of `file`) as JSON when it starts with `{` or `[`,
 * otherwise as YAML (duplicate keys rejected). Returns plain JSON values.
 */
export function parseConfigText(text: string, file: string): unknown {
  const body = text.replace(/^\uFEFF/, "");
  const first = /\S/.exec(body)?.[0];
  if (first === undefined) throw new ConfigTextError(`${file}: empty file`, file);
  if (first === "{" || first === "[") {
    try {
      return JSON.parse(body);
    } catch (err) {
      const msg = (err as Error).message;
      const pos = /position (\d+)/.exec(msg);
      if (pos) {
        const { line, column } = lineColumn(body, Number(pos[1]));
        throw new ConfigTextError(`${file}:${line}:${column}: invalid JSON: ${msg.replace(/ in JSON at position \d+.*$/s, "")}`, file, line, column);
      }
      throw new ConfigTextError(`${file}: invalid JSON: ${msg}`, file);
    }
  }
  const doc = parseDocument(body, { uniqueKeys: true, prettyErrors: true });
  const err = doc.errors[0];
  if (err) {
    const lp = err.linePos?.[0];
    const where = lp ? `:${lp.line}:${lp.col}` : "";
    throw new ConfigTextError(`${file}${where}: invalid YAML: ${(err.message.split("\n")[0] ?? "").replace(/ at line \d+, column \d+:?$/, "")}`, file, lp?.line, lp?.col);
  }
  return doc.toJS({ maxAliasCount: 100 });
}
