//! Linux RAPL (Running Average Power Limit) energy counters from the powercap sysfs tree.
//!
//! Zones are the directories `<root>/intel-rapl:N[:M]` (also used by the kernel for AMD Zen's
//! RAPL MSRs) and `<root>/amd-rapl:N[:M]`. A zone whose `name` is `package-N` counts as CPU energy,
//! `dram` as RAM energy; `core`, `uncore` (inside the package) and `psys` (platform) are skipped
//! to avoid double counting, as are the `intel-rapl-mmio` duplicates. Each zone's `energy_uj`
//! is a monotonically increasing microjoule counter that wraps to 0 after `max_energy_range_uj`:
//!
//! ```text
//! delta = end - start                          if end >= start
//! delta = (max_energy_range_uj - start) + end  otherwise (one wrap)
//! ```
//!
//! A counter can wrap more than once during a long run (at 200 W a 2^32 uJ range wraps in ~21 s),
//! so the tracker's background sampler reads the counters every `sample_interval_ms` and
//! accumulates deltas ([`RaplAccumulator`]). RAPL measures whole packages: the energy includes other
//! processes on the machine (`tracking_mode = "machine"`).
//! Reference: Intel SDM vol. 3B ch. 15.10 "Platform specific power management support" (RAPL);
//! Linux `Documentation/power/powercap/powercap.rst`.

use std::path::{Path, PathBuf};

use crate::error::{CarbonError, Result};

/// The default powercap root.
pub const DEFAULT_POWERCAP_ROOT: &str = "/sys/class/powercap";

/// What a zone measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaplDomain {
    /// A CPU package (`package-N`).
    Package,
    /// DRAM attached to a package (`dram`).
    Dram,
}

/// One RAPL zone.
#[derive(Debug, Clone, PartialEq)]
pub struct RaplZone {
    /// Zone directory.
    pub path: PathBuf,
    /// The zone's `name` file.
    pub name: String,
    /// Package or DRAM.
    pub domain: RaplDomain,
    /// Counter range in microjoules (`max_energy_range_uj`).
    pub max_energy_range_uj: u64,
}

/// Reader of all package and DRAM zones under a powercap root.
#[derive(Debug, Clone)]
pub struct RaplReader {
    zones: Vec<RaplZone>,
}

fn read_trim(p: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(p)?.trim().to_string())
}

fn read_u64(p: &Path) -> Result<u64> {
    let s = read_trim(p).map_err(|e| CarbonError::io(p, e))?;
    s.parse::<u64>().map_err(|_| CarbonError::BadFile {
        path: p.to_path_buf(),
        reason: format!("expected an unsigned integer, got {s:?}"),
    })
}

/// Energy between two readings of a counter with range `max_range_uj`, handling one wraparound.
pub fn counter_delta_uj(start: u64, end: u64, max_range_uj: u64) -> u64 {
    if end >= start {
        end - start
    } else {
        max_range_uj.saturating_sub(start) + end
    }
}

impl RaplReader {
    /// Discovers the zones under `root` and checks that every counter is readable.
    ///
    /// # Errors
    /// [`CarbonError::Io`] when `root` cannot be listed or a counter cannot be read (e.g. `energy_uj`
    /// is root-only on kernels since 5.10), [`CarbonError::BadFile`] for an unparsable counter,
    /// and [`CarbonError::RaplUnavailable`] when no package zone exists.
    pub fn open(root: &Path) -> Result<Self> {
        let entries = std::fs::read_dir(root).map_err(|e| CarbonError::io(root, e))?;
        let mut zones = Vec::new();
        let mut dirs: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        for dir in dirs {
            let Some(fname) = dir.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            if !(fname.starts_with("intel-rapl:") || fname.starts_with("amd-rapl:")) {
                continue;
            }
            let Ok(name) = read_trim(&dir.join("name")) else {
                continue;
            };
            let domain = if name.starts_with("package") {
                RaplDomain::Package
            } else if name == "dram" {
                RaplDomain::Dram
            } else {
                continue;
            };
            let max_energy_range_uj = read_u64(&dir.join("max_energy_range_uj"))?;
            read_u64(&dir.join("energy_uj"))?;
            zones.push(RaplZone {
                path: dir,
                name,
                domain,
                max_energy_range_uj,
            });
        }
        if !zones.iter().any(|z| z.domain == RaplDomain::Package) {
            return Err(CarbonError::RaplUnavailable {
                root: root.to_path_buf(),
                reason: "no readable package zone".to_string(),
            });
        }
        Ok(Self { zones })
    }

    /// The zones found.
    pub fn zones(&self) -> &[RaplZone] {
        &self.zones
    }

    /// True when at least one DRAM zone exists.
    pub fn has_dram(&self) -> bool {
        self.zones.iter().any(|z| z.domain == RaplDomain::Dram)
    }

    /// Reads every zone's `energy_uj`, in [`RaplReader::zones`] order.
    ///
    /// # Errors
    /// [`CarbonError::Io`] / [`CarbonError::BadFile`] when a counter cannot be read or parsed.
    pub fn read(&self) -> Result<Vec<u64>> {
        self.zones
            .iter()
            .map(|z| read_u64(&z.path.join("energy_uj")))
            .collect()
    }
}

/// Accumulates counter deltas over many readings so that repeated wraparounds are counted.
#[derive(Debug, Clone)]
pub struct RaplAccumulator {
    last: Vec<u64>,
    max: Vec<u64>,
    domains: Vec<RaplDomain>,
    total_uj: Vec<u128>,
}

impl RaplAccumulator {
    /// Starts from a first reading of `reader`.
    ///
    /// # Errors
    /// As [`RaplReader::read`].
    pub fn start(reader: &RaplReader) -> Result<Self> {
        let first = reader.read()?;
        Ok(Self {
            total_uj: vec![0; first.len()],
            last: first,
            max: reader.zones.iter().map(|z| z.max_energy_range_uj).collect(),
            domains: reader.zones.iter().map(|z| z.domain).collect(),
        })
    }

    /// Adds the deltas from the previous reading to `reading` (same zone order).
    pub fn update(&mut self, reading: &[u64]) {
        for (i, &now) in reading.iter().enumerate().take(self.last.len()) {
            self.total_uj[i] += u128::from(counter_delta_uj(self.last[i], now, self.max[i]));
            self.last[i] = now;
        }
    }

    /// Accumulated energy of the package zones and of the DRAM zones, in joules.
    pub fn energy_j(&self) -> (f64, f64) {
        let mut pkg = 0.0;
        let mut dram = 0.0;
        for (d, &uj) in self.domains.iter().zip(&self.total_uj) {
            let j = uj as f64 * 1e-6;
            match d {
                RaplDomain::Package => pkg += j,
                RaplDomain::Dram => dram += j,
            }
        }
        (pkg, dram)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_without_and_with_wrap() {
        assert_eq!(counter_delta_uj(100, 250, 1000), 150);
        assert_eq!(counter_delta_uj(900, 50, 1000), 150);
        assert_eq!(counter_delta_uj(5, 5, 1000), 0);
    }
}
