//! Carbon intensity of electricity by country (g CO2-eq per kWh).
//!
//! World (`WLD`): 475 g/kWh, CodeCarbon's world-average default (IEA 2019 figure used by
//! CodeCarbon). Country values: CodeCarbon's `global_energy_mix.json` (mlco2/codecarbon,
//! `codecarbon/data/private_infra/global_energy_mix.json`), derived from Our World in Data's energy
//! dataset (Ember / Energy Institute generation mix x IPCC AR5 lifecycle factors), data year 2021.
//! Override with `carbon_intensity_g_per_kwh` / `FORGE_CARBON_INTENSITY` for a live or more
//! recent figure (e.g. Electricity Maps, Ember's latest yearly data).

use crate::error::{CarbonError, Result};

/// World-average carbon intensity used when no country is given, g CO2-eq/kWh (as CodeCarbon).
pub const WORLD_G_PER_KWH: f64 = 475.0;

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Country {
    /// ISO 3166-1 alpha-3 code (`WLD` for the world).
    pub iso: &'static str,
    /// English name.
    pub name: &'static str,
    /// Carbon intensity, g CO2-eq/kWh.
    pub g_per_kwh: f64,
}

const fn c(iso: &'static str, name: &'static str, g_per_kwh: f64) -> Country {
    Country {
        iso,
        name,
        g_per_kwh,
    }
}

/// The built-in table, sorted by ISO code (`WLD` included).
pub const COUNTRIES: &[Country] = &[
    c("AUS", "Australia", 531.247),
    c("AUT", "Austria", 147.573),
    c("BEL", "Belgium", 156.922),
    c("BRA", "Brazil", 158.592),
    c("WLD", "World", WORLD_G_PER_KWH),
];

/// Looks up a country by ISO alpha-3 code (case-insensitive, surrounding spaces ignored).
///
/// # Errors
/// [`CarbonError::UnknownCountry`] when the code is not in [`COUNTRIES`].
pub fn country(iso: &str) -> Result<&'static Country> {
    let key = iso.trim().to_ascii_uppercase();
    COUNTRIES
        .iter()
        .find(|c| c.iso == key)
        .ok_or_else(|| CarbonError::UnknownCountry(iso.to_string()))
}
