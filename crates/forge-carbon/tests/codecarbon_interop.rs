//! One emissions.csv shared by CodeCarbon 3.3 and Forge, in both orders, with files made by
//! CodeCarbon 3.3.2 itself (tests/fixtures/make_interop_csv.py).

use forge_carbon::output::{append_csv, read_csv, CODECARBON_COLUMNS};
use forge_carbon::{CarbonConfig, CarbonTracker};

fn forge_run(dir: &std::path::Path, project: &str) -> forge_carbon::Emissions {
    let cfg = CarbonConfig {
        project_name: project.into(),
        country_iso: "FRA".into(),
        pue: 1.2,
        use_rapl: false,
        use_nvml: false,
        ..CarbonConfig::default()
    }
    .output_dir(dir);
    let mut t = CarbonTracker::new(cfg).unwrap();
    t.start().unwrap();
    std::hint::black_box((0..200_000u64).map(|i| i ^ (i >> 3)).sum::<u64>());
    t.stop().unwrap()
}

/// Every row has the header's cells, every identity CodeCarbon writes holds.
fn check_consistent(path: &std::path::Path, n: usize) -> Vec<forge_carbon::output::CsvRow> {
    let text = std::fs::read_to_string(path).unwrap();
    assert_eq!(text.lines().next().unwrap(), CODECARBON_COLUMNS.join(","));
    let rows = read_csv(path).unwrap();
    assert_eq!(rows.len(), n);
    for r in &rows {
        assert_eq!(r.cells.len(), CODECARBON_COLUMNS.len());
        let e = r.f64("energy_consumed").unwrap();
        let sum = r.f64("cpu_energy").unwrap()
            + r.f64("gpu_energy").unwrap()
            + r.f64("ram_energy").unwrap();
        assert!(
            (e - sum).abs() <= 1e-12 * e.max(1e-12),
            "{e} vs {sum} in {:?}",
            r.get("project_name")
        );
        assert!(r.f64("pue").unwrap() >= 1.0);
        assert!(matches!(
            r.get("tracking_mode"),
            Some("machine" | "process")
        ));
        assert!(r.get("run_id").unwrap().len() == 36);
    }
    let backups = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        .count();
    assert_eq!(backups, 0, "nobody moved the file aside");
    rows
}

#[test]
fn forge_appends_to_a_file_written_by_codecarbon() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("emissions.csv");
    std::fs::copy("tests/fixtures/codecarbon_3.3.2.csv", &path).unwrap();
    let e = forge_run(d.path(), "forge-after-codecarbon");
    let rows = check_consistent(&path, 3);
    assert_eq!(rows[0].get("project_name"), Some("codecarbon-a"));
    assert_eq!(rows[0].get("codecarbon_version"), Some("3.3.2"));
    let f = &rows[2];
    assert_eq!(f.get("run_id"), Some(e.run_id.as_str()));
    assert_eq!(f.f64("energy_consumed"), Some(e.energy_kwh));
    assert_eq!(f.f64("pue"), Some(1.2));
    // CodeCarbon applies PUE per component; so does Forge: RAM power is 1.2 x the model.
    assert!((f.f64("ram_power").unwrap() - e.ram_power_w).abs() < 1e-15);
    assert_eq!(
        f.get("water_consumed"),
        Some(""),
        "no WUE set: not estimated"
    );
}

#[test]
fn codecarbon_appended_to_a_file_started_by_forge_and_forge_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("emissions.csv");
    std::fs::copy("tests/fixtures/forge_then_codecarbon.csv", &path).unwrap();
    let rows = check_consistent(&path, 2);
    assert!(rows[0].get("project_name").unwrap().starts_with("forge"));
    assert_eq!(rows[1].get("project_name"), Some("codecarbon-after-forge"));
    assert_eq!(rows[1].get("codecarbon_version"), Some("3.3.2"));
    forge_run(d.path(), "forge-again");
    let rows = check_consistent(&path, 3);
    assert_eq!(rows[2].get("project_name"), Some("forge-again"));
}

#[test]
fn codecarbon_rows_keep_their_bytes() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("emissions.csv");
    std::fs::copy("tests/fixtures/codecarbon_3.3.2.csv", &path).unwrap();
    let before = std::fs::read(&path).unwrap();
    let e = forge_run(d.path(), "x");
    append_csv(&path, &e).unwrap();
    let after = std::fs::read(&path).unwrap();
    assert!(after.starts_with(&before));
}
