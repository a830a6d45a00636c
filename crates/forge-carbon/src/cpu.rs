//! CPU power from TDP when RAPL is absent: the process-tree estimate (below) and the TDP sources.
//! The machine-mode estimate (CodeCarbon 3.x's `TDP x (0.1 + 0.9 load^3)`) is in
//! [`crate::tracker::machine_load_factor`].
//!
//! # Attribution model
//!
//! Let `W_t` be the full-load power of ONE logical CPU (hardware thread): the package TDP divided by
//! the package's hardware threads (from the built-in [`TDP_TABLE`], keyed by the /proc/cpuinfo model
//! name), or `tdp_w / n` when the configuration gives `tdp_w` for all `n` logical CPUs visible to the
//! OS. The visible CPUs draw at most `n x W_t`. This process tree uses the fraction
//! `share = cpu_time / (wall x n)` of that capacity (`cpu_time` = user + system time of this
//! process, all threads, `CLOCK_PROCESS_CPUTIME_ID`, plus its descendants). Its power and energy are
//!
//! ```text
//! P_cpu = n x W_t x share = W_t x cpu_time / wall        E_cpu = W_t x cpu_time
//! ```
//!
//! so the energy depends only on this process tree's CPU time: a busy process outside the tree
//! adds its own CPU time to its own account, never to ours, and a 3 ms workload gets 3 ms worth of
//! energy. Idle/static power of the package is not attributed (a marginal, process-level model, as
//! CodeCarbon's `tracking_mode="process"`); TDP is a thermal design figure, so for a fully loaded
//! CPU the estimate is an upper-end, not a measurement. This is the method of Green Algorithms
//! (Lannelongue, Grealey & Inouye 2021, Adv. Sci. 8:2100707: power = cores x per-core TDP x usage)
//! at hardware-thread granularity.
//!
//! # Where the TDP comes from ([`CpuPowerModel::resolve`])
//!
//! 1. `tdp_w` in the configuration (CodeCarbon's `force_cpu_power`), spread over the visible
//!    logical CPUs;
//! 2. CodeCarbon 3.3.2's CPU power table (`data/codecarbon/cpu_power.csv`, ~4,900 parts, MIT),
//!    matched with CodeCarbon's three steps ([`match_codecarbon`]: exact name, cleaned name,
//!    unique word-set match) and spread over the part's threads ([`TDP_TABLE`] when it knows the
//!    part, else /proc/cpuinfo `siblings`);
//! 3. Forge's own [`TDP_TABLE`] (manufacturer TDP and hardware threads per package, Intel ARK /
//!    AMD product pages), matched by the longest key followed by a non-alphanumeric character or
//!    the end (so "Ryzen 5 3600" does not match "Ryzen 5 3600X");
//! 4. the CPU family/model numbers (virtual machines often hide the model name, e.g. "Intel(R)
//!    Xeon(R) Processor" or "AMD EPYC"): a representative part of that microarchitecture
//!    ([`MICROARCH_TABLE`]);
//! 5. [`DEFAULT_W_PER_THREAD`], CodeCarbon's 4 W per thread.
//!
//! The source used is recorded ([`TdpSource`], `Emissions::tdp_source`).

use serde::{Deserialize, Serialize};

/// Per-thread full-load power for an unknown CPU: 4.0 W.
///
/// Rationale: server parts in [`TDP_TABLE`] range 1.4-5.3 W per thread (e.g. EPYC 7763 280 W/128 =
/// 2.2 W; Xeon Gold 6248 150 W/40 = 3.75 W), desktop parts 4-8 W; 4 W sits near the table's median
/// (checked by a test) and errs towards over- rather than under-estimating servers.
pub const DEFAULT_W_PER_THREAD: f64 = 4.0;

/// One TDP table row: a model-name key, package TDP in W, hardware threads per package.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TdpEntry {
    /// Substring of the /proc/cpuinfo model name.
    pub key: &'static str,
    /// Package TDP, W.
    pub tdp_w: f64,
    /// Hardware threads per package.
    pub threads: u32,
}

impl TdpEntry {
    /// Full-load power per hardware thread, W.
    pub fn w_per_thread(&self) -> f64 {
        self.tdp_w / f64::from(self.threads)
    }
}

const fn e(key: &'static str, tdp_w: f64, threads: u32) -> TdpEntry {
    TdpEntry {
        key,
        tdp_w,
        threads,
    }
}

