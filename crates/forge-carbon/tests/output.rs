//! emissions.csv (CodeCarbon 3.3 header, read back with the csv crate), JSON Lines, O(1)
//! crash-safe appends, torn-line repair, journal recovery, stale temp files.

use forge_carbon::output::{
    append_csv, append_json, append_record, csv_header, read_csv, read_json, CODECARBON_2X_COLUMNS,
    CODECARBON_COLUMNS, CSV_FILE, JSON_FILE,
};
use forge_carbon::{track, CarbonConfig, Emissions, TrackingMode};

/// CodeCarbon 3.3.2's EmissionsData fields (codecarbon/output_methods/emissions_data.py), in order.
const CODECARBON_33_HEADER: &str = "timestamp,project_name,run_id,experiment_id,duration,emissions,emissions_rate,cpu_power,gpu_power,ram_power,cpu_energy,gpu_energy,ram_energy,energy_consumed,water_consumed,country_name,country_iso_code,region,cloud_provider,cloud_region,os,python_version,codecarbon_version,cpu_count,cpu_model,gpu_count,gpu_model,longitude,latitude,ram_total_size,tracking_mode,cpu_utilization_percent,gpu_utilization_percent,ram_utilization_percent,ram_used_gb,on_cloud,pue,wue";

fn config(dir: &std::path::Path, project: &str) -> CarbonConfig {
    CarbonConfig {
        project_name: project.into(),
        experiment_id: "exp-1".into(),
        country_iso: "DEU".into(),
        region: Some("hesse, \"frankfurt\"".into()),
        output_dir: Some(dir.to_path_buf()),
        use_rapl: false,
        use_nvml: false,
        ..CarbonConfig::default()
    }
}

fn run(dir: &std::path::Path, project: &str) -> Emissions {
    let (_, e) = track(&config(dir, project), || {
        (0..300_000u64).fold(0u64, |a, i| a ^ i.wrapping_mul(31))
    })
    .unwrap();
    e
}

fn record(project: &str) -> Emissions {
    let cfg = CarbonConfig {
        output_dir: None,
        ..config(std::path::Path::new("."), project)
    };
    track(&cfg, || ()).unwrap().1
}

#[test]
fn csv_header_is_codecarbon_33_and_reads_back() {
    assert_eq!(csv_header(), CODECARBON_33_HEADER);
    let d = tempfile::tempdir().unwrap();
    let e1 = run(d.path(), "first");
    let e2 = run(d.path(), "second, with comma");
    let path = d.path().join(CSV_FILE);
    let mut rdr = csv::Reader::from_path(&path).unwrap();
    let headers: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(headers.join(","), CODECARBON_33_HEADER);
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
        // No WUE configured: water is not estimated, and the cells say nothing.
        assert_eq!(col(r, "water_consumed"), "");
        assert_eq!(col(r, "wue"), "");
        let f = |n: &str| col(r, n).parse::<f64>().unwrap();
        assert_eq!(f("duration"), e.duration_s);
        assert_eq!(f("emissions"), e.emissions_kg);
        assert_eq!(f("cpu_energy"), e.cpu_energy_kwh);
        assert_eq!(f("ram_energy"), e.ram_energy_kwh);
        assert_eq!(f("energy_consumed"), e.energy_kwh);
        assert_eq!(f("pue"), 1.0);
        assert_eq!(f("gpu_utilization_percent"), 0.0);
        assert!(f("cpu_energy") > 0.0);
        // CodeCarbon's identities: emissions = energy x CI; energy = sum of components.
        let ci = e.carbon_intensity_g_per_kwh;
        assert!((f("emissions") - f("energy_consumed") * ci / 1000.0).abs() < 1e-18);
        assert!(
            (f("energy_consumed") - (f("cpu_energy") + f("gpu_energy") + f("ram_energy"))).abs()
                < 1e-18
        );
        assert_eq!(col(r, "cpu_count").parse::<usize>().unwrap(), e.cpu_count);
    }
    let json = read_json(&d.path().join(JSON_FILE)).unwrap();
    assert_eq!(json, vec![e1.clone(), e2]);
    assert_eq!(json[0].tracking_mode, TrackingMode::Process);
    assert!(json[0]
        .components
        .iter()
        .any(|c| c.component == "cpu" && c.assumed_w.is_some()));
    let rows = read_csv(&path).unwrap();
    assert_eq!(rows[0].get("run_id"), Some(e1.run_id.as_str()));
}

#[test]
fn appends_are_in_place_and_leave_no_temp_or_journal_files() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), "a");
    let path = d.path().join(CSV_FILE);
    let before = std::fs::read(&path).unwrap();
    run(d.path(), "b");
    let after = std::fs::read(&path).unwrap();
    assert!(
        after.starts_with(&before),
        "appends never rewrite earlier bytes"
    );
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".forge-")), "{names:?}");
}

