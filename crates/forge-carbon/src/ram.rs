//! RAM power models: Forge's process model and CodeCarbon 3.x's machine model.
//!
//! - `tracking_mode = "process"` (Forge's default): `P_ram = ram_w_per_gb x RSS_GiB` of this
//!   process tree, `ram_w_per_gb` = 0.375 W/GB by default: CodeCarbon 2.x's "3 W per 8 GB" (after
//!   Micron's DDR power estimates; carbontracker uses 3/8 W/GB too). RSS is averaged over the
//!   readings taken (start, stop and the background samples). `E_ram = P_ram x wall time`.
//!   This is a marginal model: memory this run does not hold is not charged to it.
//! - `tracking_mode = "machine"` (CodeCarbon 3.x's default): the whole machine's memory,
//!   [`codecarbon_ram_power_w`] = 5 W per estimated DIMM with at least 2 DIMMs (1.5 W / 3 W
//!   minimum on ARM), DIMM count estimated from the total RAM exactly as CodeCarbon 3.3's
//!   `RAM._estimate_dimm_count` / `_calculate_ram_power`
//!   (<https://docs.codecarbon.io/latest/explanation/methodology/#ram>).
//!
//! `ram_power_w` in the configuration (`CODECARBON_FORCE_RAM_POWER`) replaces either model with a
//! constant, as CodeCarbon's `force_ram_power`.

/// Default RAM power per GiB of resident memory, W/GB (3 W per 8 GB).
pub const DEFAULT_RAM_W_PER_GB: f64 = 3.0 / 8.0;

/// Bytes per GiB.
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// CodeCarbon's power per DIMM on x86, W (`RAM_SLOT_POWER_X86`).
pub const W_PER_DIMM_X86: f64 = 5.0;

/// RAM power in W for `rss_bytes` of resident memory.
pub fn ram_power_w(rss_bytes: f64, w_per_gb: f64) -> f64 {
    w_per_gb * rss_bytes.max(0.0) / GIB
}

/// CodeCarbon 3.3's DIMM-count heuristic for `total_gb` GiB of RAM.
pub fn estimate_dimm_count(total_gb: f64) -> u32 {
    if total_gb <= 2.0 {
        return 1;
    }
    if total_gb <= 16.0 {
        return 2;
    }
    if total_gb <= 32.0 {
        return 4;
    }
    if total_gb <= 64.0 {
        return 4;
    }
    if total_gb <= 128.0 {
        return 8;
    }
    for dimm_size in [128.0, 64.0, 32.0, 16.0, 8.0, 4.0] {
        if dimm_size <= total_gb / 8.0 {
            return ((total_gb / dimm_size).ceil() as u32).min(32);
        }
    }
    8
}

/// CodeCarbon 3.3's machine RAM power for `total_gb` GiB: per-DIMM power with diminishing
/// marginal power above 4, 8 and 16 DIMMs, and a floor of 2 DIMMs (x86) or 3 W (ARM).
pub fn codecarbon_ram_power_w(total_gb: f64, arm: bool) -> f64 {
    let n = f64::from(estimate_dimm_count(total_gb));
    let (per, min) = if arm {
        (1.5, 3.0)
    } else {
        (W_PER_DIMM_X86, W_PER_DIMM_X86 * 2.0)
    };
    let p = if n <= 4.0 {
        per * n
    } else if n <= 8.0 {
        per * 4.0 + per * 0.9 * (n - 4.0)
    } else if n <= 16.0 {
        per * 4.0 + per * 0.9 * 4.0 + per * 0.8 * (n - 8.0)
    } else {
        per * 4.0 + per * 0.9 * 4.0 + per * 0.8 * 8.0 + per * 0.7 * (n - 16.0)
    };
    p.max(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_watts_per_eight_gb() {
        assert!((ram_power_w(8.0 * GIB, DEFAULT_RAM_W_PER_GB) - 3.0).abs() < 1e-12);
        assert_eq!(ram_power_w(-1.0, DEFAULT_RAM_W_PER_GB), 0.0);
    }

    #[test]
    fn codecarbon_machine_model() {
        // Values from CodeCarbon 3.3.2: RAM()._calculate_ram_power(gb) on x86.
        for (gb, w) in [
            (1.0, 10.0),
            (8.0, 10.0),
            (15.6, 10.0),
            (31.3, 20.0),
            (64.0, 20.0),
            (128.0, 38.0),
            (256.0, 38.0),
            (512.0, 38.0),
            (1024.0, 38.0),
            (4096.0, 126.0),
        ] {
            assert!(
                (codecarbon_ram_power_w(gb, false) - w).abs() < 1e-9,
                "{gb} GB"
            );
        }
        assert_eq!(codecarbon_ram_power_w(4.0, true), 3.0);
    }
}
