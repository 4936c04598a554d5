// Placeholder until the demo verb lands; replaced by the part that owns it.
import type { CliCommand } from "../command.js";

export const command: CliCommand = {
  help: "meshkey demo: not implemented yet",
  async run() {
    process.stderr.write("meshkey demo: not implemented yet\n");
    return 2;
  },
};