#[test]
fn torn_last_lines_are_cut_and_reported() {
    let d = tempfile::tempdir().unwrap();
    run(d.path(), "a");
    let csv_path = d.path().join(CSV_FILE);
    let json_path = d.path().join(JSON_FILE);
    // A kill in the middle of a write leaves a line without its newline.
    let mut c = std::fs::read_to_string(&csv_path).unwrap();
    c.push_str("2026-01-01T00:00:00,torn,ab");
    std::fs::write(&csv_path, &c).unwrap();
    let mut j = std::fs::read_to_string(&json_path).unwrap();
    j.push_str("{\"timestamp\":\"2026");
    std::fs::write(&json_path, &j).unwrap();
    let e = run(d.path(), "b");
    assert!(
        e.warnings.iter().any(|w| w.contains("torn")),
        "{:?}",
        e.warnings
    );
    let rows = read_csv(&csv_path).unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].get("project_name"), Some("b"));
    assert_eq!(read_json(&json_path).unwrap().len(), 2);
    // A file holding only a torn header starts afresh.
    let p = d.path().join("only-torn-header.csv");
    std::fs::write(&p, "timestamp,proj").unwrap();
    append_csv(&p, &e).unwrap();
    assert!(std::fs::read_to_string(&p)
        .unwrap()
        .starts_with(CODECARBON_33_HEADER));
    assert_eq!(read_csv(&p).unwrap().len(), 1);
}

#[test]
fn an_interrupted_append_is_completed_by_the_next_one() {
    let d = tempfile::tempdir().unwrap();
    let csv_path = d.path().join(CSV_FILE);
    let json_path = d.path().join(JSON_FILE);
    let first = record("first");
    append_record(&csv_path, &json_path, &first).unwrap();
    // Simulate a crash after the journal and the JSON line were written, before the CSV row.
    let lost = record("lost");
    let journal = serde_json::json!({
        "record": lost,
        "csv_len": std::fs::metadata(&csv_path).unwrap().len(),
        "json_len": std::fs::metadata(&json_path).unwrap().len(),
    });
    let mut line = serde_json::to_string(&lost).unwrap();
    line.push('\n');
    let mut j = std::fs::read_to_string(&json_path).unwrap();
    j.push_str(&line);
    std::fs::write(&json_path, j).unwrap();
    std::fs::write(
        d.path().join(".forge-pending-emissions.csv.json"),
        journal.to_string(),
    )
    .unwrap();
    let third = record("third");
    let notes = append_record(&csv_path, &json_path, &third).unwrap();
    assert!(notes.iter().any(|n| n.contains("interrupted")), "{notes:?}");
    let csv_ids: Vec<String> = read_csv(&csv_path)
        .unwrap()
        .iter()
        .map(|r| r.get("run_id").unwrap().to_string())
        .collect();
    let json_ids: Vec<String> = read_json(&json_path)
        .unwrap()
        .into_iter()
        .map(|e| e.run_id)
        .collect();
    let want = vec![first.run_id, lost.run_id, third.run_id];
    assert_eq!(csv_ids, want);
    assert_eq!(json_ids, want, "the JSON line is not duplicated");
    assert!(!d.path().join(".forge-pending-emissions.csv.json").exists());
}

#[test]
fn older_generations_are_appended_in_their_own_columns() {
    let d = tempfile::tempdir().unwrap();
    let e = record("x");
    // A CodeCarbon 2.x / Forge 0.1 file: 32 columns.
    let old = d.path().join("old.csv");
    std::fs::write(&old, format!("{}\n", CODECARBON_2X_COLUMNS.join(","))).unwrap();
    append_csv(&old, &e).unwrap();
    let text = std::fs::read_to_string(&old).unwrap();
    assert!(text.starts_with(&CODECARBON_2X_COLUMNS.join(",")));
    let rows = read_csv(&old).unwrap();
    assert_eq!(rows[0].cells.len(), 32);
    assert_eq!(rows[0].get("run_id"), Some(e.run_id.as_str()));
    // Columns in another order (CodeCarbon compares headers as sets): values follow the file.
    let shuffled = d.path().join("shuffled.csv");
    let mut cols: Vec<&str> = CODECARBON_COLUMNS.to_vec();
    cols.reverse();
    std::fs::write(&shuffled, format!("{}\r\n", cols.join(","))).unwrap();
    append_csv(&shuffled, &e).unwrap();
    let r = &read_csv(&shuffled).unwrap()[0];
    assert_eq!(r.f64("energy_consumed"), Some(e.energy_kwh));
    assert_eq!(r.get("tracking_mode"), Some("process"));
    assert!(std::fs::read_to_string(&shuffled)
        .unwrap()
        .ends_with("\r\n"));
    let backups = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        .count();
    assert_eq!(backups, 0, "CodeCarbon generations are never moved aside");
}

