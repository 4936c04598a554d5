// Prints the README's table of `meshkey serve` flags, generated from the option table in
// src/cli/serve-config.ts. `UPDATE_GOLDEN=1 npm test -- serve-flags-readme` writes it into README.md.
// Usage: node --import tsx scripts/serve-flags-table.ts
import { serveFlagsMarkdown } from "../src/cli/serve-flags-help.js";

process.stdout.write(serveFlagsMarkdown());