/// Built-in TDP table (Intel ARK, AMD product specifications).
pub const TDP_TABLE: &[TdpEntry] = &[
    // Intel Xeon Scalable (Skylake/Cascade Lake/Ice Lake/Sapphire Rapids/Emerald Rapids)
    e("Xeon(R) Platinum 8592+", 350.0, 128),
    e("Xeon(R) Platinum 8580", 350.0, 120),
    e("Xeon(R) Platinum 8480+", 350.0, 112),
    e("Xeon(R) Platinum 8480C", 350.0, 112),
    e("Xeon(R) Platinum 8470", 350.0, 104),
    e("Xeon(R) Platinum 8468", 350.0, 96),
    e("Xeon(R) Platinum 8380", 270.0, 80),
    e("Xeon(R) Platinum 8358", 250.0, 64),
    e("Xeon(R) Platinum 8280", 205.0, 56),
    e("Xeon(R) Platinum 8180", 205.0, 56),
    e("Xeon(R) Gold 6338", 205.0, 64),
    e("Xeon(R) Gold 6342", 230.0, 48),
    e("Xeon(R) Gold 6330", 205.0, 56),
    e("Xeon(R) Gold 6248R", 205.0, 48),
    e("Xeon(R) Gold 6248", 150.0, 40),
    e("Xeon(R) Gold 6240", 150.0, 36),
    e("Xeon(R) Gold 6230", 125.0, 40),
    e("Xeon(R) Gold 6226R", 150.0, 32),
    e("Xeon(R) Gold 6154", 200.0, 36),
    e("Xeon(R) Gold 6148", 150.0, 40),
    e("Xeon(R) Gold 6130", 125.0, 32),
    e("Xeon(R) Gold 5218", 125.0, 32),
    e("Xeon(R) Gold 5220", 125.0, 36),
    e("Xeon(R) Silver 4214", 85.0, 24),
    e("Xeon(R) Silver 4210", 85.0, 20),
    e("Xeon(R) W-3335", 250.0, 32),
    e("Xeon(R) CPU E5-2699 v4", 145.0, 44),
    e("Xeon(R) CPU E5-2698 v4", 135.0, 40),
    e("Xeon(R) CPU E5-2690 v4", 135.0, 28),
    e("Xeon(R) CPU E5-2686 v4", 145.0, 36),
    e("Xeon(R) CPU E5-2683 v4", 120.0, 32),
    e("Xeon(R) CPU E5-2680 v4", 120.0, 28),
    e("Xeon(R) CPU E5-2650 v4", 105.0, 24),
    e("Xeon(R) CPU E5-2630 v4", 85.0, 20),
    // AMD EPYC (Rome 7xx2, Milan 7xx3, Genoa/Bergamo 9xx4)
    e("EPYC 9754", 360.0, 256),
    e("EPYC 9654", 360.0, 192),
    e("EPYC 9554", 360.0, 128),
    e("EPYC 9474F", 360.0, 96),
    e("EPYC 9454", 290.0, 96),
    e("EPYC 9354", 280.0, 64),
    e("EPYC 7763", 280.0, 128),
    e("EPYC 7713", 225.0, 128),
    e("EPYC 7543", 225.0, 64),
    e("EPYC 7413", 180.0, 48),
    e("EPYC 7313", 155.0, 32),
    e("EPYC 7H12", 280.0, 128),
    e("EPYC 7742", 225.0, 128),
    e("EPYC 7702", 200.0, 128),
    e("EPYC 7502", 180.0, 64),
    e("EPYC 7452", 155.0, 64),
    e("EPYC 7352", 155.0, 48),
    e("Threadripper 3990X", 280.0, 128),
    e("Threadripper 2950X", 180.0, 32),
    // Intel Core desktop / laptop
    e("i9-13900K", 125.0, 32),
    e("i9-12900K", 125.0, 24),
    e("i7-13700K", 125.0, 24),
    e("i7-12700K", 125.0, 20),
    e("i5-13600K", 125.0, 20),
    e("i5-12600K", 125.0, 16),
    e("i7-10700", 65.0, 16),
    e("i7-9700K", 95.0, 8),
    e("i7-8700K", 95.0, 12),
    e("i7-8700", 65.0, 12),
    e("i7-8550U", 15.0, 8),
    e("i5-10210U", 15.0, 8),
    e("i5-8250U", 15.0, 8),
    // AMD Ryzen desktop
    e("Ryzen 9 7950X3D", 120.0, 32),
    e("Ryzen 9 7950X", 170.0, 32),
    e("Ryzen 9 5950X", 105.0, 32),
    e("Ryzen 9 5900X", 105.0, 24),
    e("Ryzen 9 3900X", 105.0, 24),
    e("Ryzen 7 7700X", 105.0, 16),
    e("Ryzen 7 5800X", 105.0, 16),
    e("Ryzen 7 3700X", 65.0, 16),
    e("Ryzen 5 5600X", 65.0, 12),
    e("Ryzen 5 3600X", 95.0, 12),
    e("Ryzen 5 3600", 65.0, 12),
];

