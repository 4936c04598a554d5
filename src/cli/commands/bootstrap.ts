// Placeholder until the bootstrap verb lands; replaced by the part that owns it.
import type { CliCommand } from "../command.js";

export const command: CliCommand = {
  help: "meshkey bootstrap: not implemented yet",
  async run() {
    process.stderr.write("meshkey bootstrap: not implemented yet\n");
    return 2;
  },
};
