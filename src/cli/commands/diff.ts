// Placeholder until the diff verb lands; replaced by the part that owns it.
import type { CliCommand } from "../command.js";

export const command: CliCommand = {
  help: "meshkey diff: not implemented yet",
  async run() {
    process.stderr.write("meshkey diff: not implemented yet\n");
    return 2;
  },
};