/// Fallback for hidden model names: (vendor, family, model) -> representative part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MicroarchEntry {
    /// `vendor_id` from /proc/cpuinfo.
    pub vendor: &'static str,
    /// `cpu family`.
    pub family: u32,
    /// `model`.
    pub model: u32,
    /// Microarchitecture name.
    pub name: &'static str,
    /// Representative part (a [`TDP_TABLE`] key).
    pub representative: &'static str,
}

const fn m(
    vendor: &'static str,
    family: u32,
    model: u32,
    name: &'static str,
    representative: &'static str,
) -> MicroarchEntry {
    MicroarchEntry {
        vendor,
        family,
        model,
        name,
        representative,
    }
}

/// Microarchitecture fallback table (Intel family 6 server models; AMD families 0x17/0x19).
pub const MICROARCH_TABLE: &[MicroarchEntry] = &[
    m(
        "GenuineIntel",
        6,
        207,
        "Emerald Rapids",
        "Xeon(R) Platinum 8580",
    ),
    m(
        "GenuineIntel",
        6,
        143,
        "Sapphire Rapids",
        "Xeon(R) Platinum 8480+",
    ),
    m(
        "GenuineIntel",
        6,
        106,
        "Ice Lake-SP",
        "Xeon(R) Platinum 8380",
    ),
    m(
        "GenuineIntel",
        6,
        85,
        "Skylake/Cascade Lake-SP",
        "Xeon(R) Platinum 8280",
    ),
    m(
        "GenuineIntel",
        6,
        79,
        "Broadwell-EP",
        "Xeon(R) CPU E5-2686 v4",
    ),
    m("AuthenticAMD", 25, 17, "Zen 4 (Genoa)", "EPYC 9654"),
    m("AuthenticAMD", 25, 1, "Zen 3 (Milan)", "EPYC 7763"),
    m("AuthenticAMD", 23, 49, "Zen 2 (Rome)", "EPYC 7742"),
];

/// What /proc/cpuinfo says about the CPU.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuInfo {
    /// `model name` of the first processor.
    pub model_name: String,
    /// `vendor_id`.
    pub vendor: String,
    /// `cpu family`.
    pub family: Option<u32>,
    /// `model`.
    pub model: Option<u32>,
    /// `siblings`: logical CPUs per package as the OS sees them (a VM's virtual socket).
    #[serde(default)]
    pub siblings: Option<u32>,
}

impl CpuInfo {
    /// Parses the first processor block of /proc/cpuinfo text.
    pub fn parse(cpuinfo: &str) -> Self {
        let mut info = CpuInfo::default();
        for line in cpuinfo.lines() {
            if line.trim().is_empty() && !info.model_name.is_empty() {
                break;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "model name" if info.model_name.is_empty() => info.model_name = v.to_string(),
                "vendor_id" if info.vendor.is_empty() => info.vendor = v.to_string(),
                "cpu family" if info.family.is_none() => info.family = v.parse().ok(),
                "model" if info.model.is_none() => info.model = v.parse().ok(),
                "siblings" if info.siblings.is_none() => info.siblings = v.parse().ok(),
                _ => {}
            }
        }
        info
    }
}

/// Looks a model name up in [`TDP_TABLE`] (longest key followed by a non-alphanumeric or the end).
pub fn lookup_tdp(model_name: &str) -> Option<&'static TdpEntry> {
    TDP_TABLE
        .iter()
        .filter(|e| key_matches(model_name, e.key))
        .max_by_key(|e| e.key.len())
}

fn key_matches(name: &str, key: &str) -> bool {
    name.match_indices(key).any(|(i, _)| {
        name[i + key.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphanumeric())
    })
}

