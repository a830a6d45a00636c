//! Readings of this process and machine (CPU time, logical CPUs, resident memory) behind a trait,
//! so that tests can inject fake readings.
//!
//! The real probe, [`LinuxProbe`], reads this process's CPU time with
//! `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)` (nanosecond resolution, all threads, user + system),
//! not `/proc/self/stat`'s 10 ms ticks, so that millisecond-long workloads get a non-zero and
//! proportional CPU time. It falls back to `getrusage(RUSAGE_SELF)` (microseconds) if the clock fails.

use std::path::Path;

/// Source of process and machine readings used by the tracker.
pub trait ProcessProbe: Send + Sync {
    /// CPU time consumed so far by this process (all threads, user + system), in seconds.
    fn process_cpu_time_s(&self) -> f64;
    /// Number of logical CPUs visible to the OS.
    fn logical_cpus(&self) -> usize;
    /// Resident set size of this process in bytes, if known.
    fn process_rss_bytes(&self) -> Option<u64>;
    /// Total RAM of the machine in bytes, if known.
    fn total_ram_bytes(&self) -> Option<u64>;
    /// Contents of /proc/cpuinfo (or an equivalent), if readable.
    fn cpuinfo(&self) -> Option<String>;
}

/// The real probe for Linux (and other Unix systems where the calls exist).
#[derive(Debug, Clone, Copy, Default)]
pub struct LinuxProbe;

impl LinuxProbe {
    fn clock_cpu_time() -> Option<f64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes into it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
        (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
    }

    fn rusage_cpu_time() -> Option<f64> {
        // SAFETY: an all-zero rusage is a valid value of this plain C struct.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `ru` is a valid, writable rusage; the call only writes into it.
        let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        (rc == 0).then(|| {
            let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
            tv(ru.ru_utime) + tv(ru.ru_stime)
        })
    }
}

impl ProcessProbe for LinuxProbe {
    fn process_cpu_time_s(&self) -> f64 {
        Self::clock_cpu_time()
            .or_else(Self::rusage_cpu_time)
            .unwrap_or(0.0)
    }

    fn logical_cpus(&self) -> usize {
        // SAFETY: sysconf has no memory-safety preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        if n > 0 {
            n as usize
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    fn process_rss_bytes(&self) -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        (page > 0).then(|| resident_pages * page as u64)
    }

    fn total_ram_bytes(&self) -> Option<u64> {
        parse_meminfo_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
    }

    fn cpuinfo(&self) -> Option<String> {
        read_small(Path::new("/proc/cpuinfo"))
    }
}

fn read_small(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Parses `MemTotal:  N kB` from /proc/meminfo text into bytes.
pub fn parse_meminfo_total(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_total_is_parsed_in_bytes() {
        let txt = "MemTotal:       24567890 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo_total(txt), Some(24_567_890 * 1024));
        assert_eq!(parse_meminfo_total("nothing"), None);
    }

    #[test]
    fn real_probe_cpu_time_has_sub_tick_resolution() {
        let p = LinuxProbe;
        let t0 = p.process_cpu_time_s();
        // ~2 ms of work: far below /proc/self/stat's 10 ms tick.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed().as_micros() < 2000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let dt = p.process_cpu_time_s() - t0;
        assert!(dt > 0.0005 && dt < 0.5, "cpu time delta {dt}");
        assert!(p.logical_cpus() >= 1);
        assert!(p.process_rss_bytes().unwrap_or(1) > 0);
    }
}
