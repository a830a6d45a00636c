//! RAM power model.
//!
//! `P_ram = ram_w_per_gb x RSS_GiB`, with `ram_w_per_gb` = 0.375 W/GB by default: CodeCarbon's
//! historical RAM model, "3 W per 8 GB" (CodeCarbon methodology docs, after Micron's DDR power
//! estimates; also carbontracker uses 3/8 W/GB). The memory attributed is this process's resident
//! set size (RSS, /proc/self/statm), averaged over the readings taken (start, stop and the
//! background samples when a sampler runs), as CodeCarbon's `tracking_mode="process"` does.
//! `E_ram = P_ram x wall time`.

/// Default RAM power per GiB of resident memory, W/GB (3 W per 8 GB).
pub const DEFAULT_RAM_W_PER_GB: f64 = 3.0 / 8.0;

/// Bytes per GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// RAM power in W for `rss_bytes` of resident memory.
pub fn ram_power_w(rss_bytes: f64, w_per_gb: f64) -> f64 {
    w_per_gb * rss_bytes.max(0.0) / GIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_watts_per_eight_gb() {
        assert!((ram_power_w(8.0 * GIB, DEFAULT_RAM_W_PER_GB) - 3.0).abs() < 1e-12);
        assert_eq!(ram_power_w(-1.0, DEFAULT_RAM_W_PER_GB), 0.0);
    }
}
