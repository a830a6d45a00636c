//! forge-carbon against values computed by CodeCarbon 3.3.2 itself
//! (tests/fixtures/codecarbon_reference.json, made by make_codecarbon_reference.py):
//! carbon intensity of every country, regions, cloud regions; CPU-name matching; RAM model.
//! Plus CodeCarbon's accounting identities (PUE per component) and the machine mode.

mod common;

use common::FakeProbe;
use forge_carbon::intensity::resolve;
use forge_carbon::{
    cpu::match_codecarbon, ram::codecarbon_ram_power_w, CarbonConfig, CarbonTracker, EnergyMethod,
    TrackingMode,
};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("fixtures/codecarbon_reference.json")).unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[test]
fn every_country_and_region_matches_codecarbon() {
    let r = reference();
    let rows = r["intensity"].as_array().unwrap();
    assert!(rows.len() > 220);
    for row in rows {
        let iso = row["country"].as_str().unwrap();
        let region = row["region"].as_str();
        let want = row["g_per_kwh"].as_f64().unwrap();
        let got = resolve(iso, region, None);
        assert!(
            close(got.g_per_kwh, want),
            "{iso} {region:?}: forge {} vs codecarbon {want}",
            got.g_per_kwh
        );
    }
}

#[test]
fn every_cloud_region_matches_codecarbon() {
    let r = reference();
    for row in r["cloud"].as_array().unwrap() {
        let (p, reg) = (
            row["provider"].as_str().unwrap(),
            row["region"].as_str().unwrap(),
        );
        let got = resolve("WLD", None, Some((p, reg)));
        assert!(
            close(got.g_per_kwh, row["g_per_kwh"].as_f64().unwrap()),
            "{p}/{reg}"
        );
        assert_eq!(got.source, forge_carbon::IntensitySource::Cloud);
    }
}

#[test]
fn cpu_names_match_as_codecarbon_matches_them() {
    let r = reference();
    for row in r["cpu"].as_array().unwrap() {
        let model = row["model"].as_str().unwrap();
        let got = match_codecarbon(model).map(|(row, _)| (row.name.clone(), row.tdp_w));
        let want = row["match"]
            .as_str()
            .map(|m| (m.to_string(), row["tdp_w"].as_f64().unwrap()));
        assert_eq!(got, want, "{model}");
    }
}

#[test]
fn ram_model_matches_codecarbon() {
    let r = reference();
    for row in r["ram"].as_array().unwrap() {
        let gb = row["gb"].as_f64().unwrap();
        assert!(
            close(
                codecarbon_ram_power_w(gb, false),
                row["w"].as_f64().unwrap()
            ),
            "{gb} GB"
        );
    }
}

#[test]
fn components_sum_to_energy_consumed_with_pue_1_2() {
    let probe = FakeProbe::new(2, 4 << 30, common::EPYC_CPUINFO);
    let cfg = CarbonConfig {
        pue: 1.2,
        wue: Some(1.8),
        use_rapl: false,
        use_nvml: false,
        country_iso: "FRA".into(),
        ..CarbonConfig::default()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe.clone(), None).unwrap();
    t.start().unwrap();
    probe.advance_self(2.0);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let e = t.stop().unwrap();
    let sum = e.cpu_energy_kwh + e.gpu_energy_kwh + e.ram_energy_kwh;
    assert!(
        (e.energy_kwh - sum).abs() <= 1e-15 * sum,
        "{} vs {sum}",
        e.energy_kwh
    );
    // Each component carries the PUE: CPU = 2 s x 280/128 W x 1.2.
    let cpu_j = 2.0 * 280.0 / 128.0 * 1.2;
    assert!((e.cpu_energy_kwh * 3.6e6 - cpu_j).abs() < 1e-9);
    assert!((e.cpu_power_w * e.duration_s - cpu_j).abs() < 1e-9);
    assert!((e.ram_power_w - 4.0 * 0.375 * 1.2).abs() < 1e-12);
    assert!((e.it_energy_kwh() - sum / 1.2).abs() < 1e-18);
    assert!((e.emissions_kg - e.energy_kwh * 56.039 / 1000.0).abs() < 1e-18);
    assert_eq!(e.water_consumed_l, Some(e.energy_kwh * 1.8));
}

#[test]
fn machine_mode_is_codecarbons_model() {
    // 2 logical CPUs, 40 W configured full load; 16 GiB -> 2 DIMMs -> 10 W.
    let probe = FakeProbe::new(2, 1 << 30, "model name\t: Unknown CPU\n");
    let cfg = CarbonConfig {
        tracking_mode: TrackingMode::Machine,
        tdp_w: Some(40.0),
        use_rapl: false,
        use_nvml: false,
        sample_interval_ms: 60_000,
        ..CarbonConfig::default()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe.clone(), None).unwrap();
    t.start().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    probe.advance_machine(1.0, 0.5); // half the machine busy
    probe.advance_self(0.01); // our own CPU time does not enter machine mode
    let e = t.stop().unwrap();
    assert_eq!(e.tracking_mode, TrackingMode::Machine);
    assert_eq!(e.cpu_method, EnergyMethod::MachineLoad);
    assert_eq!(e.ram_method, EnergyMethod::DimmModel);
    // P_cpu = 40 x (0.1 + 0.9 x 0.5^3) = 8.5 W over the wall time.
    assert!((e.cpu_power_w - 8.5).abs() < 1e-9, "{}", e.cpu_power_w);
    assert!((e.ram_power_w - 10.0).abs() < 1e-12, "{}", e.ram_power_w);
    assert!((e.cpu_utilization_percent.unwrap() - 50.0).abs() < 1e-9);
    assert!((e.ram_utilization_percent.unwrap() - 25.0).abs() < 1e-9);
    let cpu = e.components.iter().find(|c| c.component == "cpu").unwrap();
    assert_eq!((cpu.scope.as_str(), cpu.assumed_w), ("machine", Some(40.0)));
    let ram = e.components.iter().find(|c| c.component == "ram").unwrap();
    assert_eq!((ram.scope.as_str(), ram.assumed_w), ("machine", Some(10.0)));
    // A forced RAM power replaces the model, as CodeCarbon's force_ram_power.
    let cfg = CarbonConfig {
        ram_power_w: Some(3.0),
        ..t.config().clone()
    };
    let mut t = CarbonTracker::with_parts(cfg, probe.clone(), None).unwrap();
    t.start().unwrap();
    let e = t.stop().unwrap();
    assert_eq!(e.ram_method, EnergyMethod::Constant);
    // energy / duration: exact up to rounding
    assert!((e.ram_power_w - 3.0).abs() < 1e-9, "{}", e.ram_power_w);
}
