// Placeholder until the token verb lands; replaced by the part that owns it.
import type { CliCommand } from "../command.js";

export const command: CliCommand = {
  help: "meshkey token: not implemented yet",
  async run() {
    process.stderr.write("meshkey token: not implemented yet\n");
    return 2;
  },
};