/// CodeCarbon's CPU power table (`data/codecarbon/cpu_power.csv`, ~4,900 Intel and AMD parts:
/// name, package TDP in W), embedded.
const CPU_POWER_CSV: &str = include_str!("../data/codecarbon/cpu_power.csv");

/// One row of CodeCarbon's CPU power table.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuPowerRow {
    /// Model name as CodeCarbon lists it.
    pub name: String,
    /// Package TDP, W.
    pub tdp_w: f64,
}

/// CodeCarbon's CPU power table, in file order.
pub fn codecarbon_cpu_table() -> &'static [CpuPowerRow] {
    static T: std::sync::OnceLock<Vec<CpuPowerRow>> = std::sync::OnceLock::new();
    T.get_or_init(|| {
        csv::Reader::from_reader(CPU_POWER_CSV.as_bytes())
            .records()
            .flatten()
            .filter_map(|r| {
                Some(CpuPowerRow {
                    name: r.get(0)?.to_string(),
                    tdp_w: r.get(1)?.trim().parse().ok()?,
                })
            })
            .collect()
    })
}

/// How a model name matched CodeCarbon's table (the three steps of CodeCarbon's
/// `TDP._get_matching_cpu`, rapidfuzz with `score_cutoff = 100`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CpuMatch {
    /// The raw model name equals a table name, ignoring case (`fuzz.ratio` = 100).
    Exact,
    /// Equal after CodeCarbon's clean-up: `(R)` removed, cut at `" CPU @ "`, `" CPU"` removed,
    /// `" @ x.yzGHz"` removed.
    Cleaned,
    /// The only table name whose word set contains, or is contained in, the cleaned name's word
    /// set (`fuzz.token_set_ratio` = 100 with one candidate; several candidates = no match).
    TokenSet,
}

impl std::fmt::Display for CpuMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CpuMatch::Exact => "exact",
            CpuMatch::Cleaned => "cleaned",
            CpuMatch::TokenSet => "token-set",
        })
    }
}

/// CodeCarbon's model-name clean-up before the second and third matching steps.
fn codecarbon_clean(model_raw: &str) -> String {
    let mut m = model_raw.replace("(R)", "");
    if let Some(i) = m.find(" CPU @ ").filter(|&i| i > 0) {
        m.truncate(i);
    }
    let m = m.replace(" CPU", "");
    // re.sub(r" @\s*\d+\.\d+GHz", "", m)
    let mut out = String::with_capacity(m.len());
    let b = m.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b' ' && b.get(i + 1) == Some(&b'@') {
            let mut j = i + 2;
            while j < b.len() && (b[j] as char).is_whitespace() {
                j += 1;
            }
            let d0 = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j > d0 && b.get(j) == Some(&b'.') {
                let d1 = j + 1;
                let mut k = d1;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                if k > d1 && m[k..].starts_with("GHz") {
                    i = k + 3;
                    continue;
                }
            }
        }
        let c = m[i..].chars().next().unwrap_or(' ');
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// rapidfuzz's `utils.default_process`: non-word characters to spaces, lower case, trimmed.
fn default_process(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' {
                c
            } else {
                ' '
            }
        })
        .collect::<String>()
        .trim()
        .to_lowercase()
}

/// Matches a /proc/cpuinfo model name against CodeCarbon's table with CodeCarbon 3.3's rules.
pub fn match_codecarbon(model_raw: &str) -> Option<(&'static CpuPowerRow, CpuMatch)> {
    let table = codecarbon_cpu_table();
    if model_raw.trim().is_empty() {
        return None;
    }
    let lower = model_raw.to_lowercase();
    if let Some(r) = table.iter().find(|r| r.name.to_lowercase() == lower) {
        return Some((r, CpuMatch::Exact));
    }
    let cleaned = codecarbon_clean(model_raw);
    let lower = cleaned.to_lowercase();
    if let Some(r) = table.iter().find(|r| r.name.to_lowercase() == lower) {
        return Some((r, CpuMatch::Cleaned));
    }
    let q = default_process(&cleaned);
    let qt: std::collections::BTreeSet<&str> = q.split_whitespace().collect();
    if qt.is_empty() {
        return None;
    }
    let mut hits = table.iter().filter(|r| {
        let n = default_process(&r.name);
        let nt: std::collections::BTreeSet<&str> = n.split_whitespace().collect();
        !nt.is_empty() && !qt.is_disjoint(&nt) && (qt.is_subset(&nt) || nt.is_subset(&qt))
    });
    match (hits.next(), hits.next()) {
        (Some(r), None) => Some((r, CpuMatch::TokenSet)),
        _ => None,
    }
}

