#!/usr/bin/env python3
"""Copy CodeCarbon's data tables into crates/forge-carbon/data/codecarbon/ (verbatim).

forge-carbon embeds these files (include_str!) and reads them with CodeCarbon's own rules
(src/intensity.rs, src/cpu.rs). The files are copied byte for byte so that a diff against a
newer CodeCarbon release shows exactly what changed. CodeCarbon is MIT licensed; its licence
text is copied next to the data.

Usage (any Python with codecarbon installed, e.g. `pip install codecarbon==3.3.2`):
    python crates/forge-carbon/scripts/update_codecarbon_data.py
"""
import hashlib
import importlib.metadata
import pathlib
import shutil

import codecarbon

FILES = [
    "data/private_infra/global_energy_mix.json",
    "data/private_infra/carbon_intensity_per_source.json",
    "data/private_infra/2023/usa_emissions.json",
    "data/private_infra/2023/canada_energy_mix.json",
    "data/private_infra/2023/china_provincial_emissions.json",
    "data/private_infra/nordic_emissions.json",
    "data/cloud/impact.csv",
    "data/hardware/cpu_power.csv",
]


def main() -> None:
    src = pathlib.Path(codecarbon.__file__).parent
    out = pathlib.Path(__file__).resolve().parent.parent / "data" / "codecarbon"
    out.mkdir(parents=True, exist_ok=True)
    version = importlib.metadata.version("codecarbon")
    dist = importlib.metadata.distribution("codecarbon")
    licence = next(f for f in dist.files if f.name == "LICENSE")
    shutil.copyfile(dist.locate_file(licence), out / "LICENSE")
    lines = [
        "# Data copied from CodeCarbon",
        "",
        f"Copied verbatim from the `codecarbon` {version} Python package (https://github.com/mlco2/codecarbon,",
        "MIT licence, see LICENSE in this folder) by `scripts/update_codecarbon_data.py`.",
        "CodeCarbon's own sources for each table are named inside the files (`_source` keys, `source` column)",
        "and in its methodology docs: Our World in Data / Ember energy mix (countries), EPA eGRID 2023 (US",
        "states), Canada Energy Regulator (provinces), MEE/NBS 2023 (Chinese provinces), Nordic bidding",
        "zones, cloud providers' published region figures, Intel ARK / AMD product pages (CPU TDP).",
        "",
        "| file (flattened name) | path in the codecarbon package | sha256 |",
        "|---|---|---|",
    ]
    for rel in FILES:
        name = pathlib.Path(rel).name
        data = (src / rel).read_bytes()
        (out / name).write_bytes(data)
        lines.append(f"| {name} | codecarbon/{rel} | {hashlib.sha256(data).hexdigest()} |")
    (out / "SOURCE.md").write_text("\n".join(lines) + "\n")
    print(f"copied {len(FILES)} files from codecarbon {version} into {out}")


if __name__ == "__main__":
    main()
