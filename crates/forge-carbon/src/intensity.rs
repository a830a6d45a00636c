//! Carbon intensity of electricity (g CO2-eq per kWh) by country, region and cloud region, from
//! CodeCarbon's data tables, looked up with CodeCarbon's rules.
//!
//! The tables are CodeCarbon 3.3.2's files, committed verbatim under `data/codecarbon/` (MIT
//! licence, `data/codecarbon/SOURCE.md` lists the origin and a checksum of each;
//! `scripts/update_codecarbon_data.py` refreshes them) and embedded in the binary:
//!
//! | scope | file | value used | CodeCarbon function |
//! |---|---|---|---|
//! | country (213 ISO alpha-3 codes) | `global_energy_mix.json` | `carbon_intensity` (Our World in Data / Ember, data year 2023 for most; France 56.0) | `get_country_emissions` |
//! | US state (`country = USA`, `region = "california"`) | `usa_emissions.json` | EPA eGRID2023 lbs/MWh x 0.45359237 | `get_region_emissions` |
//! | Canadian province (`CAN`, `"quebec"`) | `canada_energy_mix.json` | fossil shares x (coal 995.73, petroleum 816.69, natural gas 743.84 g/kWh) | `_region_energy_mix_to_emissions_rate` |
//! | Chinese province (`CHN`, `"beijing"`) | `china_provincial_emissions.json` | MEE/NBS 2023 factor | `_try_get_china_province_emissions` |
//! | Nordic bidding zone (`SWE`/`NOR`/`FIN`, `"SE3"`) | `nordic_emissions.json` | zone factor | `_try_get_nordic_region_emissions` |
//! | cloud region (`gcp`, `"europe-west1"`) | `impact.csv` | `impact` | `get_cloud_emissions` |
//!
//! An unknown country, region or cloud region is not an error: like CodeCarbon, the lookup falls
//! back (cloud -> country, region -> country, country -> world average 475 g/kWh) and says so
//! with a `tracing` warning and a note in [`Intensity::warnings`].

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// World-average carbon intensity, g CO2-eq/kWh: CodeCarbon's `world_average` (IEA 2019).
pub const WORLD_G_PER_KWH: f64 = 475.0;

/// US eGRID rates are in lbs/MWh; CodeCarbon's conversion to kg/kWh is x 0.00045359237.
const LBS_PER_MWH_TO_G_PER_KWH: f64 = 0.453_592_37;

/// CodeCarbon's fossil-source factors for Canadian provinces (kg/kWh, from the energy-usage
/// project, <https://github.com/responsibleproblemsolving/energy-usage#conversion-to-co2>).
const CAN_COAL_KG: f64 = 0.995_725_971;
const CAN_PETROLEUM_KG: f64 = 0.816_688_526_3;
const CAN_GAS_KG: f64 = 0.743_841_591_6;

const GLOBAL_MIX: &str = include_str!("../data/codecarbon/global_energy_mix.json");
const USA: &str = include_str!("../data/codecarbon/usa_emissions.json");
const CANADA: &str = include_str!("../data/codecarbon/canada_energy_mix.json");
const CHINA: &str = include_str!("../data/codecarbon/china_provincial_emissions.json");
const NORDIC: &str = include_str!("../data/codecarbon/nordic_emissions.json");
const CLOUD: &str = include_str!("../data/codecarbon/impact.csv");

/// One country of CodeCarbon's global energy mix table.
#[derive(Debug, Clone, PartialEq)]
pub struct Country {
    /// ISO 3166-1 alpha-3 code (`WLD` for the world average).
    pub iso: String,
    /// English name as CodeCarbon spells it.
    pub name: String,
    /// Carbon intensity, g CO2-eq/kWh.
    pub g_per_kwh: f64,
    /// Data year, when the table gives it.
    pub year: Option<u32>,
}

/// One cloud region of CodeCarbon's `impact.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudRegion {
    /// Provider code (`gcp`, ...).
    pub provider: String,
    /// Region code (`europe-west1`, ...).
    pub region: String,
    /// ISO alpha-3 code of the country hosting it.
    pub country_iso: String,
    /// Country name.
    pub country_name: String,
    /// State or city (CodeCarbon's `region` column for cloud runs).
    pub location: String,
    /// Carbon intensity, g CO2-eq/kWh.
    pub g_per_kwh: f64,
}

