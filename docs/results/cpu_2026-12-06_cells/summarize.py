"""Vehicle AP@0.7 with its interval, the ledger's cells used / sent and the mean MCS of the
links that sent, per rule and SNR, from the sweeps' folders (the run's own paths)."""

import glob

from v2x.results import read_results

for name in ("segment_false", "segment_true", "cells_true"):
    folders = glob.glob(f"/tmp/cpu_main/out_{name}")
    if not folders:
        continue
    rows = read_results(folders).to_pylist()
    used: dict[str, list] = {}
    for r in read_results(folders, ledger=True).to_pylist():
        cell = used.setdefault(r["cell_id"], [0, 0, []])
        cell[0] += r["cells_used"]
        cell[1] += r["cells_sent"]
        if r["mcs"] == r["mcs"]:
            cell[2].append(r["mcs"])
    print(name)
    for r in sorted(rows, key=lambda r: r["snr_db"]):
        u, s, m = used[r["cell_id"]]
        mcs = sum(m) / len(m) if m else float("nan")
        print(
            f"  {r['snr_db']:5.0f} dB  vehAP70 {r['vehicle_ap_70']:.3f} "
            f"[{r['vehicle_ap_70_lo']:.3f}, {r['vehicle_ap_70_hi']:.3f}]  "
            f"cells used {int(u):7d} of sent {int(s):7d}  mean MCS {mcs:4.1f}"
        )
