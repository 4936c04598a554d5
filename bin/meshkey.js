#!/usr/bin/env node
// The meshkey CLI. Sources are TypeScript run through tsx's loader, so a fresh
// `npm ci` is all that is needed: no build step, no dist/ to go stale.
import { register } from "tsx/esm/api";

register();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
