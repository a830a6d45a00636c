//! Readings of this process tree and of the machine (CPU time, logical CPUs, resident memory,
//! machine CPU load, machine memory) behind a trait, so that tests can inject fake readings.
//!
//! The real probe, [`SystemProbe`] (alias [`LinuxProbe`]), on Unix reads this process's CPU time
//! with `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (nanosecond resolution, all threads, user +
//! system), not `/proc/self/stat`'s 10 ms ticks, so that millisecond-long workloads get a non-zero
//! and proportional CPU time; it falls back to `getrusage(RUSAGE_SELF)`. On Linux it adds the
//! process tree: live descendants from `/proc/<pid>/task/*/children` (their `utime + stime +
//! cutime + cstime` from `/proc/<pid>/stat`, 10 ms ticks) plus the children already waited for
//! (`getrusage(RUSAGE_CHILDREN)`), and their resident memory. Machine figures come from
//! `/proc/stat` (CPU busy/total time, counted as psutil and CodeCarbon do) and `/proc/meminfo`.
//!
//! On other platforms (Windows) the portable probe knows only the logical CPU count: process CPU
//! time and memory read as zero and the tracker says so in its warnings
//! ([`ProcessProbe::limitations`]).

/// Machine-wide CPU time counters, seconds since boot (psutil's `cpu_times()` summed as CodeCarbon's
/// `SystemCPULoadMeter` does: total excludes guest time, busy = total - idle - iowait).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MachineCpuTimes {
    /// Busy time, all CPUs.
    pub busy_s: f64,
    /// Total time, all CPUs.
    pub total_s: f64,
}

impl MachineCpuTimes {
    /// Machine load in [0, 1] between two readings (0 when no time passed).
    pub fn load_since(&self, earlier: &MachineCpuTimes) -> f64 {
        let total = self.total_s - earlier.total_s;
        if total <= 0.0 {
            return 0.0;
        }
        ((self.busy_s - earlier.busy_s) / total).clamp(0.0, 1.0)
    }
}

/// Source of process and machine readings used by the tracker.
pub trait ProcessProbe: Send + Sync {
    /// CPU time consumed so far by this process (all threads, user + system), in seconds.
    fn process_cpu_time_s(&self) -> f64;
    /// CPU time of this process tree: this process plus its descendants, live and waited for.
    /// Defaults to [`ProcessProbe::process_cpu_time_s`].
    fn process_tree_cpu_time_s(&self) -> f64 {
        self.process_cpu_time_s()
    }
    /// Number of logical CPUs visible to the OS.
    fn logical_cpus(&self) -> usize;
    /// Resident set size of this process in bytes, if known.
    fn process_rss_bytes(&self) -> Option<u64>;
    /// Resident set size of this process and its live descendants, bytes. Defaults to
    /// [`ProcessProbe::process_rss_bytes`].
    fn process_tree_rss_bytes(&self) -> Option<u64> {
        self.process_rss_bytes()
    }
    /// Total RAM of the machine in bytes, if known.
    fn total_ram_bytes(&self) -> Option<u64>;
    /// RAM in use on the machine (total - available), bytes, if known.
    fn used_ram_bytes(&self) -> Option<u64> {
        None
    }
    /// Machine-wide CPU time counters, if readable.
    fn machine_cpu_times(&self) -> Option<MachineCpuTimes> {
        None
    }
    /// Contents of /proc/cpuinfo (or an equivalent), if readable.
    fn cpuinfo(&self) -> Option<String>;
    /// What this probe cannot read on this platform (listed in the run's warnings).
    fn limitations(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The real probe of this platform.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemProbe;

/// The former name of [`SystemProbe`] (kept for existing callers).
pub use self::SystemProbe as LinuxProbe;

#[cfg(unix)]
mod unix {
    pub(super) fn clock_cpu_time() -> Option<f64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes into it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
    }

    pub(super) fn rusage_cpu_time(who: libc::c_int) -> Option<f64> {
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage; the call only writes into it.
        let rc = unsafe { libc::getrusage(who, &mut ru) };
        (rc == 0).then(|| {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            tv(ru.ru_utime) + tv(ru.ru_stime)
        })
    }

    pub(super) fn sysconf(name: libc::c_int) -> Option<u64> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let v = unsafe { libc::sysconf(name) };
        (v > 0).then_some(v as u64)
    }

    pub(super) fn page_size() -> u64 {
        sysconf(libc::_SC_PAGESIZE).unwrap_or(4096)
    }

    pub(super) fn clock_ticks() -> f64 {
        sysconf(libc::_SC_CLK_TCK).unwrap_or(100) as f64
    }
}

/// Live descendants of `pid` (Linux `/proc/<pid>/task/*/children`), depth first.
#[cfg_attr(not(unix), allow(dead_code))]
fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                for c in s.split_whitespace().filter_map(|x| x.parse::<u32>().ok()) {
                    if !out.contains(&c) && out.len() < 100_000 {
                        out.push(c);
                        stack.push(c);
                    }
                }
            }
        }
    }
    out
}

/// `utime + stime + cutime + cstime` (clock ticks) from a `/proc/<pid>/stat` line.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14 -> index 11.
    let g = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok());
    Some(g(11)? + g(12)? + g(13)? + g(14)?)
}

/// Machine CPU counters from `/proc/stat`'s `cpu` line, in clock ticks converted to seconds.
pub fn parse_proc_stat(stat: &str, ticks_per_s: f64) -> Option<MachineCpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse::<f64>().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal guest guest_nice
    let total = v.iter().sum::<f64>() - at(8) - at(9);
    let busy = total - at(3) - at(4);
    Some(MachineCpuTimes {
        busy_s: busy / ticks_per_s,
        total_s: total / ticks_per_s,
    })
}

