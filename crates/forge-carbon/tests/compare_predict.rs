//! compare_emissions and the carbontracker-style predictor.

use forge_carbon::compare::{KG_CO2_PER_KM_CAR, KG_CO2_PER_TREE_MONTH};
use forge_carbon::{
    compare_emissions, track, CarbonConfig, CarbonError, EnergyPredictor, EpochRecord,
};

fn with(energy_kwh: f64, kg: f64, dur: f64) -> forge_carbon::Emissions {
    let cfg = CarbonConfig {
        use_rapl: false,
        use_nvml: false,
        ..CarbonConfig::default()
    };
    let (_, mut e) = track(&cfg, || ()).unwrap();
    e.energy_kwh = energy_kwh;
    e.emissions_kg = kg;
    e.duration_s = dur;
    e
}

#[test]
fn savings_and_equivalents() {
    let base = with(2.0, 1.0, 100.0);
    let lora = with(0.5, 0.25, 40.0);
    let worse = with(3.0, 1.5, 150.0);
    let c = compare_emissions(&base, &[("lora", &lora), ("worse", &worse)]);
    let r = &c.runs[0];
    assert_eq!(r.run.label, "lora");
    assert_eq!(r.energy_savings_pct, Some(75.0));
    assert_eq!(r.emissions_savings_pct, Some(75.0));
    assert_eq!(r.duration_savings_pct, Some(60.0));
    assert_eq!(r.energy_ratio, Some(0.25));
    assert_eq!(r.emissions_saved_kg, 0.75);
    // EPA: 400 g/mile -> 0.75 kg = 0.75 / (0.4 / 1.609344) km = 3.01752 km
    assert!((r.saved_equivalents.km_driven - 3.01752).abs() < 1e-9);
    // 11 kg/tree/year -> 0.75 kg = 0.75 * 12 / 11 tree-months
    assert!((r.saved_equivalents.tree_months - 9.0 / 11.0).abs() < 1e-12);
    assert_eq!(c.runs[1].emissions_savings_pct, Some(-50.0));
    assert!(c.runs[1].saved_equivalents.km_driven < 0.0);
    assert!((c.baseline.equivalents.km_driven - 1.0 / KG_CO2_PER_KM_CAR).abs() < 1e-12);
    assert!((KG_CO2_PER_TREE_MONTH - 0.916_666_666_666_666_6).abs() < 1e-15);
    let md = c.to_markdown();
    assert!(md.contains("| lora |") && md.contains("75.0%"));
    // Zero baseline: no percentage.
    let zero = with(0.0, 0.0, 0.0);
    let c = compare_emissions(&zero, &[("x", &lora)]);
    assert_eq!(c.runs[0].energy_savings_pct, None);
}

#[test]
fn predictor_follows_carbontracker() {
    let mut p = EnergyPredictor::new(10).unwrap();
    assert!(p.predict().is_none());
    p.record(EpochRecord {
        duration_s: 10.0,
        energy_kwh: 2.0,
        emissions_kg: 1.0,
    })
    .unwrap();
    let pr = p.predict().unwrap();
    assert_eq!(pr.predicted_total.energy_kwh, 20.0);
    assert_eq!(pr.remaining.energy_kwh, 18.0);
    p.record(EpochRecord {
        duration_s: 30.0,
        energy_kwh: 4.0,
        emissions_kg: 2.0,
    })
    .unwrap();
    let pr = p.predict().unwrap();
    assert_eq!(pr.epochs_observed, 2);
    assert_eq!(pr.mean_epoch.energy_kwh, 3.0);
    assert_eq!(pr.predicted_total.energy_kwh, 30.0);
    assert_eq!(pr.predicted_total.duration_s, 200.0);
    assert_eq!(pr.predicted_total.emissions_kg, 15.0);
    assert_eq!(pr.remaining.emissions_kg, 12.0);
}

#[test]
fn predictor_errors() {
    assert!(matches!(
        EnergyPredictor::new(0),
        Err(CarbonError::InvalidEpochs(_))
    ));
    let mut p = EnergyPredictor::new(1).unwrap();
    let bad = EpochRecord {
        duration_s: 1.0,
        energy_kwh: f64::NAN,
        emissions_kg: 0.0,
    };
    assert!(matches!(
        p.record(bad),
        Err(CarbonError::InvalidMeasurement {
            what: "energy_kwh",
            ..
        })
    ));
    let neg = EpochRecord {
        duration_s: -1.0,
        ..EpochRecord::default()
    };
    assert!(p.record(neg).is_err());
    p.record(EpochRecord::default()).unwrap();
    assert!(matches!(
        p.record(EpochRecord::default()),
        Err(CarbonError::InvalidEpochs(_))
    ));
}

#[test]
fn predictor_from_real_epochs() {
    let cfg = CarbonConfig {
        use_rapl: false,
        use_nvml: false,
        ..CarbonConfig::default()
    };
    let mut p = EnergyPredictor::new(5).unwrap();
    let (_, e) = track(&cfg, || (0..200_000u64).sum::<u64>()).unwrap();
    p.record_emissions(&e).unwrap();
    let pr = p.predict().unwrap();
    assert!(
        (pr.predicted_total.energy_kwh - 5.0 * e.energy_kwh).abs() <= 1e-15 * e.energy_kwh.max(1.0)
    );
}