#[test]
fn foreign_header_is_backed_up() {
    let d = tempfile::tempdir().unwrap();
    let e = record("a");
    let csv_path = d.path().join("other.csv");
    std::fs::write(&csv_path, "timestamp,project_name,my_col\nx,y,z\n").unwrap();
    let notes = append_csv(&csv_path, &e).unwrap();
    assert!(
        notes.iter().any(|n| n.contains("foreign header")),
        "{notes:?}"
    );
    let text = std::fs::read_to_string(&csv_path).unwrap();
    assert!(text.starts_with(CODECARBON_33_HEADER));
    assert_eq!(text.lines().count(), 2);
    let backups = std::fs::read_dir(d.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".bak"))
        .count();
    assert_eq!(backups, 1);
}

#[test]
fn legacy_json_arrays_are_still_read() {
    let d = tempfile::tempdir().unwrap();
    let e = record("a");
    let p = d.path().join("emissions.json");
    // A record as forge-carbon 0.1 wrote it: without the fields added since.
    let mut old = serde_json::to_value(&e).unwrap();
    for k in [
        "cloud_provider",
        "cloud_region",
        "intensity_detail",
        "wue_l_per_kwh",
        "water_consumed_l",
        "cpu_utilization_percent",
        "gpu_utilization_percent",
        "ram_utilization_percent",
        "ram_used_gb",
        "components",
    ] {
        old.as_object_mut().unwrap().remove(k).unwrap();
    }
    std::fs::write(&p, serde_json::to_string(&vec![&old, &old]).unwrap()).unwrap();
    let back = read_json(&p).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].run_id, e.run_id);
    assert_eq!(back[0].water_consumed_l, None);
    let l = d.path().join("x.jsonl");
    append_json(&l, &e).unwrap();
    append_json(&l, &e).unwrap();
    assert_eq!(read_json(&l).unwrap(), vec![e.clone(), e]);
}

#[test]
fn concurrent_appends_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let e = record("a");
    let csv_path = d.path().join("conc.csv");
    let json_path = d.path().join("conc.jsonl");
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    append_record(&csv_path, &json_path, &e).unwrap();
                }
            });
        }
    });
    assert_eq!(read_csv(&csv_path).unwrap().len(), 40);
    assert_eq!(read_json(&json_path).unwrap().len(), 40);
}

#[test]
fn stale_forge_temp_files_are_cleaned_and_others_kept() {
    let d = tempfile::tempdir().unwrap();
    let old = d.path().join(".forge-tmp-crashed");
    std::fs::write(&old, "half").unwrap();
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
        .unwrap();
    drop(f);
    let fresh = d.path().join(".forge-tmp-in-use");
    std::fs::write(&fresh, "being written").unwrap();
    let foreign = d.path().join(".emissions.csv.123.tmp");
    std::fs::write(&foreign, "not ours").unwrap();
    run(d.path(), "a");
    assert!(!old.exists());
    assert!(
        fresh.exists(),
        "a temp file younger than an hour may be in use"
    );
    assert!(foreign.exists());
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

#[test]
fn readers_skip_a_torn_last_line_left_by_a_killed_append() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("emissions.csv");
    let json = d.path().join(forge_carbon::output::JSON_FILE);
    for p in ["a", "b"] {
        forge_carbon::output::append_record(&csv, &json, &record(p)).unwrap();
    }
    // a kill in the middle of the third append: half a JSON line, part of a CSV row
    let full_json = std::fs::read_to_string(&json).unwrap();
    let line = full_json.lines().next().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&json)
        .unwrap();
    std::io::Write::write_all(&mut f, &line.as_bytes()[..line.len() / 2]).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(&csv).unwrap();
    std::io::Write::write_all(&mut f, b"2026-12-01T00:00:00,c,").unwrap();
    let recs = forge_carbon::output::read_json(&json).unwrap();
    assert_eq!(
        recs.iter()
            .map(|e| e.project_name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(read_csv(&csv).unwrap().len(), 2);
    // a complete last line without its newline is kept
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&json)
        .unwrap();
    std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
    assert_eq!(forge_carbon::output::read_json(&json).unwrap().len(), 1);
    // the next append repairs both files, and both readers agree
    forge_carbon::output::append_record(&csv, &json, &record("d")).unwrap();
    assert_eq!(read_csv(&csv).unwrap().len(), 3);
}
