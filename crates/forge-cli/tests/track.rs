//! End-to-end tests of `forge track` with the real binary.

mod common;

use common::{assert_one_line_error, forge, stderr, stdout};

/// Reads an emissions CSV back with the csv crate: (header, rows).
fn read_csv(path: &std::path::Path) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(path).expect("csv readable");
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|x| x.expect("row")).collect();
    (header, rows)
}

fn col(header: &[String], name: &str) -> usize {
    header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
fn sleep_one_second_writes_a_codecarbon_row() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("sub/emissions.csv");
    let o = forge()
        .args([
            "track",
            "--country",
            "FRA",
            "--pue",
            "1.2",
            "--project",
            "nap",
            "--output",
        ])
        .arg(&csv_path)
        .args(["--", "sleep", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("exited with code 0"), "{err}");
    assert!(
        err.contains("tdp-estimate") || err.contains("rapl"),
        "method stated: {err}"
    );
    assert!(err.contains("ram-model") || err.contains("rapl"), "{err}");
    let (h, rows) = read_csv(&csv_path);
    assert_eq!(h.first().map(String::as_str), Some("timestamp"));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    let duration: f64 = r[col(&h, "duration")].parse().unwrap();
    assert!((0.95..5.0).contains(&duration), "duration {duration}");
    assert_eq!(&r[col(&h, "project_name")], "nap");
    assert_eq!(&r[col(&h, "country_iso_code")], "FRA");
    assert_eq!(r[col(&h, "pue")].parse::<f64>().unwrap(), 1.2);
    // sleeping uses almost no CPU: well under 0.2 s of CPU time x a few W per thread
    let cpu_kwh: f64 = r[col(&h, "cpu_energy")].parse().unwrap();
    assert!(
        (0.0..0.2 * 10.0 / 3.6e6).contains(&cpu_kwh),
        "cpu energy {cpu_kwh}"
    );
}

#[test]
fn exit_code_is_kept_and_the_row_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("e.csv");
    for (i, code) in [3, 0].into_iter().enumerate() {
        let o = forge()
            .args(["track", "--output"])
            .arg(&csv_path)
            .args(["--", "sh", "-c", &format!("exit {code}")])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{}", stderr(&o));
        let (_, rows) = read_csv(&csv_path);
        assert_eq!(rows.len(), i + 1, "one row appended per run");
    }
}

#[test]
fn killed_by_a_signal_gives_128_plus_n() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("e.csv");
    let o = forge()
        .args(["track", "--output"])
        .arg(&csv_path)
        .args(["--", "sh", "-c", "kill -TERM $$"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(128 + 15), "{}", stderr(&o));
    assert!(stderr(&o).contains("killed by signal 15"));
    assert_eq!(read_csv(&csv_path).1.len(), 1);
}

/// CPU time (user + system) of `sh -c script` and all its descendants, measured independently
/// of forge with `wait4` on that one child (the kernel's own accounting of the whole tree).
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std's Child does not know
fn reference_cpu_s(script: &str) -> f64 {
    let child = std::process::Command::new("sh")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 writes into `status` and `ru` only.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    assert_eq!(pid, child.id() as i32);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Two CPU-bound grandchildren (sh -> two sub-shells running a fixed amount of work): their CPU
/// time must be counted, and must match the kernel's accounting of the same work done outside forge.
#[test]
fn cpu_bound_children_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("e.csv");
    // a fixed amount of work (not a fixed wall time), so the CPU time does not depend on the load
    let script =
        "busy() { i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; }; (busy) & (busy) & wait";
    let reference = reference_cpu_s(script);
    let o = forge()
        .args(["--json", "track", "--output"])
        .arg(&csv_path)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).expect("json");
    let e = &v["emissions"];
    let cpu_s = e["process_cpu_s"].as_f64().unwrap();
    // forge's own CPU time (start-up, sampling) is included: a few tens of ms in a debug build
    assert!(
        cpu_s > 0.7 * reference && cpu_s < 1.5 * reference + 0.2,
        "tree CPU time {cpu_s} s vs {reference} s for the same work outside forge"
    );
    assert!(reference > 0.05, "the work is measurable: {reference}");
    if e["cpu_method"] == "tdp-estimate" {
        let w = e["cpu_w_per_thread"].as_f64().unwrap();
        let kwh = e["cpu_energy_kwh"].as_f64().unwrap();
        assert!(
            (kwh - w * cpu_s / 3.6e6).abs() <= 1e-9 * kwh,
            "E = W_t x cpu time"
        );
    }
    assert!(e["energy_kwh"].as_f64().unwrap() > 0.0);
    // The children's CPU time above is what proves they are counted (the shell itself does no
    // work). How many processes the sampler saw depends on the load: children of ~0.2 s can
    // start and end between two samples (seen: 1 on a loaded CI machine), so only the shell is
    // required here.
    assert!(v["processes_seen"].as_u64().unwrap() >= 1, "{v}");
    let (h, rows) = read_csv(&csv_path);
    let energy: f64 = rows[0][col(&h, "energy_consumed")].parse().unwrap();
    assert!((energy - e["energy_kwh"].as_f64().unwrap()).abs() <= 1e-12 + 1e-9 * energy);
}

