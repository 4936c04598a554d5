// Placeholder until the render verb lands; replaced by the part that owns it.
import type { CliCommand } from "../command.js";

export const command: CliCommand = {
  help: "meshkey render: not implemented yet",
  async run() {
    process.stderr.write("meshkey render: not implemented yet\n");
    return 2;
  },
};
