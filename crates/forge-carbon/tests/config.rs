//! Bad configuration -> typed errors; environment overrides.

use std::collections::HashMap;

use forge_carbon::{CarbonConfig, CarbonError, CarbonTracker, IntensitySource, TrackingMode};

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
fn unknown_country_falls_back_to_the_world_average_with_a_warning() {
    let c = CarbonConfig {
        country_iso: "ATL".into(),
        use_nvml: false,
        ..CarbonConfig::default()
    };
    c.validate().unwrap();
    let r = c.resolved_intensity();
    assert_eq!(
        (r.g_per_kwh, r.source),
        (475.0, IntensitySource::WorldAverage)
    );
    assert!(r.warnings[0].contains("ATL"), "{:?}", r.warnings);
    let mut t = CarbonTracker::new(c).unwrap();
    t.start().unwrap();
    let e = t.stop().unwrap();
    assert_eq!(e.country_iso, "WLD");
    assert!(
        e.warnings.iter().any(|w| w.contains("ATL")),
        "{:?}",
        e.warnings
    );
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
    let r = c.resolved_intensity();
    assert_eq!(
        (r.g_per_kwh, r.source),
        (475.0, IntensitySource::WorldAverage)
    );
    assert_eq!(c.pue, 1.0);
    assert_eq!(c.tracking_mode, TrackingMode::Process);
    let c = CarbonConfig {
        country_iso: "SWE".into(),
        ..c
    };
    // CodeCarbon 3.3's global_energy_mix.json, Sweden (2023).
    assert_eq!(c.resolved_intensity().g_per_kwh, 40.695);
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
    let r = c.resolved_intensity();
    assert_eq!((r.g_per_kwh, r.source), (56.0, IntensitySource::Override));

    let bad = |k: &'static str, v: &'static str| {
        CarbonConfig::default().with_env_from(move |q| (q == k).then(|| v.to_string()))
    };
    assert!(matches!(
        bad("FORGE_PUE", "abc"),
        Err(CarbonError::InvalidEnv { ref var, .. }) if var == "FORGE_PUE"
    ));
    assert!(matches!(
        bad("FORGE_PUE", "-2"),
        Err(CarbonError::InvalidPue(_))
    ));
    assert!(matches!(
        bad("FORGE_CARBON_INTENSITY", "-1"),
        Err(CarbonError::InvalidIntensity(_))
    ));
    assert!(bad("FORGE_COUNTRY", "Narnia").is_ok());
    assert!(matches!(
        bad("FORGE_TRACKING_MODE", "galaxy"),
        Err(CarbonError::InvalidSetting {
            key: "tracking_mode",
            ..
        })
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

#[test]
fn codecarbon_files_and_env_follow_the_documented_precedence() {
    let d = tempfile::tempdir().unwrap();
    let global = d.path().join("global.config");
    let local = d.path().join("local.config");
    std::fs::write(
        &global,
        "[codecarbon]\nproject_name = from-global\npue = 1.1\ncountry_iso_code = fra\nlog_level = error\ntracking_mode = machine\nforce_cpu_power = 100\n[other]\npue = 9\n",
    )
    .unwrap();
    std::fs::write(
        &local,
        "# local\n[codecarbon]\npue: 1.2\nregion = California\ncountry_iso_code = USA\nwue = 1.8\nmeasure_power_secs = 2\nforce_ram_power = 7\n",
    )
    .unwrap();
    let env: HashMap<&str, &str> = [
        ("CODECARBON_PUE", "1.3"),
        ("CODECARBON_EXPERIMENT_ID", "exp-env"),
        ("FORGE_CPU_TDP_W", "65"),
    ]
    .into();
    let c = CarbonConfig::default()
        .with_settings(Some(&global), Some(&local), |k| {
            env.get(k).map(|v| v.to_string())
        })
        .unwrap();
    assert_eq!(c.project_name, "from-global"); // global only
    assert_eq!(c.pue, 1.3); // global < local < CODECARBON_*
    assert_eq!(c.country_iso, "USA"); // local over global
    assert_eq!(c.region.as_deref(), Some("California"));
    assert_eq!(c.experiment_id, "exp-env");
    assert_eq!(c.tdp_w, Some(65.0)); // FORGE_* over force_cpu_power
    assert_eq!(c.tracking_mode, TrackingMode::Machine);
    assert_eq!(c.wue, Some(1.8));
    assert_eq!(c.sample_interval_ms, 2000);
    assert_eq!(c.ram_power_w, Some(7.0));
    let r = c.resolved_intensity();
    assert_eq!(r.source, IntensitySource::Region);
    // A bad value names its origin.
    std::fs::write(&local, "[codecarbon]\npue = lots\n").unwrap();
    let err = CarbonConfig::default()
        .with_settings(None, Some(&local), |_| None)
        .unwrap_err();
    assert!(err.to_string().contains("local.config: pue"), "{err}");
    // save_to_file = false clears the output directory.
    std::fs::write(
        &local,
        "[codecarbon]\noutput_dir = /tmp/x\nsave_to_file = False\n",
    )
    .unwrap();
    let c = CarbonConfig::default()
        .with_settings(None, Some(&local), |_| None)
        .unwrap();
    assert_eq!(c.output_dir, None);
}