/// An orphaned grandchild (double fork: its parent exits at once) is re-parented to forge,
/// reaped by it and its CPU time counted.
#[test]
fn orphaned_grandchildren_are_reaped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let busy = "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done";
    let reference = reference_cpu_s(busy);
    // the sub-shell starts the busy shell in the background and exits: the busy shell is
    // orphaned; the outer shell waits for its marker file (not for it) and exits
    let script =
        format!("(sh -c '{busy}; touch done' &); while [ ! -e done ]; do sleep 0.05; done; exit 0");
    let o = forge()
        .args(["--json", "track", "--no-output", "--"])
        .args(["sh", "-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    let cpu_s = v["emissions"]["process_cpu_s"].as_f64().unwrap();
    assert!(
        cpu_s > 0.7 * reference,
        "orphan's CPU time not counted: {cpu_s} s vs {reference} s for its work alone"
    );
    assert!(
        !dir.path().join("emissions.csv").exists(),
        "--no-output writes nothing"
    );
}

#[test]
fn sigterm_to_forge_is_forwarded_and_the_partial_run_recorded() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("e.csv");
    let child = Command::new(env!("CARGO_BIN_EXE_forge"))
        .args(["track", "--output"])
        .arg(&csv_path)
        .args(["--", "sleep", "30"])
        .env("CI", "true")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = std::time::Instant::now();
    let o = child.wait_with_output().unwrap();
    assert!(t0.elapsed().as_secs() < 10, "sleep was not terminated");
    assert_eq!(o.status.code(), Some(128 + 15), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("(interrupted)"), "{err}");
    let (h, rows) = read_csv(&csv_path);
    assert_eq!(rows.len(), 1, "partial measurement written");
    let duration: f64 = rows[0][col(&h, "duration")].parse().unwrap();
    assert!(duration > 0.5 && duration < 10.0, "{duration}");
}

#[test]
fn command_not_found_is_127_with_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = forge()
        .current_dir(dir.path())
        .args(["track", "--", "definitely-not-a-command-xyz"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127));
    assert_one_line_error(&o, &["definitely-not-a-command-xyz"]);
    assert!(!dir.path().join("emissions.csv").exists());
}

#[test]
fn bad_options_are_usage_errors_naming_the_value() {
    let o = forge()
        .args(["track", "--country", "XXX", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["XXX"]);
    let o = forge()
        .args(["track", "--pue", "0.5", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["0.5"]);
    let o = forge()
        .args(["track", "--pue", "abc", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["abc"]);
    let o = forge().args(["track"]).output().unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["CMD"]);
}

#[test]
fn unwritable_output_is_reported_after_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let o = forge()
        .args(["track", "--output"])
        .arg(blocker.join("e.csv"))
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(74));
    let err = stderr(&o);
    assert!(err.contains("forge track:"), "summary still printed: {err}");
    assert!(
        err.lines()
            .last()
            .unwrap()
            .starts_with("error: cannot write"),
        "{err}"
    );
}

#[test]
fn machine_mode_is_recorded_as_codecarbon_machine_mode() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("e.csv");
    let o = forge()
        .args(["track", "--tracking-mode", "machine", "--output"])
        .arg(&csv_path)
        .args(["--", "sleep", "0.3"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (h, rows) = read_csv(&csv_path);
    assert_eq!(&rows[0][col(&h, "tracking_mode")], "machine");
    assert!(stderr(&o).contains("(machine)"), "{}", stderr(&o));
    let o = forge()
        .args(["track", "--tracking-mode", "galaxy", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64));
    assert_one_line_error(&o, &["galaxy", "process", "machine"]);
}

#[test]
fn rust_log_turns_on_the_libraries_events() {
    let o = forge()
        .env("RUST_LOG", "debug")
        .args(["track", "--no-output", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("DEBUG"), "{}", stderr(&o));
    let o = forge()
        .args(["track", "--no-output", "--", "true"])
        .output()
        .unwrap();
    assert!(!stderr(&o).contains("DEBUG"));
}
