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

/// The CPU time a shell reported for itself and the children it waited for, written by the
/// POSIX `times` builtin as two lines `XmY.ZZs XmY.ZZs` (user, system; the shell, then its
/// children). This is the kernel's own accounting of the same processes forge measures, taken
/// inside the run: comparing against a second run of the same work instead is at the mercy of
/// the load (a busy SMT sibling makes the same loop cost up to twice the CPU time; seen in CI).
fn times_file_cpu_s(path: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the script wrote no `times` output at {path:?}: {e}"));
    let parse = |tok: &str| -> f64 {
        let t = tok.trim_end_matches('s');
        let (m, sec) = t
            .split_once('m')
            .unwrap_or_else(|| panic!("unexpected `times` token {tok:?} in {text:?}"));
        m.parse::<f64>().unwrap() * 60.0 + sec.parse::<f64>().unwrap()
    };
    let toks: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(toks.len(), 4, "unexpected `times` output {text:?}");
    toks.iter().map(|t| parse(t)).sum()
}

/// `times` counts in clock ticks (10 ms here); /proc does too.
const TICKS_SLACK_S: f64 = 0.05;

/// Two CPU-bound grandchildren (sh -> two sub-shells running a fixed amount of work): their CPU
/// time must be counted, and must match the kernel's accounting of the same processes.
#[test]
fn cpu_bound_children_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let csv_path = dir.path().join("e.csv");
    let script = "busy() { i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; }; \
                  (busy) & (busy) & wait; times > cpu.txt";
    let o = forge()
        .args(["--json", "track", "--output"])
        .arg(&csv_path)
        .args(["--", "sh", "-c", script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let reference = times_file_cpu_s(&dir.path().join("cpu.txt"));
    let out = stdout(&o);
    let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).expect("json");
    let e = &v["emissions"];
    let cpu_s = e["process_cpu_s"].as_f64().unwrap();
    // forge's own CPU time (start-up, sampling) comes on top: a few tens of ms in a debug build
    assert!(
        cpu_s > reference - TICKS_SLACK_S && cpu_s < 1.5 * reference + 0.3,
        "tree CPU time {cpu_s} s vs {reference} s the shell's `times` reported for the same processes"
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
    // the sub-shell starts the busy shell in the background and exits: the busy shell is
    // orphaned; it reports its own CPU time, then drops a marker; the outer shell waits for the
    // marker (not for it) and exits
    let script = format!(
        "(sh -c '{busy}; times > cpu.txt; touch done' &); \
         while [ ! -e done ]; do sleep 0.05; done; exit 0"
    );
    let o = forge()
        .args(["--json", "track", "--no-output", "--"])
        .args(["sh", "-c", &script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let orphan = times_file_cpu_s(&dir.path().join("cpu.txt"));
    assert!(orphan > 0.05, "the orphan's work is measurable: {orphan}");
    let v: serde_json::Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    let cpu_s = v["emissions"]["process_cpu_s"].as_f64().unwrap();
    assert!(
        cpu_s > orphan - TICKS_SLACK_S,
        "orphan's CPU time not counted: {cpu_s} s for the whole tree vs {orphan} s the orphan reported for itself"
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
    // forge starts measuring before it spawns the command: from the moment the command exists,
    // every millisecond until the kill is in the measured duration (a fixed sleep after spawning
    // forge is not: under load forge's own start-up can take hundreds of ms; seen in CI)
    let started = wait_for_child_of(child.id() as i32);
    std::thread::sleep(std::time::Duration::from_millis(500));
    // SAFETY: kill has no memory-safety preconditions; the pid is our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let t0 = std::time::Instant::now();
    let before_kill = (t0 - started).as_secs_f64();
    let o = child.wait_with_output().unwrap();
    assert!(t0.elapsed().as_secs() < 10, "sleep was not terminated");
    assert_eq!(o.status.code(), Some(128 + 15), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("(interrupted)"), "{err}");
    let (h, rows) = read_csv(&csv_path);
    assert_eq!(rows.len(), 1, "partial measurement written");
    let duration: f64 = rows[0][col(&h, "duration")].parse().unwrap();
    assert!(
        duration >= before_kill - 0.01 && duration < 10.0,
        "measured {duration} s, but the command ran {before_kill} s before the kill"
    );
}

/// Waits (up to 30 s) until `parent` has a child process; returns when it was first seen.
fn wait_for_child_of(parent: i32) -> std::time::Instant {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let found = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|st| {
                    // the fields after the command name, which is in parentheses
                    let rest = &st[st.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<i32>().ok()
                })
                == Some(parent)
        });
        if found {
            return std::time::Instant::now();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "forge started no command"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
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
