// go-control-plane's Snapshot.Consistent: every resource a snapshot's resources
// refer to (by type and name) is in the snapshot. Knows names, not contents.
import type { Snapshot } from "./snapshot.js";

/** Dangling references, as readable problems (empty when consistent). */
export function snapshotConsistency(snapshot: Snapshot): string[] {
  const problems: string[] = [];
  for (const t of snapshot.types.values()) {
    for (const r of t.resources.values()) {
      for (const ref of r.references) {
        if (!snapshot.get(ref.typeUrl)?.resources.has(ref.name)) {
          problems.push(`${r.typeUrl.split("/").pop()} "${r.name}" refers to missing ${ref.typeUrl.split("/").pop()} "${ref.name}"`);
        }
      }
    }
  }
  return problems;
}