struct Tables {
    countries: Vec<Country>,
    regions: HashMap<(String, String), (f64, &'static str)>,
    china: Vec<(Vec<String>, f64)>,
    cloud: Vec<CloudRegion>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(load_tables)
}

fn load_tables() -> Tables {
    // The files are compiled in and checked by the tests: a parse failure is a packaging bug.
    let mix: HashMap<String, serde_json::Value> =
        serde_json::from_str(GLOBAL_MIX).expect("embedded global_energy_mix.json parses");
    let mut countries: Vec<Country> = mix
        .iter()
        .filter_map(|(iso, v)| {
            Some(Country {
                iso: iso.clone(),
                name: v.get("country_name")?.as_str()?.to_string(),
                g_per_kwh: v.get("carbon_intensity")?.as_f64()?,
                year: v.get("year").and_then(|y| y.as_u64()).map(|y| y as u32),
            })
        })
        .collect();
    countries.push(Country {
        iso: "WLD".into(),
        name: "World".into(),
        g_per_kwh: WORLD_G_PER_KWH,
        year: None,
    });
    countries.sort_by(|a, b| a.iso.cmp(&b.iso));

    let mut regions = HashMap::new();
    let usa: HashMap<String, serde_json::Value> =
        serde_json::from_str(USA).expect("embedded usa_emissions.json parses");
    for (state, v) in &usa {
        if let Some(lbs) = v.get("emissions").and_then(|x| x.as_f64()) {
            regions.insert(
                ("USA".to_string(), state.clone()),
                (lbs * LBS_PER_MWH_TO_G_PER_KWH, "EPA eGRID2023 state rate"),
            );
        }
    }
    let can: HashMap<String, HashMap<String, f64>> =
        serde_json::from_str(CANADA).expect("embedded canada_energy_mix.json parses");
    for (prov, mix) in &can {
        let share = |k: &str| mix.get(k).copied().unwrap_or(0.0) / mix["total"];
        let kg = share("coal") * CAN_COAL_KG
            + share("petroleum") * CAN_PETROLEUM_KG
            + share("naturalGas") * CAN_GAS_KG;
        regions.insert(
            ("CAN".to_string(), prov.clone()),
            (
                kg * 1000.0,
                "Canadian provincial energy mix (fossil shares)",
            ),
        );
    }
    let nordic: serde_json::Value =
        serde_json::from_str(NORDIC).expect("embedded nordic_emissions.json parses");
    if let Some(zones) = nordic.get("data").and_then(|d| d.as_object()) {
        for (zone, v) in zones {
            let iso = match &zone[..2] {
                "SE" => "SWE",
                "NO" => "NOR",
                "FI" => "FIN",
                _ => continue,
            };
            if let Some(g) = v.get("emission_factor").and_then(|x| x.as_f64()) {
                regions.insert(
                    (iso.to_string(), zone.to_ascii_lowercase()),
                    (g, "Nordic bidding-zone factor"),
                );
            }
        }
    }
    let china_json: serde_json::Value =
        serde_json::from_str(CHINA).expect("embedded china_provincial_emissions.json parses");
    let china = china_json
        .get("data")
        .and_then(|d| d.as_object())
        .map(|m| {
            m.values()
                .filter_map(|v| {
                    let names = v
                        .get("names")?
                        .as_array()?
                        .iter()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect();
                    Some((names, v.get("emission_factor")?.as_f64()?))
                })
                .collect()
        })
        .unwrap_or_default();

    let mut cloud = Vec::new();
    let mut rdr = csv::Reader::from_reader(CLOUD.trim_start_matches('\u{feff}').as_bytes());
    let headers = rdr.headers().cloned().unwrap_or_default();
    let idx = |name: &str| headers.iter().position(|h| h == name);
    if let (Some(p), Some(r), Some(iso), Some(cn), Some(st), Some(city), Some(imp)) = (
        idx("provider"),
        idx("region"),
        idx("countryIsoCode"),
        idx("country_name"),
        idx("state"),
        idx("city"),
        idx("impact"),
    ) {
        for rec in rdr.records().flatten() {
            let g = rec.get(imp).and_then(|s| s.trim().parse::<f64>().ok());
            if let Some(g) = g {
                let state = rec.get(st).unwrap_or("");
                cloud.push(CloudRegion {
                    provider: rec.get(p).unwrap_or("").to_string(),
                    region: rec.get(r).unwrap_or("").to_string(),
                    country_iso: rec.get(iso).unwrap_or("").to_string(),
                    country_name: rec.get(cn).unwrap_or("").to_string(),
                    location: if state.is_empty() {
                        rec.get(city).unwrap_or("").to_string()
                    } else {
                        state.to_string()
                    },
                    g_per_kwh: g,
                });
            }
        }
    }
    Tables {
        countries,
        regions,
        china,
        cloud,
    }
}

/// Every country of the table (sorted by ISO code, `WLD` included).
pub fn countries() -> &'static [Country] {
    &tables().countries
}

