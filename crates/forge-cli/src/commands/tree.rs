//! Readings of a whole process tree for `forge track`: CPU time of the tree (this process, every
//! descendant already reaped, and the live descendants) and the tree's resident memory sampled
//! from /proc, exposed to forge-carbon as a [`ProcessProbe`].
//!
//! CPU time = `getrusage(RUSAGE_SELF)` + `getrusage(RUSAGE_CHILDREN)` (every descendant that
//! has been waited for, transitively: a child's rusage includes the children it waited for) +
//! `utime + stime + cutime + cstime` from `/proc/<pid>/stat` of each descendant not yet reaped
//! (alive, or a zombie: a descendant that exited after forge's last `waitpid` is in neither
//! rusage, and was missed before this was counted).
//! `forge track` makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`), so descendants
//! orphaned by their parent are re-parented to it and reaped by it, and their CPU time is counted
//! too. The order (rusage first, then /proc) can only miss a process reaped between the two
//! reads, never count one twice.
//!
//! Memory: the sum of the resident set sizes (`/proc/<pid>/statm`) of all live descendants,
//! sampled every `interval` by a background thread; the probe reports the mean of the samples
//! taken so far (none before the first sample, so forge-carbon's reading at `start()`, before the
//! command exists, does not enter the mean).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use forge_carbon::{MachineCpuTimes, ProcessProbe, SystemProbe};

/// One live process read from /proc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    /// Process id.
    pub pid: i32,
    /// Parent process id.
    pub ppid: i32,
    /// State letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// `utime + stime + cutime + cstime`, in clock ticks.
    pub cpu_ticks: u64,
}

/// Parses the text of `/proc/<pid>/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid: i32 = text[..open].trim().parse().ok()?;
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // rest[0] = state (field 3), rest[1] = ppid (4), rest[11..15] = utime stime cutime cstime (14-17)
    let state = rest.first()?.chars().next()?;
    let ppid: i32 = rest.get(1)?.parse().ok()?;
    let tick = |i: usize| -> Option<u64> {
        let v: i64 = rest.get(i)?.parse().ok()?;
        Some(v.max(0) as u64)
    };
    let cpu_ticks = tick(11)? + tick(12)? + tick(13)? + tick(14)?;
    Some(ProcStat {
        pid,
        ppid,
        state,
        cpu_ticks,
    })
}

/// All processes readable under /proc.
fn all_processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            parse_stat(&std::fs::read_to_string(e.path().join("stat")).ok()?)
        })
        .collect()
}

/// The descendants of `root` among `procs`, `root` excluded, zombies (exited, not yet reaped)
/// included: filter on [`ProcStat::state`] for the live ones.
pub fn descendants(root: i32, procs: &[ProcStat]) -> Vec<ProcStat> {
    let mut children: HashMap<i32, Vec<&ProcStat>> = HashMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut seen = HashSet::new();
    while let Some(pid) = stack.pop() {
        for c in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            if c.pid != root && seen.insert(c.pid) {
                stack.push(c.pid);
                out.push(**c);
            }
        }
    }
    out
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as u64
    } else {
        4096
    }
}

