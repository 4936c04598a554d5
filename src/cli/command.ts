import { parseArgs, type ParseArgsConfig } from "node:util";
import { didYouMean } from "./suggest.js";

/** One verb of the CLI. `run` returns the process exit code. */
export interface CliCommand {
  /** Usage text with at least one example, printed for --help. */
  readonly help: string;
  run(argv: string[]): Promise<number>;
}

/** A usage error: the CLI prints it with the verb's help and exits 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/**
 * parseArgs with strict checking, turning node's errors into UsageError so that
 * every verb reports bad flags the same way (exit 2).
 */
export function parseFlags<T extends ParseArgsConfig["options"]>(
  argv: string[],
  options: T,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const unknown = /^Unknown option '(-{1,2})([^']+)'/.exec(e.message);
    if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && unknown) {
      const flag = unknown[2]!.split("=")[0]!;
      throw new UsageError(`unknown flag ${unknown[1]}${flag}${didYouMean(flag, Object.keys(options ?? {}), "--")}`);
    }
    if (e.code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") {
      throw new UsageError(e.message.replace(/\. To specify a positional argument starting with a '-'.*$/s, ""));
    }
    throw new UsageError(e.message);
  }
}

/** Runs a verb body, mapping UsageError to exit 2 and other errors to exit 1, on stderr. */
export async function runCommand(help: string, body: () => Promise<number>): Promise<number> {
  try {
    return await body();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`meshkey: ${err.message}\n\n${help}\n`);
      return 2;
    }
    process.stderr.write(`meshkey: ${(err as Error).message}\n`);
    return 1;
  }
}