/// Every cloud region of the table.
pub fn cloud_regions() -> &'static [CloudRegion] {
    &tables().cloud
}

/// Looks up a country by ISO alpha-3 code (case-insensitive, surrounding spaces ignored).
pub fn country(iso: &str) -> Option<&'static Country> {
    let key = iso.trim().to_ascii_uppercase();
    let c = countries();
    c.binary_search_by(|x| x.iso.as_str().cmp(&key))
        .ok()
        .map(|i| &c[i])
}

/// Where the carbon intensity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IntensitySource {
    /// CodeCarbon's per-country table.
    CountryTable,
    /// A regional table (US state, Canadian or Chinese province, Nordic bidding zone).
    Region,
    /// CodeCarbon's cloud-region table.
    Cloud,
    /// The country is not in the table: world average (with a warning).
    WorldAverage,
    /// Set by the user (`carbon_intensity_g_per_kwh`, `FORGE_CARBON_INTENSITY`,
    /// `CODECARBON_FORCE_CARBON_INTENSITY_G_CO2E_KWH`).
    Override,
}

/// A resolved carbon intensity and the location it stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct Intensity {
    /// g CO2-eq/kWh.
    pub g_per_kwh: f64,
    /// Which table (or override) gave it.
    pub source: IntensitySource,
    /// ISO alpha-3 code recorded in the output (`WLD` when unknown).
    pub country_iso: String,
    /// Country name recorded in the output.
    pub country_name: String,
    /// Region recorded in the output (a state/province, or the cloud region's location).
    pub region: Option<String>,
    /// Human-readable detail (`"EPA eGRID2023 state rate: california"`, ...).
    pub detail: String,
    /// Fallbacks taken (unknown country, region or cloud region).
    pub warnings: Vec<String>,
}

