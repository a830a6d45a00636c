//! emissions.csv (CodeCarbon header, read back with the csv crate), JSON, crash-safe appends.

use std::os::unix::fs::MetadataExt;

use forge_carbon::output::{append_csv, append_json, csv_header, read_json, CSV_FILE, JSON_FILE};
use forge_carbon::{track, CarbonConfig, Emissions};

/// CodeCarbon's EmissionsData fields (codecarbon/output_methods/emissions_data.py, 2.x), in order.
const CODECARBON_HEADER: &str = "timestamp,project_name,run_id,experiment_id,duration,emissions,emissions_rate,cpu_power,gpu_power,ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,country_name,country_iso_code,region,cloud_provider,cloud_region,os,python_version,codecarbon_version,cpu_count,cpu_model,gpu_count,gpu_model,longitude,latitude,ram_total_size,tracking_mode,on_cloud,pue";

fn run(dir: &std::path::Path, project: &str) -> Emissions {
    let cfg = CarbonConfig {
        project_name: project.into(),
        experiment_id: "exp-1".into(),
        country_iso: "DEU".into(),
        region: Some("hesse, \"frankfurt\"".into()),
        output_dir: Some(dir.to_path_buf()),
        use_rapl: false,
        use_nvml: false,
        ..CarbonConfig::default()
    };
    let (_, e) = track(&cfg, || {
        (0..300_000u64).fold(0u64, |a, i| a ^ i.wrapping_mul(31))
    })
    .unwrap();
    e
}

#[test]
fn csv_header_matches_codecarbon_and_reads_back() {
    assert_eq!(csv_header(), CODECARBON_HEADER);
    let d = tempfile::tempdir().unwrap();
    let e1 = run(d.path(), "first");
    let e2 = run(d.path(), "second, with comma");
    let path = d.path().join(CSV_FILE);
    let mut rdr = csv::Reader::from_path(&path).unwrap();
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(headers.join(","), CODECARBON_HEADER);
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    let col = |r: &csv::StringRecord, name: &str| -> String {
        r.get(headers.iter().position(|h| h == name).unwrap())
            .unwrap()
            .to_string()
    };
    for (r, e) in rows.iter().zip([&e1, &e2]) {
        assert_eq!(col(r, "project_name"), e.project_name);
        assert_eq!(col(r, "run_id"), e.run_id);
        assert_eq!(col(r, "experiment_id"), "exp-1");
        assert_eq!(col(r, "country_iso_code"), "DEU");
        assert_eq!(col(r, "country_name"), "Germany");
        assert_eq!(col(r, "region"), "hesse, \"frankfurt\"");
        assert_eq!(col(r, "tracking_mode"), "process");
        assert_eq!(col(r, "on_cloud"), "N");
        let f = |n: &str| col(r, n).parse::<f64>().unwrap();
        assert_eq!(f("duration"), e.duration_s);
        assert_eq!(f("emissions"), e.emissions_kg);
        assert_eq!(f("cpu_energy"), e.cpu_energy_kwh);
        assert_eq!(f("ram_energy"), e.ram_energy_kwh);
        assert_eq!(f("energy_consumed"), e.energy_kwh);
        assert_eq!(f("pue"), 1.0);
        assert!(f("cpu_energy") > 0.0);
        // CodeCarbon's identities: emissions = energy x CI; energy = sum of components x PUE.
        assert!((f("emissions") - f("energy_consumed") * 365.477 / 1000.0).abs() < 1e-18);
        assert!(
            (f("energy_consumed") - (f("cpu_energy") + f("gpu_energy") + f("ram_energy"))).abs()
                < 1e-18
        );
        assert_eq!(col(r, "cpu_count").parse::<usize>().unwrap(), e.cpu_count);
    }
    let json = read_json(&d.path().join(JSON_FILE)).unwrap();
    assert_eq!(json, vec![e1, e2]);
}

#[test]
fn appends_replace_the_file_by_rename_and_leave_no_temp_files() {
    let d = tempfile::tempdir().unwrap();
    let e = run(d.path(), "a");
    let path = d.path().join(CSV_FILE);
    let ino_before = std::fs::metadata(&path).unwrap().ino();
    append_csv(&path, &e).unwrap();
    let ino_after = std::fs::metadata(&path).unwrap().ino();
    assert_ne!(
        ino_before, ino_after,
        "the file is replaced atomically, never edited in place"
    );
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A crashed writer's temporary file does not disturb the next append.
    std::fs::write(
        d.path().join(".emissions.csv.999.dead.tmp"),
        "torn,half,row",
    )
    .unwrap();
    append_csv(&path, &e).unwrap();
    let n = csv::Reader::from_path(&path).unwrap().records().count();
    assert_eq!(n, 3);
}

#[test]
fn foreign_header_and_corrupt_json_are_backed_up() {
    let d = tempfile::tempdir().unwrap();
    let e = run(d.path(), "a");
    let csv_path = d.path().join("other.csv");
    std::fs::write(&csv_path, "timestamp,project_name,water_consumed\nx,y,z\n").unwrap();
    append_csv(&csv_path, &e).unwrap();
    let text = std::fs::read_to_string(&csv_path).unwrap();
    assert!(text.starts_with(CODECARBON_HEADER));
    assert_eq!(text.lines().count(), 2);
    let json_path = d.path().join("other.json");
    std::fs::write(&json_path, "{ not json").unwrap();
    append_json(&json_path, &e).unwrap();
    assert_eq!(read_json(&json_path).unwrap().len(), 1);
    let backups = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        .count();
    assert_eq!(backups, 2);
}

#[test]
fn concurrent_appends_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let e = run(d.path(), "a");
    let path = d.path().join("conc.csv");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    append_csv(&path, &e).unwrap();
                }
            });
        }
    });
    assert_eq!(csv::Reader::from_path(&path).unwrap().records().count(), 40);
}

#[test]
fn guard_records_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let cfg = CarbonConfig {
        output_dir: Some(d.path().to_path_buf()),
        use_nvml: false,
        ..CarbonConfig::default()
    };
    {
        let _g = forge_carbon::CarbonTracker::new(cfg.clone())
            .unwrap()
            .guard()
            .unwrap();
        std::hint::black_box((0..100_000u64).sum::<u64>());
    }
    let g = forge_carbon::CarbonTracker::new(cfg)
        .unwrap()
        .guard()
        .unwrap();
    let e = g.finish().unwrap();
    let recs = read_json(&d.path().join(JSON_FILE)).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[1].run_id, e.run_id);
}

#[test]
fn unwritable_output_keeps_the_measurement() {
    let d = tempfile::tempdir().unwrap();
    let blocker = d.path().join("not-a-dir");
    std::fs::write(&blocker, "file").unwrap();
    let cfg = CarbonConfig {
        output_dir: Some(blocker.join("sub")),
        use_nvml: false,
        ..CarbonConfig::default()
    };
    let mut t = forge_carbon::CarbonTracker::new(cfg).unwrap();
    t.start().unwrap();
    let e = t.stop().unwrap();
    assert!(
        e.warnings.iter().any(|w| w.contains("output not written")),
        "{:?}",
        e.warnings
    );
}
