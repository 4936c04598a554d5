// The `meshkey serve` flag list, as --help prints it and as the README's table shows it, both
// from the option table in serve-config.ts.
import { fileKeyOf, serveOptions, type ServeOptionSpec } from "./serve-config.js";

interface FlagRow {
  /** `--flag ARG` */
  readonly usage: string;
  /** The YAML key, or undefined for --config itself. */
  readonly fileKey: string | undefined;
  readonly help: string;
  /** Shown as the default; undefined when there is none to show. */
  readonly defaultValue: string | undefined;
  /** True when defaultValue is prose, not a literal value. */
  readonly defaultIsText: boolean;
  /** A flag without a value (`--no-sds`): --help shows no default, it is off unless given. */
  readonly isSwitch: boolean;
}

const configRow: FlagRow = {
  usage: "--config FILE",
  fileKey: undefined,
  help: "YAML file with these options, keyed by flag name (a --no-X flag is key X: false); flags win over the file, the file over the defaults",
  defaultValue: undefined,
  defaultIsText: false,
  isSwitch: false,
};

function rowOf(option: ServeOptionSpec): FlagRow {
  const arg = option.kind === "enum" ? option.values.join("|") : option.arg;
  let defaultValue: string | undefined;
  switch (option.kind) {
    case "enable":
      defaultValue = "false";
      break;
    case "disable":
      defaultValue = "true";
      break;
    default:
      defaultValue = option.default === undefined ? undefined : String(option.default);
  }
  return {
    usage: arg === undefined ? `--${option.flag}` : `--${option.flag} ${arg}`,
    fileKey: fileKeyOf(option),
    help: option.help,
    defaultValue: option.defaultText ?? defaultValue,
    defaultIsText: option.defaultText !== undefined,
    isSwitch: option.kind === "enable" || option.kind === "disable",
  };
}

const rows: readonly FlagRow[] = [configRow, ...serveOptions.map(rowOf)];

/** Words of `text` in lines of at most `width` characters (a longer word gets a line of its own). */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter((w) => w !== "")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line === "" ? word : `${line} ${word}`;
    }
  }
  if (line !== "") lines.push(line);
  return lines;
}

const USAGE_COLUMN = 25;
const HELP_WIDTH = 100;

/**
 * The flag list of `meshkey serve --help`: one flag a paragraph, help text wrapped beside it,
 * the default in brackets.
 */
export function serveFlagsHelp(): string {
  const indent = " ".repeat(2 + USAGE_COLUMN);
  const out: string[] = [];
  for (const row of rows) {
    const shownDefault = row.isSwitch || row.defaultValue === undefined ? "" : ` [${row.defaultValue}]`;
    const text = wrap(`${row.help}${shownDefault}`, HELP_WIDTH - indent.length);
    if (row.usage.length < USAGE_COLUMN) {
      out.push(`  ${row.usage.padEnd(USAGE_COLUMN)}${text[0] ?? ""}`.trimEnd());
      text.shift();
    } else {
      out.push(`  ${row.usage}`);
    }
    for (const line of text) out.push(`${indent}${line}`);
  }
  return `${out.join("\n")}\n`;
}

/** A code span in a markdown table cell: pipes escaped, as GitHub's tables need even there. */
function code(text: string): string {
  return `\`${text.replace(/\|/g, "\\|")}\``;
}

/** Prose in a markdown table cell: pipes escaped, and `<` so that `<td>` is not read as HTML. */
function prose(text: string): string {
  return text.replace(/[|<]/g, "\\$&");
}

/** The README's table of `meshkey serve` flags (GitHub markdown). */
export function serveFlagsMarkdown(): string {
  const lines = ["| flag | YAML key | default | what |", "| --- | --- | --- | --- |"];
  for (const row of rows) {
    const key = row.fileKey === undefined ? "" : code(row.fileKey);
    const dflt = row.defaultValue === undefined ? "" : row.defaultIsText ? prose(row.defaultValue) : code(row.defaultValue);
    lines.push(`| ${code(row.usage)} | ${key} | ${dflt} | ${prose(row.help)} |`);
  }
  return `${lines.join("\n")}\n`;
}