fn rss_bytes(pid: i32, page: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// CPU time (user + system) of this process and of its waited-for descendants, seconds.
fn rusage_s(who: libc::c_int) -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage; the call only writes into it.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[derive(Debug, Default)]
struct MemStats {
    sum: f64,
    n: u64,
    peak: u64,
    pids: HashSet<i32>,
}

/// A [`ProcessProbe`] over the process tree rooted at this process (see the module docs).
#[derive(Debug)]
pub struct TreeProbe {
    root: i32,
    tick_s: f64,
    page: u64,
    mem: Mutex<MemStats>,
}

impl Default for TreeProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeProbe {
    /// A probe rooted at this process.
    pub fn new() -> Self {
        Self {
            root: std::process::id() as i32,
            tick_s: 1.0 / clock_ticks_per_s(),
            page: page_size(),
            mem: Mutex::new(MemStats::default()),
        }
    }

    /// The live descendants now (zombies left out).
    pub fn live_descendants(&self) -> Vec<ProcStat> {
        let mut d = descendants(self.root, &all_processes());
        d.retain(|p| p.state != 'Z');
        d
    }

    /// Takes one memory sample of the live descendants and remembers the pids seen.
    pub fn sample(&self) {
        let live = self.live_descendants();
        let rss: u64 = live.iter().map(|p| rss_bytes(p.pid, self.page)).sum();
        let mut m = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        if !live.is_empty() {
            m.sum += rss as f64;
            m.n += 1;
            m.peak = m.peak.max(rss);
        }
        m.pids.extend(live.iter().map(|p| p.pid));
    }

    /// Number of distinct descendant processes seen by the samples.
    pub fn processes_seen(&self) -> usize {
        self.mem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pids
            .len()
    }

    /// Number of memory samples taken while the tree was alive.
    pub fn samples(&self) -> u64 {
        self.mem.lock().unwrap_or_else(|p| p.into_inner()).n
    }

    /// The largest sampled resident memory of the tree, bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.mem.lock().unwrap_or_else(|p| p.into_inner()).peak
    }

    /// Starts a thread that calls [`TreeProbe::sample`] now and then every `interval` until the
    /// returned [`Sampler`] is stopped.
    pub fn spawn_sampler(self: &Arc<Self>, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let (probe, flag) = (Arc::clone(self), Arc::clone(&stop));
        let handle = std::thread::Builder::new()
            .name("forge-track-sampler".into())
            .spawn(move || {
                let step = Duration::from_millis(10).min(interval);
                while !flag.load(Ordering::Relaxed) {
                    probe.sample();
                    let mut waited = Duration::ZERO;
                    while waited < interval && !flag.load(Ordering::Relaxed) {
                        std::thread::sleep(step);
                        waited += step;
                    }
                }
            })
            .map_err(|e| tracing::warn!(error = %e, "no sampler thread; memory not sampled"))
            .ok();
        Sampler { stop, handle }
    }
}

impl ProcessProbe for TreeProbe {
    fn process_cpu_time_s(&self) -> f64 {
        rusage_s(libc::RUSAGE_SELF)
    }

    fn process_tree_cpu_time_s(&self) -> f64 {
        let reaped = rusage_s(libc::RUSAGE_SELF) + rusage_s(libc::RUSAGE_CHILDREN);
        // zombies too: a descendant that exited after the last reap is in neither rusage yet
        let unreaped: u64 = descendants(self.root, &all_processes())
            .iter()
            .map(|p| p.cpu_ticks)
            .sum();
        reaped + unreaped as f64 * self.tick_s
    }

    fn logical_cpus(&self) -> usize {
        SystemProbe.logical_cpus()
    }

    fn process_rss_bytes(&self) -> Option<u64> {
        SystemProbe.process_rss_bytes()
    }

    fn process_tree_rss_bytes(&self) -> Option<u64> {
        let m = self.mem.lock().unwrap_or_else(|p| p.into_inner());
        (m.n > 0).then(|| (m.sum / m.n as f64) as u64)
    }

    fn total_ram_bytes(&self) -> Option<u64> {
        SystemProbe.total_ram_bytes()
    }

    fn used_ram_bytes(&self) -> Option<u64> {
        SystemProbe.used_ram_bytes()
    }

    fn machine_cpu_times(&self) -> Option<MachineCpuTimes> {
        SystemProbe.machine_cpu_times()
    }

    fn cpuinfo(&self) -> Option<String> {
        SystemProbe.cpuinfo()
    }

    fn limitations(&self) -> Vec<String> {
        SystemProbe.limitations()
    }
}

/// The background memory sampler of a [`TreeProbe`].
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_spaces_and_parens_in_the_name() {
        let s = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 30 7 3 20 0 1 0 5 1000 200";
        let p = parse_stat(s).expect("parses");
        assert_eq!(p.pid, 4242);
        assert_eq!(p.ppid, 17);
        assert_eq!(p.state, 'S');
        assert_eq!(p.cpu_ticks, 250 + 30 + 7 + 3);
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn descendants_follow_the_tree_and_keep_zombies() {
        let p = |pid, ppid, state| ProcStat {
            pid,
            ppid,
            state,
            cpu_ticks: 1,
        };
        let procs = [
            p(1, 0, 'S'),
            p(10, 1, 'S'),
            p(11, 10, 'R'),
            p(12, 11, 'S'),
            p(13, 11, 'Z'),
            p(20, 1, 'S'),
        ];
        let mut d: Vec<i32> = descendants(10, &procs).iter().map(|p| p.pid).collect();
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
    }
}
