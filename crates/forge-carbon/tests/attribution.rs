//! The TDP estimate counts only this process tree's CPU time.

mod common;

use common::{FakeProbe, EPYC_CPUINFO};
use forge_carbon::{CarbonConfig, CarbonTracker, EnergyMethod, TrackingMode};
#[cfg(unix)]
use forge_carbon::{ProcessProbe, SystemProbe};

/// Process CPU time includes every thread of the test binary: the real-CPU tests run one at a time.
#[cfg(unix)]
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(unix)]
fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn no_rapl() -> CarbonConfig {
    CarbonConfig {
        use_rapl: false,
        use_nvml: false,
        ..CarbonConfig::default()
    }
}

#[test]
fn fake_readings_give_exact_energy_and_ignore_other_processes() {
    // EPYC 7763: 280 W / 128 threads = 2.1875 W per logical CPU.
    let probe = FakeProbe::new(2, 8 << 30, EPYC_CPUINFO);
    let mut t = CarbonTracker::with_parts(no_rapl(), probe.clone(), None).unwrap();
    t.start().unwrap();
    probe.advance_self(0.5);
    probe.advance_other(50.0); // a second busy process on the other core
    std::thread::sleep(std::time::Duration::from_millis(20));
    let e = t.stop().unwrap();
    assert_eq!(e.cpu_method, EnergyMethod::TdpEstimate);
    assert_eq!(e.tracking_mode, TrackingMode::Process);
    assert!((e.process_cpu_s - 0.5).abs() < 1e-9);
    let expected_j = 0.5 * 280.0 / 128.0;
    assert!(
        (e.cpu_energy_kwh * 3.6e6 - expected_j).abs() < 1e-12,
        "{}",
        e.cpu_energy_kwh * 3.6e6
    );
    // RAM: 8 GiB x 0.375 W/GB = 3 W for the whole wall time.
    assert!((e.ram_power_w - 3.0).abs() < 1e-12, "{}", e.ram_power_w);
    assert_eq!(e.ram_method, EnergyMethod::RamModel);
    // Power = W_t x cpu / wall; share = cpu / (wall x 2).
    assert!((e.cpu_power_w - expected_j / e.duration_s).abs() < 1e-9);
    assert!((e.process_cpu_share - (0.5 / (e.duration_s * 2.0)).min(1.0)).abs() < 1e-12);
    assert_eq!(e.cpu_w_per_thread, Some(280.0 / 128.0));
    assert!(e.tdp_source.as_deref().unwrap().contains("EPYC 7763"));
}

#[test]
fn config_tdp_is_split_over_visible_cpus() {
    let probe = FakeProbe::new(4, 0, "model name\t: Unknown CPU\n");
    let cfg = CarbonConfig {
        tdp_w: Some(40.0),
        ..no_rapl()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe.clone(), None).unwrap();
    t.start().unwrap();
    probe.advance_self(2.0);
    let e = t.stop().unwrap();
    assert!((e.cpu_energy_kwh * 3.6e6 - 20.0).abs() < 1e-9); // 10 W/thread x 2 s
                                                             // PUE and intensity: energy x PUE x CI.
    let cfg = CarbonConfig {
        tdp_w: Some(40.0),
        pue: 1.5,
        carbon_intensity_g_per_kwh: Some(100.0),
        ram_w_per_gb: 0.0,
        ..no_rapl()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe.clone(), None).unwrap();
    t.start().unwrap();
    probe.advance_self(3.6);
    let e = t.stop().unwrap();
    let kwh = 36.0 / 3.6e6 * 1.5;
    assert!((e.energy_kwh - kwh).abs() < 1e-15);
    assert!((e.emissions_kg - kwh * 0.1).abs() < 1e-15);
}

#[cfg(unix)]
fn rusage(who: i32) -> f64 {
    // SAFETY: zeroed rusage is valid; getrusage writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(who, &mut ru) }, 0);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[cfg(unix)]
fn burn_cpu(seconds: f64) {
    let p = SystemProbe;
    let t0 = p.process_cpu_time_s();
    let mut x = 1u64;
    while p.process_cpu_time_s() - t0 < seconds {
        for _ in 0..10_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
        }
    }
    std::hint::black_box(x);
}

/// A busy process outside our tree: a grandchild whose parent exits, so it is re-parented.
#[cfg(target_os = "linux")]
fn spawn_orphan_busy_loop() -> u32 {
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $!",
        ])
        .output()
        .expect("spawn an orphaned busy loop");
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[cfg(target_os = "linux")]
fn kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
}

