//! Shared test helpers: a fake process probe and a fake powercap tree.
#![allow(dead_code)]

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use forge_carbon::{MachineCpuTimes, ProcessProbe};

/// A probe whose readings the test sets. `other_process_cpu_ns` models a second busy process
/// on the machine (what /proc/stat would show); the tracker must never count it.
#[derive(Debug, Default)]
pub struct FakeProbe {
    pub self_cpu_ns: AtomicU64,
    pub other_process_cpu_ns: AtomicU64,
    pub cpus: usize,
    pub rss_bytes: u64,
    pub ram_bytes: u64,
    pub cpuinfo: String,
    /// Machine counters in ms (busy, total) as /proc/stat would show them.
    pub machine_busy_ms: AtomicU64,
    pub machine_total_ms: AtomicU64,
}

impl FakeProbe {
    pub fn new(cpus: usize, rss_bytes: u64, cpuinfo: &str) -> Arc<Self> {
        Arc::new(Self {
            cpus,
            rss_bytes,
            ram_bytes: 16 << 30,
            cpuinfo: cpuinfo.to_string(),
            ..Self::default()
        })
    }
    pub fn advance_self(&self, s: f64) {
        self.self_cpu_ns
            .fetch_add((s * 1e9) as u64, Ordering::SeqCst);
    }
    pub fn advance_other(&self, s: f64) {
        self.other_process_cpu_ns
            .fetch_add((s * 1e9) as u64, Ordering::SeqCst);
    }
    /// Advances the machine counters by `wall_s` seconds on all CPUs at `load` in [0, 1].
    pub fn advance_machine(&self, wall_s: f64, load: f64) {
        let total = wall_s * self.cpus as f64 * 1000.0;
        self.machine_total_ms
            .fetch_add(total as u64, Ordering::SeqCst);
        self.machine_busy_ms
            .fetch_add((total * load) as u64, Ordering::SeqCst);
    }
}

impl ProcessProbe for FakeProbe {
    fn process_cpu_time_s(&self) -> f64 {
        self.self_cpu_ns.load(Ordering::SeqCst) as f64 * 1e-9
    }
    fn logical_cpus(&self) -> usize {
        self.cpus
    }
    fn process_rss_bytes(&self) -> Option<u64> {
        Some(self.rss_bytes)
    }
    fn total_ram_bytes(&self) -> Option<u64> {
        Some(self.ram_bytes)
    }
    fn cpuinfo(&self) -> Option<String> {
        Some(self.cpuinfo.clone())
    }
    fn machine_cpu_times(&self) -> Option<MachineCpuTimes> {
        Some(MachineCpuTimes {
            busy_s: self.machine_busy_ms.load(Ordering::SeqCst) as f64 / 1000.0,
            total_s: self.machine_total_ms.load(Ordering::SeqCst) as f64 / 1000.0,
        })
    }
    fn used_ram_bytes(&self) -> Option<u64> {
        Some(self.ram_bytes / 4)
    }
}

/// Writes one RAPL zone directory.
pub fn write_zone(root: &Path, dir: &str, name: &str, energy_uj: u64, max_uj: u64) {
    let z = root.join(dir);
    std::fs::create_dir_all(&z).unwrap();
    std::fs::write(z.join("name"), format!("{name}\n")).unwrap();
    std::fs::write(z.join("energy_uj"), format!("{energy_uj}\n")).unwrap();
    std::fs::write(z.join("max_energy_range_uj"), format!("{max_uj}\n")).unwrap();
}

/// Sets a zone's counter.
pub fn set_energy(root: &Path, dir: &str, energy_uj: u64) {
    std::fs::write(root.join(dir).join("energy_uj"), format!("{energy_uj}\n")).unwrap();
}

pub const EPYC_CPUINFO: &str = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7763 64-Core Processor\n\n";
