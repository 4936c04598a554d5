// Placeholder until the serve verb lands; replaced by the part that owns it.
import type { CliCommand } from "../command.js";

export const command: CliCommand = {
  help: "meshkey serve: not implemented yet",
  async run() {
    process.stderr.write("meshkey serve: not implemented yet\n");
    return 2;
  },
};
