"""Per-film table of the 55 full-resolution radiographs, before and after, from a benchmarks.age_protocol JSON.

    python -m benchmarks.fullres_table docs/results/age_protocol.json

One row per film: id, registered or raw, true age, and each model's prediction and error (months). The JSON holds
the predictions age_protocol made (its command is in BENCHMARKS.md); nothing is re-run or typed here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    results = json.loads(Path(argv[0]).read_text())
    from benchmarks.age_protocol import registered_mask, protocol_sets

    rsna = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rsna"
    _, full = protocol_sets(rsna)
    reg = dict(zip([s.id for s in full], registered_mask(full)))
    names = [Path(r["model"]).name for r in results]
    print("| id | film | true | " + " | ".join(f"{n} pred (err)" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    first = results[0]["fullres"]
    for k, fid in enumerate(first["ids"]):
        cells = []
        for r in results:
            f = r["fullres"]
            j = f["ids"].index(fid)
            cells.append(f"{f['pred'][j]:.1f} ({f['pred'][j] - f['true'][j]:+.1f})")
        print(f"| {fid} | {'registered' if reg.get(fid) else 'raw'} | {first['true'][k]:.0f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