#[cfg(target_os = "linux")]
#[test]
fn real_second_busy_process_is_not_attributed() {
    let _serial = serial();
    let pid = spawn_orphan_busy_loop();
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mut t = CarbonTracker::new(no_rapl()).unwrap();
    let self0 = rusage(libc::RUSAGE_SELF);
    t.start().unwrap();
    burn_cpu(0.3);
    let e = t.stop().unwrap();
    let self_cpu = rusage(libc::RUSAGE_SELF) - self0;
    let other = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| forge_carbon::process::parse_stat_cpu_ticks(&s));
    kill(pid);
    assert!(
        other.unwrap_or(0) > 10,
        "the busy process must have run: {other:?}"
    );
    // Our CPU time only, within getrusage's resolution and start/stop overhead.
    assert!(
        (e.process_cpu_s - self_cpu).abs() < 0.02,
        "{} vs {self_cpu}",
        e.process_cpu_s
    );
    assert!(
        e.process_cpu_s >= 0.3 && e.process_cpu_s < 0.3 + 0.02,
        "{}",
        e.process_cpu_s
    );
    let w = e.cpu_w_per_thread.unwrap();
    assert!((e.cpu_energy_kwh * 3.6e6 - w * e.process_cpu_s).abs() < 1e-9);
}

#[cfg(target_os = "linux")]
#[test]
fn real_child_processes_are_part_of_the_process_tree() {
    let _serial = serial();
    let mut t = CarbonTracker::new(no_rapl()).unwrap();
    let children0 = rusage(libc::RUSAGE_CHILDREN);
    t.start().unwrap();
    // A child busy for up to 1 s, waited for before stop (counted via RUSAGE_CHILDREN) ...
    let status = std::process::Command::new("timeout")
        .args(["1", "sh", "-c", "while :; do :; done"])
        .status()
        .expect("spawn a busy child");
    assert!(!status.success()); // killed by timeout
    let waited = t.stop().unwrap();
    let child_cpu = rusage(libc::RUSAGE_CHILDREN) - children0;
    assert!(child_cpu > 0.02, "the child must have run: {child_cpu}");
    assert!(
        waited.process_cpu_s >= child_cpu - 0.01,
        "{} < child {child_cpu}",
        waited.process_cpu_s
    );
    // ... and a live child still running at stop (counted from /proc/<pid>/stat).
    let mut child = std::process::Command::new("sh")
        .args(["-c", "while :; do :; done"])
        .spawn()
        .unwrap();
    let ticks = || {
        std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
            .ok()
            .and_then(|s| forge_carbon::process::parse_stat_cpu_ticks(&s))
            .unwrap_or(0)
    };
    t.start().unwrap();
    let c0 = ticks();
    // Wait until the child has used 0.2 s of CPU, however busy the machine is (bounded).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while ticks() < c0 + 20 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let live = t.stop().unwrap();
    let child_s = (ticks() - c0) as f64 / 100.0;
    child.kill().unwrap();
    child.wait().unwrap();
    // The live child's /proc ticks (10 ms) are part of the tree's CPU time.
    assert!(child_s >= 0.2, "the child must have run: {child_s}");
    assert!(
        live.process_cpu_s >= child_s - 0.03,
        "{} < child {child_s}",
        live.process_cpu_s
    );
}

#[cfg(unix)]
#[test]
fn real_short_runs_get_proportional_nonzero_energy() {
    let _serial = serial();
    let mut t = CarbonTracker::new(no_rapl()).unwrap();
    let mut run = |s: f64| {
        t.start().unwrap();
        burn_cpu(s);
        t.stop().unwrap()
    };
    let short = run(0.003);
    let long = run(0.012);
    assert!(short.cpu_energy_kwh > 0.0);
    assert!(
        short.process_cpu_s >= 0.003 && short.process_cpu_s < 0.006,
        "{}",
        short.process_cpu_s
    );
    assert!(
        long.process_cpu_s >= 0.012 && long.process_cpu_s < 0.015,
        "{}",
        long.process_cpu_s
    );
    let ratio = long.cpu_energy_kwh / short.cpu_energy_kwh;
    assert!(
        (2.0..=5.0).contains(&ratio),
        "energy ratio {ratio} for 4x the CPU time"
    );
    assert_ne!(short.run_id, long.run_id);
}

#[cfg(unix)]
#[test]
fn own_threads_are_counted() {
    let _serial = serial();
    let mut t = CarbonTracker::new(no_rapl()).unwrap();
    t.start().unwrap();
    let h = std::thread::spawn(|| burn_thread(0.1));
    burn_thread(0.1);
    h.join().unwrap();
    let e = t.stop().unwrap();
    assert!(
        e.process_cpu_s >= 0.2,
        "both threads' CPU time: {}",
        e.process_cpu_s
    );
}

#[cfg(unix)]
fn burn_thread(seconds: f64) {
    // per-thread CPU clock, so each thread burns its own share
    let now = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
    };
    let t0 = now();
    let mut x = 1u64;
    while now() - t0 < seconds {
        for _ in 0..10_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
    }
    std::hint::black_box(x);
}
