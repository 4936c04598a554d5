// meshkey's version, from its package.json (`meshkey --version`, meshkey_build_info).
import { readFileSync } from "node:fs";

export const MESHKEY_VERSION: string = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }
).version;