/// Parses `MemTotal:  N kB` from /proc/meminfo text into bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    meminfo_field(meminfo, "MemTotal:")
}

fn meminfo_field(meminfo: &str, key: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(unix)]
impl ProcessProbe for SystemProbe {
    fn process_cpu_time_s(&self) -> f64 {
        unix::clock_cpu_time()
            .or_else(|| unix::rusage_cpu_time(libc::RUSAGE_SELF))
            .unwrap_or(0.0)
    }

    fn process_tree_cpu_time_s(&self) -> f64 {
        let ticks = unix::clock_ticks();
        let live: u64 = descendants(std::process::id())
            .into_iter()
            .filter_map(|p| {
                parse_stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?)
            })
            .sum();
        self.process_cpu_time_s()
            + unix::rusage_cpu_time(libc::RUSAGE_CHILDREN).unwrap_or(0.0)
            + live as f64 / ticks
    }

    fn logical_cpus(&self) -> usize {
        unix::sysconf(libc::_SC_NPROCESSORS_ONLN)
            .map(|n| n as usize)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    fn process_rss_bytes(&self) -> Option<u64> {
        statm_rss("self")
    }

    fn process_tree_rss_bytes(&self) -> Option<u64> {
        let own = statm_rss("self")?;
        Some(
            own + descendants(std::process::id())
                .into_iter()
                .filter_map(|p| statm_rss(&p.to_string()))
                .sum::<u64>(),
        )
    }

    fn total_ram_bytes(&self) -> Option<u64> {
        parse_meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

    fn used_ram_bytes(&self) -> Option<u64> {
        let m = std::fs::read_to_string("/proc/meminfo").ok()?;
        let total = meminfo_field(&m, "MemTotal:")?;
        let avail = meminfo_field(&m, "MemAvailable:")?;
        Some(total.saturating_sub(avail))
    }

    fn machine_cpu_times(&self) -> Option<MachineCpuTimes> {
        parse_proc_stat(
            &std::fs::read_to_string("/proc/stat").ok()?,
            unix::clock_ticks(),
        )
    }

    fn cpuinfo(&self) -> Option<String> {
        std::fs::read_to_string("/proc/cpuinfo").ok()
    }

    fn limitations(&self) -> Vec<String> {
        if std::path::Path::new("/proc/stat").exists() {
            Vec::new()
        } else {
            vec!["no /proc on this system: descendants' CPU time, machine load and memory use not read".into()]
        }
    }
}

#[cfg(unix)]
fn statm_rss(pid: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(resident_pages * unix::page_size())
}

#[cfg(not(unix))]
impl ProcessProbe for SystemProbe {
    fn process_cpu_time_s(&self) -> f64 {
        0.0
    }
    fn logical_cpus(&self) -> usize {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
    fn process_rss_bytes(&self) -> Option<u64> {
        None
    }
    fn total_ram_bytes(&self) -> Option<u64> {
        None
    }
    fn cpuinfo(&self) -> Option<String> {
        None
    }
    fn limitations(&self) -> Vec<String> {
        vec![format!(
            "process CPU time, memory and machine load are not read on {} yet: CPU and RAM energy are zero; set tdp_w and use tracking_mode machine with a known load, or run on Linux",
            std::env::consts::OS
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_parsed_in_bytes() {
        let txt = "MemTotal:       24567890 kB\nMemFree:  1 kB\nMemAvailable: 4 kB\n";
        assert_eq!(parse_meminfo_total(txt), Some(24_567_890 * 1024));
        assert_eq!(meminfo_field(txt, "MemAvailable:"), Some(4096));
        assert_eq!(parse_meminfo_total("nothing"), None);
    }

    #[test]
    fn proc_stat_is_counted_as_psutil_and_codecarbon() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let s = "cpu  100 10 50 800 20 5 5 10 30 0\ncpu0 1 2 3 4\n";
        let t = parse_proc_stat(s, 100.0).unwrap();
        assert!((t.total_s - 10.0).abs() < 1e-12); // 1030 - 30 guest
        assert!((t.busy_s - 1.8).abs() < 1e-12); // 1000 - 800 idle - 20 iowait
        let later = MachineCpuTimes {
            busy_s: 2.8,
            total_s: 12.0,
        };
        assert!((later.load_since(&t) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn stat_ticks_survive_odd_command_names() {
        let s = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 100 20 3 4 0 0";
        assert_eq!(parse_stat_cpu_ticks(s), Some(127));
    }

    #[cfg(unix)]
    #[test]
    fn real_probe_cpu_time_has_sub_tick_resolution() {
        let p = SystemProbe;
        let t0 = p.process_cpu_time_s();
        // Work in ~50 us slices until the process CPU time moves: with sub-tick resolution the
        // first change is far below /proc/self/stat's 10 ms tick (robust to preemption on a
        // loaded machine: the wall time it takes does not matter).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let mut dt = 0.0;
        while dt == 0.0 && start.elapsed().as_secs() < 5 {
            let slice = std::time::Instant::now();
            while slice.elapsed().as_micros() < 50 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            dt = p.process_cpu_time_s() - t0;
        }
        std::hint::black_box(x);
        assert!(dt > 0.0 && dt < 0.005, "first cpu time change {dt}");
        assert!(p.logical_cpus() >= 1);
        assert!(p.process_rss_bytes().unwrap_or(1) > 0);
        assert!(p.process_tree_cpu_time_s() >= p.process_cpu_time_s() - 1e-3);
    }
}
