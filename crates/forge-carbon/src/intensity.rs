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
    c("ARE", "United Arab Emirates", 461.845),
    c("ARG", "Argentina", 357.786),
    c("AUS", "Australia", 531.247),
    c("AUT", "Austria", 147.573),
    c("BEL", "Belgium", 156.922),
    c("BGD", "Bangladesh", 555.914),
    c("BGR", "Bulgaria", 354.334),
    c("BRA", "Brazil", 158.592),
    c("CAN", "Canada", 128.461),
    c("CHE", "Switzerland", 47.101),
    c("CHL", "Chile", 416.881),
    c("CHN", "China", 544.355),
    c("COL", "Colombia", 181.065),
    c("CRI", "Costa Rica", 33.045),
    c("CZE", "Czechia", 405.589),
    c("DEU", "Germany", 365.477),
    c("DNK", "Denmark", 221.416),
    c("EGY", "Egypt", 464.425),
    c("ESP", "Spain", 193.863),
    c("EST", "Estonia", 481.224),
    c("FIN", "Finland", 145.541),
    c("FRA", "France", 67.39),
    c("GBR", "United Kingdom", 268.329),
    c("GRC", "Greece", 353.339),
    c("HKG", "Hong Kong", 683.972),
    c("HRV", "Croatia", 210.979),
    c("HUN", "Hungary", 233.037),
    c("IDN", "Indonesia", 623.157),
    c("IND", "India", 637.182),
    c("IRL", "Ireland", 363.608),
    c("IRN", "Iran", 492.678),
    c("ISL", "Iceland", 28.557),
    c("ISR", "Israel", 548.03),
    c("ITA", "Italy", 340.794),
    c("JPN", "Japan", 478.545),
    c("KAZ", "Kazakhstan", 641.102),
    c("KEN", "Kenya", 86.221),
    c("KOR", "South Korea", 458.081),
    c("LTU", "Lithuania", 244.604),
    c("LUX", "Luxembourg", 186.992),
    c("LVA", "Latvia", 223.932),
    c("MAR", "Morocco", 610.412),
    c("MEX", "Mexico", 399.852),
    c("MYS", "Malaysia", 548.611),
    c("NGA", "Nigeria", 376.987),
    c("NLD", "Netherlands", 388.702),
    c("NOR", "Norway", 27.55),
    c("NZL", "New Zealand", 132.427),
    c("PAK", "Pakistan", 366.052),
    c("PER", "Peru", 230.65),
    c("PHL", "Philippines", 580.908),
    c("POL", "Poland", 660.122),
    c("PRT", "Portugal", 219.053),
    c("QAT", "Qatar", 489.792),
    c("ROU", "Romania", 255.877),
    c("RUS", "Russia", 359.937),
    c("SAU", "Saudi Arabia", 571.336),
    c("SGP", "Singapore", 487.937),
    c("SRB", "Serbia", 543.565),
    c("SVK", "Slovakia", 169.589),
    c("SVN", "Slovenia", 238.614),
    c("SWE", "Sweden", 45.817),
    c("THA", "Thailand", 506.635),
    c("TUR", "Turkey", 430.401),
    c("TWN", "Taiwan", 573.275),
    c("UKR", "Ukraine", 240.175),
    c("URY", "Uruguay", 147.282),
    c("USA", "United States", 379.26),
    c("VNM", "Vietnam", 448.217),
    c("WLD", "World", WORLD_G_PER_KWH),
    c("ZAF", "South Africa", 715.681),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_valid() {
        for w in COUNTRIES.windows(2) {
            assert!(w[0].iso < w[1].iso, "{} !< {}", w[0].iso, w[1].iso);
        }
        for c in COUNTRIES {
            assert_eq!(c.iso.len(), 3);
            assert!(c.g_per_kwh.is_finite() && c.g_per_kwh > 0.0 && c.g_per_kwh < 1200.0);
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(country("wld").unwrap().g_per_kwh, 475.0);
        assert_eq!(country(" FRA ").unwrap().g_per_kwh, 67.39);
        assert_eq!(country("USA").unwrap().name, "United States");
        assert!(matches!(country("XYZ"), Err(CarbonError::UnknownCountry(c)) if c == "XYZ"));
        assert!(country("").is_err());
    }
}
