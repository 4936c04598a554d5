// Placeholder until the ca verb lands; replaced by the part that owns it.
import type { CliCommand } from "../command.js";

export const command: CliCommand = {
  help: "meshkey ca: not implemented yet",
  async run() {
    process.stderr.write("meshkey ca: not implemented yet\n");
    return 2;
  },
};
