#!/usr/bin/env python3
"""`forge track` against CodeCarbon 3.3 on the same command, at the same time.

CodeCarbon's `codecarbon monitor` watches the whole machine until Ctrl-C and cannot run a command;
its per-command equivalent is an OfflineEmissionsTracker started before and stopped after
`subprocess.run(CMD)`. Here CodeCarbon's tracker wraps `forge track -- CMD`, so both tools watch
the same process tree over (almost) the same interval. Both are given the same full-load CPU power
(CodeCarbon's force_cpu_power = forge's --tdp, the power of all logical CPUs), country and PUE, so
only the way each one counts the tree's CPU time (and its RAM model) differs.

Machine mode: `codecarbon monitor --offline` runs in the background during `forge track
--tracking-mode machine -- CMD` and is stopped with SIGINT; the machine is shared, so both see
the other users' load.

Usage:  python compare_codecarbon.py FORGE_BINARY [TDP_W]
"""
import csv
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import resource
import time

from codecarbon import OfflineEmissionsTracker
import codecarbon

forge = sys.argv[1]
tdp = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
py = sys.executable
busy = f"{py} -c 'x=0\nfor i in range(12_000_000): x+=i'"
workloads = {
    "two long-lived CPU-bound children": f"{busy} & {busy} & wait",
    "60 short-lived children (~0.1 s each)": f"for i in $(seq 60); do {py} -c 'sum(range(10**6))'; done",
}
out = pathlib.Path(tempfile.mkdtemp(prefix="forge-vs-codecarbon-"))


def last_row(path):
    return list(csv.DictReader(open(path)))[-1]


print(f"CodeCarbon {codecarbon.__version__}; full-load CPU power {tdp} W for all logical CPUs; country USA; PUE 1; files in {out}\n")
print("| workload | mode | quantity | forge track | CodeCarbon 3.3 | forge / CodeCarbon | kernel reference |")
print("|---|---|---|---|---|---|---|")
n_cpu = os.cpu_count()
for name, script in workloads.items():
    # reference: the same work run alone, CPU time of the whole tree from the kernel (wait4)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["sh", "-c", script], check=True, capture_output=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    ref_cpu_s = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    ref_kwh = tdp / n_cpu * ref_cpu_s / 3.6e6
    cc = OfflineEmissionsTracker(country_iso_code="USA", tracking_mode="process", measure_power_secs=1,
                                 output_dir=str(out), output_file="cc.csv", log_level="error",
                                 force_cpu_power=tdp, project_name="codecarbon")
    cc.start()
    subprocess.run([forge, "track", "--country", "USA", "--tdp", str(tdp), "--output", str(out / "forge.csv"),
                    "--project", "forge", "--", "sh", "-c", script], check=True, capture_output=True)
    cc.stop()
    f, c = last_row(out / "forge.csv"), last_row(out / "cc.csv")
    for key, unit in [("duration", "s"), ("cpu_energy", "kWh"), ("ram_energy", "kWh"), ("energy_consumed", "kWh")]:
        a, b = float(f[key]), float(c[key])
        ref = f"{ref_kwh:.4g} ({ref_cpu_s:.2f} s CPU x {tdp / n_cpu:g} W)" if key == "cpu_energy" else ""
        print(f"| {name} | process | {key} ({unit}) | {a:.4g} | {b:.4g} | {a / b if b else float('nan'):.3f} | {ref} |")

# machine mode: codecarbon monitor in the background, forge track in the foreground
env = dict(os.environ, CODECARBON_FORCE_CPU_POWER=str(tdp), CODECARBON_OUTPUT_DIR=str(out),
           CODECARBON_OUTPUT_FILE="monitor.csv")
mon = subprocess.Popen([str(pathlib.Path(sys.executable).parent / "codecarbon"), "monitor", "--offline", "--country-iso-code", "USA", "--no-api",
                        "--measure-power-secs", "1"], cwd=out, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(8)  # CodeCarbon's start-up (imports, hardware detection)
script = workloads["two long-lived CPU-bound children"]
subprocess.run([forge, "track", "--tracking-mode", "machine", "--country", "USA", "--tdp", str(tdp),
                "--output", str(out / "forge-machine.csv"), "--", "sh", "-c", script], check=True, capture_output=True)
mon.send_signal(signal.SIGINT)
mon.wait(timeout=60)
f = last_row(out / "forge-machine.csv")
mfile = next(out.glob("monitor*.csv"), None) or out / "emissions.csv"
if mfile.exists():
    c = last_row(mfile)
    for key, unit in [("duration", "s"), ("cpu_power", "W"), ("ram_power", "W")]:
        a, b = float(f[key]), float(c[key])
        print(f"| two long-lived CPU-bound children | machine (`codecarbon monitor`) | {key} ({unit}) | {a:.4g} | {b:.4g} | {a / b if b else float('nan'):.3f} | |")
else:
    print(f"codecarbon monitor wrote no CSV in {out}: {sorted(p.name for p in out.iterdir())}")
