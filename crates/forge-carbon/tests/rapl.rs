//! RAPL on a fake powercap tree, including counter wraparound.

mod common;

use common::{set_energy, write_zone, FakeProbe, EPYC_CPUINFO};
use forge_carbon::rapl::{RaplAccumulator, RaplDomain, RaplReader};
use forge_carbon::{CarbonConfig, CarbonError, CarbonTracker, EnergyMethod};

const MAX: u64 = 262_143_328_850; // a real package's max_energy_range_uj

fn fake_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let r = d.path();
    std::fs::create_dir_all(r.join("intel-rapl")).unwrap(); // the control-type dir: ignored
    write_zone(r, "intel-rapl:0", "package-0", MAX - 1_000_000, MAX); // 1 J before wrapping
    write_zone(r, "intel-rapl:0:0", "core", 5, MAX); // inside the package: skipped
    write_zone(r, "intel-rapl:0:1", "dram", 10_000_000, 65_712_999_613);
    write_zone(r, "intel-rapl:1", "package-1", 40_000_000, MAX);
    write_zone(r, "intel-rapl:1:0", "dram", 0, 65_712_999_613);
    write_zone(r, "intel-rapl-mmio:0", "package-0", 0, MAX); // duplicate interface: skipped
    write_zone(r, "intel-rapl:2", "psys", 0, MAX); // platform: skipped
    d
}

#[test]
fn discovers_packages_and_dram_only() {
    let d = fake_tree();
    let r = RaplReader::open(d.path()).unwrap();
    let names: Vec<(&str, RaplDomain)> = r
        .zones()
        .iter()
        .map(|z| (z.name.as_str(), z.domain))
        .collect();
    assert_eq!(
        names,
        vec![
            ("package-0", RaplDomain::Package),
            ("dram", RaplDomain::Dram),
            ("package-1", RaplDomain::Package),
            ("dram", RaplDomain::Dram),
        ]
    );
    assert!(r.has_dram());
}

#[test]
fn accumulator_handles_wraparound_and_repeated_wraps() {
    let d = fake_tree();
    let root = d.path();
    let r = RaplReader::open(root).unwrap();
    let mut acc = RaplAccumulator::start(&r).unwrap();
    // package-0 wraps: from MAX-1e6 to 2e6 = 3 J; package-1 +5 J; drams +1 J and +2 J.
    set_energy(root, "intel-rapl:0", 2_000_000);
    set_energy(root, "intel-rapl:1", 45_000_000);
    set_energy(root, "intel-rapl:0:1", 11_000_000);
    set_energy(root, "intel-rapl:1:0", 2_000_000);
    acc.update(&r.read().unwrap());
    let (pkg, dram) = acc.energy_j();
    assert!((pkg - 8.0).abs() < 1e-9, "{pkg}");
    assert!((dram - 3.0).abs() < 1e-9, "{dram}");
    // A second wrap of package-0 between two later samples: MAX-1 -> 1 after passing MAX-1.
    set_energy(root, "intel-rapl:0", MAX - 1);
    acc.update(&r.read().unwrap());
    set_energy(root, "intel-rapl:0", 1);
    acc.update(&r.read().unwrap());
    let (pkg2, _) = acc.energy_j();
    let expected = 8.0 + (MAX - 1 - 2_000_000) as f64 * 1e-6 + 2.0 * 1e-6;
    assert!((pkg2 - expected).abs() < 1e-6, "{pkg2} vs {expected}");
}

#[test]
fn missing_or_empty_tree_is_a_typed_error() {
    let d = tempfile::tempdir().unwrap();
    assert!(matches!(
        RaplReader::open(d.path()),
        Err(CarbonError::RaplUnavailable { .. })
    ));
    assert!(matches!(
        RaplReader::open(&d.path().join("absent")),
        Err(CarbonError::Io { .. })
    ));
    write_zone(d.path(), "intel-rapl:0", "package-0", 1, 100);
    std::fs::write(d.path().join("intel-rapl:0/energy_uj"), "garbage").unwrap();
    assert!(RaplReader::open(d.path()).is_err());
}

#[test]
fn tracker_uses_rapl_with_wraparound() {
    let d = fake_tree();
    let root = d.path().to_path_buf();
    let probe = FakeProbe::new(128, 1 << 30, EPYC_CPUINFO);
    let cfg = CarbonConfig {
        powercap_root: root.clone(),
        sample_interval_ms: 60_000,
        tracking_mode: forge_carbon::TrackingMode::Machine,
        ..CarbonConfig::default()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe.clone(), None).unwrap();
    t.start().unwrap();
    set_energy(&root, "intel-rapl:0", 2_000_000); // wrapped: +3 J
    set_energy(&root, "intel-rapl:1", 47_000_000); // +7 J
    set_energy(&root, "intel-rapl:0:1", 10_500_000); // +0.5 J
    set_energy(&root, "intel-rapl:1:0", 1_500_000); // +1.5 J
    probe.advance_self(100.0); // ignored under RAPL
    let e = t.stop().unwrap();
    assert_eq!(e.cpu_method, EnergyMethod::Rapl);
    assert_eq!(e.ram_method, EnergyMethod::Rapl);
    assert_eq!(e.tracking_mode, forge_carbon::TrackingMode::Machine);
    assert!(
        (e.cpu_energy_kwh * 3.6e6 - 10.0).abs() < 1e-9,
        "{}",
        e.cpu_energy_kwh
    );
    assert!((e.ram_energy_kwh * 3.6e6 - 2.0).abs() < 1e-9);
    assert!(e.cpu_w_per_thread.is_none());
}

#[test]
fn unreadable_rapl_falls_back_to_tdp_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(d.path().join("intel-rapl:0")).unwrap();
    std::fs::write(d.path().join("intel-rapl:0/name"), "package-0").unwrap();
    // energy_uj missing, as when it is root-only
    std::fs::write(d.path().join("intel-rapl:0/max_energy_range_uj"), "100").unwrap();
    let probe = FakeProbe::new(2, 0, EPYC_CPUINFO);
    let cfg = CarbonConfig {
        powercap_root: d.path().to_path_buf(),
        ..CarbonConfig::default()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe.clone(), None).unwrap();
    t.start().unwrap();
    probe.advance_self(1.0);
    let e = t.stop().unwrap();
    assert_eq!(e.cpu_method, EnergyMethod::TdpEstimate);
    assert!(
        e.warnings.iter().any(|w| w.contains("RAPL")),
        "{:?}",
        e.warnings
    );
    assert!((e.cpu_energy_kwh * 3.6e6 - 280.0 / 128.0).abs() < 1e-9);
}
