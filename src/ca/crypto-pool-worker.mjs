// Entry of a crypto pool worker (see crypto-pool.ts) when the sources run as TypeScript:
// tsx's loader is registered per thread, so the worker registers it itself, as
// bin/meshkey.js does in the main thread and as the mesh parse worker does.
import { register } from "tsx/esm/api";

register();
await import("./crypto-pool-worker.ts");