/// Where the per-thread power came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TdpSource {
    /// `tdp_w` in the configuration / `FORGE_CPU_TDP_W` / `CODECARBON_FORCE_CPU_POWER`, divided
    /// over the visible logical CPUs.
    Config {
        /// The configured full-load power of all visible CPUs, W.
        tdp_w: f64,
    },
    /// A row of CodeCarbon's table matched the model name.
    Codecarbon {
        /// The table's name of the part.
        name: String,
        /// Which matching step found it.
        matched_by: CpuMatch,
        /// Package TDP, W.
        tdp_w: f64,
        /// Hardware threads the TDP is spread over.
        threads: u32,
        /// Where that thread count came from (`"forge table"` or `"cpuinfo siblings"`).
        threads_from: String,
    },
    /// A [`TDP_TABLE`] row matched the model name.
    Table(String),
    /// A [`MICROARCH_TABLE`] row matched family/model.
    Microarch(String),
    /// Unknown CPU: [`DEFAULT_W_PER_THREAD`].
    Default,
}

impl std::fmt::Display for TdpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TdpSource::Config { tdp_w } => write!(f, "config: {tdp_w} W for all logical CPUs"),
            TdpSource::Codecarbon {
                name,
                matched_by,
                tdp_w,
                threads,
                threads_from,
            } => write!(
                f,
                "codecarbon table ({matched_by} match): {name} ({tdp_w} W / {threads} threads, {threads_from})"
            ),
            TdpSource::Table(k) => write!(f, "table: {k}"),
            TdpSource::Microarch(k) => write!(f, "microarchitecture: {k}"),
            TdpSource::Default => write!(f, "default: {DEFAULT_W_PER_THREAD} W per thread"),
        }
    }
}

/// The per-logical-CPU power model used by the TDP estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CpuPowerModel {
    /// Full-load power per logical CPU, W.
    pub w_per_thread: f64,
    /// Where it came from.
    pub source: TdpSource,
}

impl CpuPowerModel {
    /// Chooses the per-thread power: config override, then CodeCarbon's table (fuzzy match, as
    /// CodeCarbon), then Forge's [`TDP_TABLE`], then the microarchitecture table (CPU family/model,
    /// for VMs that hide the name), then [`DEFAULT_W_PER_THREAD`] (CodeCarbon's 4 W per thread).
    ///
    /// A CodeCarbon row gives a package TDP without a thread count; the threads come from
    /// [`TDP_TABLE`] when it knows the part, else from /proc/cpuinfo's `siblings` (logical CPUs per
    /// package, as CodeCarbon's `TDP x sockets` spread over all logical CPUs), else `logical_cpus`.
    pub fn resolve(info: &CpuInfo, logical_cpus: usize, tdp_override_w: Option<f64>) -> Self {
        if let Some(t) = tdp_override_w {
            return Self {
                w_per_thread: t / logical_cpus.max(1) as f64,
                source: TdpSource::Config { tdp_w: t },
            };
        }
        let forge_row = lookup_tdp(&info.model_name);
        if let Some((row, how)) = match_codecarbon(&info.model_name) {
            let (threads, from) = match (forge_row, info.siblings) {
                (Some(e), _) => (e.threads, "forge table"),
                (None, Some(s)) if s > 0 => (s, "cpuinfo siblings"),
                _ => (logical_cpus.max(1) as u32, "logical CPUs"),
            };
            return Self {
                w_per_thread: row.tdp_w / f64::from(threads),
                source: TdpSource::Codecarbon {
                    name: row.name.clone(),
                    matched_by: how,
                    tdp_w: row.tdp_w,
                    threads,
                    threads_from: from.to_string(),
                },
            };
        }
        if let Some(e) = forge_row {
            return Self {
                w_per_thread: e.w_per_thread(),
                source: TdpSource::Table(format!(
                    "{} ({} W / {} threads)",
                    e.key, e.tdp_w, e.threads
                )),
            };
        }
        if let (Some(fam), Some(model)) = (info.family, info.model) {
            if let Some(ma) = MICROARCH_TABLE
                .iter()
                .find(|ma| ma.vendor == info.vendor && ma.family == fam && ma.model == model)
            {
                if let Some(e) = TDP_TABLE.iter().find(|e| e.key == ma.representative) {
                    return Self {
                        w_per_thread: e.w_per_thread(),
                        source: TdpSource::Microarch(format!(
                            "{} -> {} ({} W / {} threads)",
                            ma.name, e.key, e.tdp_w, e.threads
                        )),
                    };
                }
            }
        }
        Self {
            w_per_thread: DEFAULT_W_PER_THREAD,
            source: TdpSource::Default,
        }
    }

