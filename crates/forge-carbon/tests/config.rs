//! Bad configuration -> typed errors; environment overrides.

use std::collections::HashMap;

use forge_carbon::{CarbonConfig, CarbonError, CarbonTracker, IntensitySource};

#[test]
fn negative_pue_is_rejected() {
    let c = CarbonConfig {
        pue: -1.2,
        ..CarbonConfig::default()
    };
    assert!(matches!(c.validate(), Err(CarbonError::InvalidPue(v)) if v == -1.2));
    assert!(matches!(
        CarbonTracker::new(c),
        Err(CarbonError::InvalidPue(_))
    ));
    let c = CarbonConfig {
        pue: f64::NAN,
        ..CarbonConfig::default()
    };
    assert!(matches!(c.validate(), Err(CarbonError::InvalidPue(_))));
    let c = CarbonConfig {
        pue: 0.9,
        ..CarbonConfig::default()
    };
    assert!(c.validate().is_err());
}

#[test]
fn negative_intensity_is_rejected() {
    let c = CarbonConfig {
        carbon_intensity_g_per_kwh: Some(-5.0),
        ..CarbonConfig::default()
    };
    let err = c.validate().unwrap_err();
    assert!(matches!(err, CarbonError::InvalidIntensity(v) if v == -5.0));
    assert!(err.to_string().contains("-5"));
}

#[test]
fn unknown_country_is_rejected() {
    let c = CarbonConfig {
        country_iso: "ATL".into(),
        ..CarbonConfig::default()
    };
    let err = c.validate().unwrap_err();
    assert!(matches!(&err, CarbonError::UnknownCountry(s) if s == "ATL"));
    assert!(err.to_string().contains("ATL"));
}

#[test]
fn bad_power_settings_are_rejected() {
    let c = CarbonConfig {
        tdp_w: Some(0.0),
        ..CarbonConfig::default()
    };
    assert!(matches!(
        c.validate(),
        Err(CarbonError::InvalidPower { what: "tdp_w", .. })
    ));
    let c = CarbonConfig {
        ram_w_per_gb: -0.1,
        ..CarbonConfig::default()
    };
    assert!(matches!(
        c.validate(),
        Err(CarbonError::InvalidPower {
            what: "ram_w_per_gb",
            ..
        })
    ));
}

#[test]
fn defaults_are_world_average_and_pue_one() {
    let c = CarbonConfig::default();
    assert_eq!(
        c.resolved_intensity().unwrap(),
        (475.0, IntensitySource::CountryTable)
    );
    assert_eq!(c.pue, 1.0);
    let c = CarbonConfig {
        country_iso: "SWE".into(),
        ..c
    };
    assert_eq!(c.resolved_intensity().unwrap().0, 45.817);
}

#[test]
fn env_overrides_apply_and_bad_values_error() {
    let env: HashMap<&str, &str> = [
        ("FORGE_PUE", "1.58"),
        ("FORGE_CARBON_INTENSITY", "56"),
        ("FORGE_COUNTRY", "fra"),
        ("FORGE_CPU_TDP_W", "65"),
    ]
    .into();
    let c = CarbonConfig::default()
        .with_env_from(|k| env.get(k).map(|v| v.to_string()))
        .unwrap();
    assert_eq!(c.pue, 1.58);
    assert_eq!(c.carbon_intensity_g_per_kwh, Some(56.0));
    assert_eq!(c.country_iso, "FRA");
    assert_eq!(c.tdp_w, Some(65.0));
    assert_eq!(
        c.resolved_intensity().unwrap(),
        (56.0, IntensitySource::Override)
    );

    let bad = |k: &'static str, v: &'static str| {
        CarbonConfig::default().with_env_from(move |q| (q == k).then(|| v.to_string()))
    };
    assert!(matches!(
        bad("FORGE_PUE", "abc"),
        Err(CarbonError::InvalidEnv {
            var: "FORGE_PUE",
            ..
        })
    ));
    assert!(matches!(
        bad("FORGE_PUE", "-2"),
        Err(CarbonError::InvalidPue(_))
    ));
    assert!(matches!(
        bad("FORGE_CARBON_INTENSITY", "-1"),
        Err(CarbonError::InvalidIntensity(_))
    ));
    assert!(matches!(
        bad("FORGE_COUNTRY", "Narnia"),
        Err(CarbonError::UnknownCountry(_))
    ));
    assert!(matches!(
        bad("FORGE_CPU_TDP_W", "-65"),
        Err(CarbonError::InvalidPower { .. })
    ));
    // Empty values are ignored.
    assert!(bad("FORGE_PUE", "").is_ok());
}

#[test]
fn config_roundtrips_through_json() {
    let c = CarbonConfig::default()
        .project("p")
        .country("DEU")
        .output_dir("/tmp/x");
    let s = serde_json::to_string(&c).unwrap();
    let back: CarbonConfig = serde_json::from_str(&s).unwrap();
    assert_eq!(back, c);
    let partial: CarbonConfig = serde_json::from_str(r#"{"pue": 1.2}"#).unwrap();
    assert_eq!(partial.pue, 1.2);
    assert_eq!(partial.country_iso, "WLD");
}

#[test]
fn tracker_state_errors() {
    let mut t = CarbonTracker::new(CarbonConfig::default()).unwrap();
    assert!(matches!(t.stop(), Err(CarbonError::NotStarted)));
    t.start().unwrap();
    assert!(matches!(t.start(), Err(CarbonError::AlreadyStarted)));
    assert!(t.stop().is_ok());
}
