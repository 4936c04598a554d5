// Entry of the mesh parse worker (see mesh-parser.ts): the sources are TypeScript run
// through tsx, whose loader is registered per thread, so the worker registers it itself.
import { register } from "tsx/esm/api";

register();
await import("./mesh-parse-worker.ts");
