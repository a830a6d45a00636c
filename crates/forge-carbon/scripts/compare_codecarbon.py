#!/usr/bin/env python3
"""Side by side: forge-carbon and CodeCarbon 3.3 on the same CPU-bound workload.

CodeCarbon's OfflineEmissionsTracker wraps the run of the Forge example binary
(`examples/codecarbon_side_by_side.rs`), which busy-loops one thread for SECONDS while tracking
itself with forge-carbon. So both tools watch the same machine over (almost) the same interval:
CodeCarbon's interval is longer by the start-up of the child process (reported as `duration`).
Both append to ONE emissions.csv (Forge's row first, then CodeCarbon's), which also exercises
the shared-file compatibility.

Same settings on both sides: country USA, PUE 1, tracking_mode MODE, 1 s sampling, and in
machine mode the same full-load CPU power (CodeCarbon's force_cpu_power = Forge's tdp_w).

Usage:
    cargo build --release -p forge-carbon --example codecarbon_side_by_side
    python crates/forge-carbon/scripts/compare_codecarbon.py SECONDS MODE [TDP_W]
e.g. `... 20 machine 8` and `... 20 process 8`; TDP_W "-" lets each tool pick its own.
"""
import csv
import json
import os
import pathlib
import subprocess
import sys
import tempfile

from codecarbon import OfflineEmissionsTracker

root = pathlib.Path(__file__).resolve().parents[3]
seconds = sys.argv[1] if len(sys.argv) > 1 else "20"
mode = sys.argv[2] if len(sys.argv) > 2 else "machine"
tdp = sys.argv[3] if len(sys.argv) > 3 else "-"
target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
binary = target / "release" / "examples" / "codecarbon_side_by_side"
out = pathlib.Path(tempfile.mkdtemp(prefix="carbon-compare-"))

kwargs = dict(
    country_iso_code="USA",
    tracking_mode=mode,
    measure_power_secs=1,
    output_dir=str(out),
    project_name=f"codecarbon-{mode}",
    log_level="error",
    pue=1.0,
)
if tdp != "-":
    kwargs["force_cpu_power"] = float(tdp)
tracker = OfflineEmissionsTracker(**kwargs)
tracker.start()
proc = subprocess.run([str(binary), seconds, mode, tdp, str(out)], capture_output=True, text=True, check=True)
tracker.stop()

rows = list(csv.DictReader(open(out / "emissions.csv")))
assert len(rows) == 2, f"one file, two rows expected: {len(rows)}"
forge, cc = rows[0], rows[1]
assert forge["project_name"].startswith("forge") and cc["project_name"].startswith("codecarbon")
record = json.loads(proc.stdout.strip().splitlines()[-1])

print(f"\n## {mode} mode, {seconds} s single-thread busy loop, TDP {tdp} W, country USA (file {out/'emissions.csv'})\n")
print("| quantity | Forge | CodeCarbon 3.3 | Forge / CodeCarbon |")
print("|---|---|---|---|")
for key, unit in [("duration", "s"), ("cpu_power", "W"), ("ram_power", "W"), ("cpu_energy", "kWh"),
                  ("ram_energy", "kWh"), ("energy_consumed", "kWh"), ("emissions", "kg"),
                  ("cpu_utilization_percent", "%")]:
    f, c = float(forge[key] or "nan"), float(cc[key] or "nan")
    ratio = f / c if c else float("nan")
    print(f"| {key} ({unit}) | {f:.4g} | {c:.4g} | {ratio:.3f} |")
print(f"\nForge components: {json.dumps(record['components'])}")
print(f"CodeCarbon: cpu_model={cc['cpu_model']!r} ram_total_size={cc['ram_total_size']} tracking_mode={cc['tracking_mode']} codecarbon_version={cc['codecarbon_version']}")
