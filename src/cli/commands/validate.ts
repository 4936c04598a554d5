// Placeholder until the validate verb lands; replaced by the part that owns it.
import type { CliCommand } from "../command.js";

export const command: CliCommand = {
  help: "meshkey validate: not implemented yet",
  async run() {
    process.stderr.write("meshkey validate: not implemented yet\n");
    return 2;
  },
};