    /// Energy in joules for `cpu_time_s` seconds of this process's CPU time: `W_t x cpu_time`.
    pub fn energy_j(&self, cpu_time_s: f64) -> f64 {
        self.w_per_thread * cpu_time_s.max(0.0)
    }
}

/// This process's share of the visible CPU capacity: `cpu_time / (wall x n)`, clamped to [0, 1].
pub fn process_share(cpu_time_s: f64, wall_s: f64, logical_cpus: usize) -> f64 {
    if wall_s <= 0.0 || logical_cpus == 0 {
        return 0.0;
    }
    (cpu_time_s / (wall_s * logical_cpus as f64)).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const THIS_VM: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n";

    #[test]
    fn parses_cpuinfo_first_block() {
        let i = CpuInfo::parse(THIS_VM);
        assert_eq!(i.model_name, "Intel(R) Xeon(R) Processor");
        assert_eq!(i.vendor, "GenuineIntel");
        assert_eq!((i.family, i.model), (Some(6), Some(207)));
    }

    #[test]
    fn table_lookup_prefers_exact_part() {
        let r = lookup_tdp("AMD Ryzen 5 3600X 6-Core Processor").unwrap();
        assert_eq!(r.key, "Ryzen 5 3600X");
        let r = lookup_tdp("AMD Ryzen 5 3600 6-Core Processor").unwrap();
        assert_eq!((r.key, r.tdp_w), ("Ryzen 5 3600", 65.0));
        let r = lookup_tdp("Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz").unwrap();
        assert_eq!(r.tdp_w, 205.0);
        let r = lookup_tdp("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz").unwrap();
        assert_eq!(r.tdp_w, 150.0);
        let r = lookup_tdp("AMD EPYC 7763 64-Core Processor").unwrap();
        assert!((r.w_per_thread() - 280.0 / 128.0).abs() < 1e-12);
        assert!(lookup_tdp("Intel(R) Xeon(R) Processor").is_none());
    }

    #[test]
    fn resolve_order_config_table_microarch_default() {
        let vm = CpuInfo::parse(THIS_VM);
        let m = CpuPowerModel::resolve(&vm, 2, None);
        assert!((m.w_per_thread - 350.0 / 120.0).abs() < 1e-12, "{m:?}");
        assert!(matches!(m.source, TdpSource::Microarch(_)));
        let m = CpuPowerModel::resolve(&vm, 2, Some(30.0));
        assert_eq!(m.w_per_thread, 15.0);
        let unknown = CpuInfo {
            model_name: "Mystery CPU".into(),
            ..CpuInfo::default()
        };
        let m = CpuPowerModel::resolve(&unknown, 8, None);
        assert_eq!(
            (m.w_per_thread, m.source),
            (DEFAULT_W_PER_THREAD, TdpSource::Default)
        );
    }

    #[test]
    fn default_is_near_the_table_median() {
        let mut v: Vec<f64> = TDP_TABLE.iter().map(TdpEntry::w_per_thread).collect();
        v.sort_by(f64::total_cmp);
        let (q1, q3) = (v[v.len() / 4], v[3 * v.len() / 4]);
        assert!(
            q1 <= DEFAULT_W_PER_THREAD && DEFAULT_W_PER_THREAD <= q3,
            "{q1} {q3}"
        );
    }

    #[test]
    fn microarch_representatives_exist() {
        for ma in MICROARCH_TABLE {
            assert!(
                TDP_TABLE.iter().any(|e| e.key == ma.representative),
                "{}",
                ma.name
            );
        }
    }

    #[test]
    fn share_and_energy() {
        let m = CpuPowerModel {
            w_per_thread: 3.0,
            source: TdpSource::Default,
        };
        // 1 s of CPU time at 3 W/thread = 3 J, regardless of wall time or CPU count.
        assert_eq!(m.energy_j(1.0), 3.0);
        assert_eq!(process_share(1.0, 1.0, 2), 0.5);
        assert_eq!(process_share(5.0, 1.0, 2), 1.0);
        assert_eq!(process_share(1.0, 0.0, 2), 0.0);
    }
}