/// Resolves the carbon intensity for a location with CodeCarbon's precedence: cloud region
/// (when `cloud` is set and known), then region (US state, Canadian/Chinese province, Nordic
/// zone), then country, then the world average. Fallbacks are logged and listed in
/// [`Intensity::warnings`]; none is an error.
pub fn resolve(country_iso: &str, region: Option<&str>, cloud: Option<(&str, &str)>) -> Intensity {
    let mut warnings = Vec::new();
    if let Some((provider, cregion)) = cloud {
        let hit = cloud_regions().iter().find(|c| {
            c.provider.eq_ignore_ascii_case(provider.trim())
                && c.region.eq_ignore_ascii_case(cregion.trim())
        });
        match hit {
            Some(c) => {
                return Intensity {
                    g_per_kwh: c.g_per_kwh,
                    source: IntensitySource::Cloud,
                    country_iso: c.country_iso.clone(),
                    country_name: c.country_name.clone(),
                    region: Some(c.location.clone()),
                    detail: format!("cloud region {}/{}", c.provider, c.region),
                    warnings,
                }
            }
            None => {
                let w = format!(
                    "no carbon intensity for cloud provider {provider:?} region {cregion:?} \
                     (CodeCarbon's table has GCP only); using the country value"
                );
                tracing::warn!("{w}");
                warnings.push(w);
            }
        }
    }
    let iso = country_iso.trim().to_ascii_uppercase();
    let Some(c) = country(&iso) else {
        let w = format!(
            "unknown country code {country_iso:?}: using the world average {WORLD_G_PER_KWH} g/kWh"
        );
        tracing::warn!("{w}");
        warnings.push(w);
        return Intensity {
            g_per_kwh: WORLD_G_PER_KWH,
            source: IntensitySource::WorldAverage,
            country_iso: "WLD".into(),
            country_name: "World".into(),
            region: region.map(str::to_string),
            detail: "world average (IEA 2019, CodeCarbon's default)".into(),
            warnings,
        };
    };
    let region_key = region.map(|r| {
        r.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    });
    if let Some(key) = region_key.as_deref().filter(|k| !k.is_empty()) {
        if let Some((g, what)) = regional(&iso, key) {
            return Intensity {
                g_per_kwh: g,
                source: IntensitySource::Region,
                country_iso: c.iso.clone(),
                country_name: c.name.clone(),
                region: Some(key.to_string()),
                detail: format!("{what}: {key}"),
                warnings,
            };
        }
        if matches!(iso.as_str(), "USA" | "CAN" | "CHN" | "SWE" | "NOR" | "FIN") {
            let w = format!(
                "no regional carbon intensity for {iso} region {key:?}; using the country value"
            );
            tracing::warn!("{w}");
            warnings.push(w);
        }
    }
    Intensity {
        g_per_kwh: c.g_per_kwh,
        source: if c.iso == "WLD" {
            IntensitySource::WorldAverage
        } else {
            IntensitySource::CountryTable
        },
        country_iso: c.iso.clone(),
        country_name: c.name.clone(),
        region: region_key.filter(|k| !k.is_empty()),
        detail: match c.year {
            Some(y) => format!("country energy mix {} ({y})", c.iso),
            None => format!("country energy mix {}", c.iso),
        },
        warnings,
    }
}

/// The regional intensity for `iso` and a lower-case, space-normalised region name.
fn regional(iso: &str, key: &str) -> Option<(f64, &'static str)> {
    let t = tables();
    if iso == "CHN" {
        let name = strip_china_suffix(key);
        return t
            .china
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == name))
            .map(|(_, g)| (*g, "MEE/NBS 2023 provincial factor"));
    }
    t.regions.get(&(iso.to_string(), key.to_string())).copied()
}

fn strip_china_suffix(name: &str) -> &str {
    for suffix in [
        " autonomous region",
        " municipality",
        " province",
        " sheng",
        " shi",
        " zizhiqu",
    ] {
        if let Some(s) = name.strip_suffix(suffix) {
            return s;
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_valid() {
        let c = countries();
        assert!(c.len() > 200, "{}", c.len());
        for w in c.windows(2) {
            assert!(w[0].iso < w[1].iso, "{} !< {}", w[0].iso, w[1].iso);
        }
        for x in c {
            assert_eq!(x.iso.len(), 3);
            assert!(x.g_per_kwh.is_finite() && x.g_per_kwh >= 0.0 && x.g_per_kwh < 1500.0);
        }
        assert!(!cloud_regions().is_empty());
    }

    #[test]
    fn lookups() {
        assert_eq!(country("wld").unwrap().g_per_kwh, 475.0);
        assert_eq!(country(" FRA ").unwrap().g_per_kwh, 56.039);
        assert_eq!(country("USA").unwrap().name, "United States");
        assert!(country("XYZ").is_none());
        let r = resolve("XYZ", None, None);
        assert_eq!(
            (r.g_per_kwh, r.source),
            (475.0, IntensitySource::WorldAverage)
        );
        assert_eq!(r.warnings.len(), 1);
        let r = resolve("USA", Some("  California "), None);
        assert_eq!(r.source, IntensitySource::Region);
        assert_eq!(r.region.as_deref(), Some("california"));
        let r = resolve("CHN", Some("Beijing Municipality"), None);
        assert_eq!((r.g_per_kwh, r.source), (555.4, IntensitySource::Region));
        let r = resolve("FRA", None, Some(("gcp", "nowhere-1")));
        assert_eq!(r.source, IntensitySource::CountryTable);
        assert_eq!(r.warnings.len(), 1);
    }
}
