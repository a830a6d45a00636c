//! 300-DPI PNG figures drawn with plotters from a [`ResultsFile`].
//!
//! Fonts: DejaVu Sans is embedded (the `dejavu` crate) and registered with plotters' ab_glyph
//! backend, so no system fonts are needed. PNGs are encoded with the `png` crate so that the
//! pHYs chunk says 300 DPI (11,811 pixels per metre); plotters' own writer sets none.

use crate::error::{BenchError, Result};
use crate::report::aggregate_co2_unit;
use crate::schema::{ResultsFile, StrategyKind};
use crate::stats::mean_std;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::Once;

/// Dots per inch written into every PNG.
pub const DPI: u32 = 300;
/// 300 DPI in pixels per metre (the unit of the PNG pHYs chunk).
pub const PIXELS_PER_METRE: u32 = 11_811;
const FONT: &str = "sans-serif";
const W: u32 = 3300; // 11 in at 300 DPI
const H: u32 = 2250; // 7.5 in

fn register_fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for name in [FONT, "dejavu"] {
            let _ =
                plotters::style::register_font(name, FontStyle::Normal, dejavu::sans::regular());
            let _ = plotters::style::register_font(name, FontStyle::Bold, dejavu::sans::bold());
        }
    });
}

fn plot_err<E: std::fmt::Display>(figure: &str) -> impl Fn(E) -> BenchError + '_ {
    move |e| BenchError::Plot {
        figure: figure.to_string(),
        reason: e.to_string(),
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Renders `draw` onto a `w x h` RGB canvas and writes it as a 300-DPI PNG at `path` (atomically).
///
/// # Errors
/// [`BenchError::Plot`] if drawing or encoding fails; [`BenchError::Io`] if writing fails.
pub fn render_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<()> {
    register_fonts();
    let name = path.display().to_string();
    let mut buf = vec![255u8; (w as usize) * (h as usize) * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err(&name))?;
        draw(&root)?;
        root.present().map_err(plot_err(&name))?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut png_bytes, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Best);
        enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
        enc.set_pixel_dims(Some(png::PixelDimensions {
            xppu: PIXELS_PER_METRE,
            yppu: PIXELS_PER_METRE,
            unit: png::Unit::Meter,
        }));
        let mut wr = enc.write_header().map_err(plot_err(&name))?;
        wr.write_image_data(&buf).map_err(plot_err(&name))?;
        wr.finish().map_err(plot_err(&name))?;
    }
    crate::io::write_atomic(path, &png_bytes)
}

/// Whether `strategy` is `scenario`'s headline transfer (from the results' summaries).
fn is_headline(r: &ResultsFile, scenario: &str, strategy: &str) -> bool {
    r.scenarios
        .iter()
        .any(|s| s.scenario == scenario && s.transfer == strategy)
}

fn kind_color(kind: StrategyKind, headline: bool) -> RGBColor {
    match kind {
        StrategyKind::Baseline => RGBColor(110, 110, 110),
        StrategyKind::Reference => RGBColor(70, 130, 200),
        StrategyKind::Transfer if headline => RGBColor(20, 140, 60),
        StrategyKind::Transfer => RGBColor(100, 190, 120),
    }
}

fn verdict_color(v: &str) -> RGBColor {
    match v {
        "transfer" => RGBColor(20, 140, 60),
        "block" => RGBColor(200, 40, 40),
        _ => RGBColor(230, 150, 20),
    }
}

/// No axis extends beyond this magnitude, and values past it are drawn at it. plotters' key-point
/// search never ends on an infinite range; only a corrupt results file has such values (the
/// readers refuse them, but the figures do not rely on that).
const AXIS_LIMIT: f64 = 1e15;
/// The smallest upper end of a log axis.
const LOG_FLOOR: f64 = 1e-12;

/// `v` made drawable: NaN -> 0, then clamped to +-[`AXIS_LIMIT`].
fn fin(v: f64) -> f64 {
    if v.is_nan() {
        0.0
    } else {
        v.clamp(-AXIS_LIMIT, AXIS_LIMIT)
    }
}

/// A log-axis range covering the positive finite values: from a floor of max / 10^4 (values
/// below it, e.g. the ~0 cost of applying a model as is, are drawn at the floor) to the
/// maximum, within [[`LOG_FLOOR`], [`AXIS_LIMIT`]].
fn log_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let v: Vec<f64> = values
        .filter(|x| x.is_finite() && *x > 0.0)
        .map(|x| x.min(AXIS_LIMIT))
        .collect();
    let hi = v.iter().cloned().fold(0.0, f64::max).max(LOG_FLOOR);
    let lo = v.iter().cloned().fold(hi, f64::min).max(hi * 1e-4) / 2.0;
    (lo, hi)
}

/// A finite linear range with a positive span: `(lo, hi)` clamped to +-[`AXIS_LIMIT`]; an
/// empty, non-finite or zero-width range becomes a unit range around its finite end (or 0..1).
fn sane_range(lo: f64, hi: f64) -> (f64, f64) {
    let (lo, hi) = match (lo.is_finite(), hi.is_finite()) {
        (true, true) => (fin(lo), fin(hi)),
        (true, false) => (fin(lo), fin(lo) + 1.0),
        (false, true) => (fin(hi) - 1.0, fin(hi)),
        (false, false) => (0.0, 1.0),
    };
    if hi > lo {
        (lo, hi)
    } else {
        let pad = (lo.abs() * 1e-3).max(0.5);
        (fin(lo - pad), fin(lo + pad))
    }
}

/// The padded range of the finite values (`pad_frac` of the span, at least `min_pad`).
fn linear_range(values: impl Iterator<Item = f64>, pad_frac: f64, min_pad: f64) -> (f64, f64) {
    let v: Vec<f64> = values.filter(|x| x.is_finite()).map(fin).collect();
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * pad_frac).max(min_pad);
    sane_range(lo - pad, hi + pad)
}

/// Compact tick label: plain decimals in [0.01, 1000), otherwise `1e-3` style.
fn tick(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if (0.01..1000.0).contains(&a) {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{x:.0e}")
    }
}

/// The most common item (ties broken by first appearance); empty string for none.
fn majority<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for it in items {
        match counts.iter_mut().find(|(v, _)| *v == it) {
            Some(c) => c.1 += 1,
            None => counts.push((it, 1)),
        }
    }
    let best = counts.iter().map(|c| c.1).max().unwrap_or(0);
    counts
        .into_iter()
        .find(|c| c.1 == best)
        .map(|c| c.0.to_string())
        .unwrap_or_default()
}

fn grid(n: usize) -> (usize, usize) {
    match n {
        0 | 1 => (1, 1),
        2 => (1, 2),
        3 => (1, 3),
        4 => (2, 2),
        5 | 6 => (2, 3),
        _ => (n.div_ceil(3), 3),
    }
}

/// Splits `root` into a title strip (title + subtitle line) and a grid of `n` panels.
fn panels<'a>(root: &Area<'a>, text: &str, n: usize, figure: &str) -> Result<Vec<Area<'a>>> {
    let (title, sub) = text.split_once('\n').unwrap_or((text, ""));
    let (top, body) = root.split_vertically(if sub.is_empty() { 110 } else { 160 });
    top.draw(&Text::new(
        title.to_string(),
        (60, 25),
        (FONT, 62).into_font().style(FontStyle::Bold).color(&BLACK),
    ))
    .map_err(plot_err(figure))?;
    if !sub.is_empty() {
        top.draw(&Text::new(
            sub.to_string(),
            (60, 100),
            (FONT, 40).into_font().color(&BLACK),
        ))
        .map_err(plot_err(figure))?;
    }
    let (r, c) = grid(n);
    Ok(body.split_evenly((r, c)).into_iter().take(n).collect())
}

/// CO2 per strategy, one panel per scenario, with each bar labelled by its CO2 change vs the
/// from-scratch baseline.
///
/// # Errors
/// [`BenchError::Plot`] / [`BenchError::Io`].
pub fn co2_per_strategy(r: &ResultsFile, path: &Path) -> Result<()> {
    let fig = "co2_per_strategy";
    let scen = with_aggregates(r);
    let (f, unit) = aggregate_co2_unit(r);
    render_png(path, (W, H), |root| {
        let areas = panels(
            root,
            &format!(
                "CO2 per training, by strategy (mean ± std over {} seed(s))\nLog scale. Label = CO2 change vs the scenario's baseline. Grey: baseline, blue: reference (no transfer), green: transfer; dark green: the scenario's headline transfer.",
                r.run.seeds.len()
            ),
            scen.len(),
            fig,
        )?;
        for (area, &sc) in areas.iter().zip(&scen) {
            let aggs: Vec<_> = r.aggregates.iter().filter(|a| &a.scenario == sc).collect();
            let n = aggs.len() as i32;
            let (xlo, xhi) = log_range(aggs.iter().map(|a| a.co2_kg.mean * f));
            let xmax = xhi * 15.0;
            let n = n.max(1);
            let mut chart = ChartBuilder::on(area)
                .caption(sc, (FONT, 46).into_font().style(FontStyle::Bold))
                .margin(25)
                .x_label_area_size(90)
                .y_label_area_size(330)
                .build_cartesian_2d((xlo..xmax).log_scale(), (0..n - 1).into_segmented())
                .map_err(plot_err(fig))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_labels(5)
                .y_labels(aggs.len())
                .x_desc(format!("CO2 per training [{unit}]"))
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => aggs
                        .get(*i as usize)
                        .map(|a| a.strategy.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                })
                .x_label_formatter(&|x| tick(*x))
                .label_style((FONT, 34))
                .axis_desc_style((FONT, 38))
                .draw()
                .map_err(plot_err(fig))?;
            for (i, a) in aggs.iter().enumerate() {
                let i = i as i32;
                let v = fin(a.co2_kg.mean * f).clamp(xlo, xmax);
                let color = kind_color(a.kind, is_headline(r, sc, &a.strategy));
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (xlo, SegmentValue::Exact(i)),
                            (v, SegmentValue::Exact(i + 1)),
                        ],
                        color.filled(),
                    )))
                    .map_err(plot_err(fig))?;
                let s = fin(a.co2_kg.std * f).clamp(0.0, xmax);
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![
                            ((v - s).max(xlo), SegmentValue::CenterOf(i)),
                            (v + s, SegmentValue::CenterOf(i)),
                        ],
                        BLACK.stroke_width(3),
                    )))
                    .map_err(plot_err(fig))?;
                let label = if a.kind == StrategyKind::Baseline {
                    "baseline".to_string()
                } else {
                    format!("{:+.0}%", -fin(a.co2_reduction_pct.mean))
                };
                chart
                    .draw_series(std::iter::once(Text::new(
                        label,
                        (((v + s) * 1.15).min(xmax), SegmentValue::CenterOf(i)),
                        TextStyle::from((FONT, 32).into_font())
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    )))
                    .map_err(plot_err(fig))?;
            }
        }
        Ok(())
    })
}

/// Held-out quality by strategy (mean ± std over seeds), one panel per scenario, the baseline's
/// quality as a dashed line: e.g. the merge strategies of a merging scenario side by side, or
/// a LoRA soup against its adapters.
///
/// # Errors
/// [`BenchError::Plot`] / [`BenchError::Io`].
pub fn quality_per_strategy(r: &ResultsFile, path: &Path) -> Result<()> {
    let fig = "quality_per_strategy";
    let scen = with_aggregates(r);
    render_png(path, (W, H), |root| {
        let areas = panels(
            root,
            &format!(
                "Held-out quality by strategy (mean ± std over {} seed(s))\nDashed: the scenario's baseline. Grey: baseline, blue: reference (no transfer), green: transfer; dark green: the headline transfer.",
                r.run.seeds.len()
            ),
            scen.len(),
            fig,
        )?;
        for (area, &sc) in areas.iter().zip(&scen) {
            let aggs: Vec<_> = r.aggregates.iter().filter(|a| &a.scenario == sc).collect();
            let n = (aggs.len() as i32).max(1);
            let metric = aggs.first().map(|a| a.metric.short()).unwrap_or("quality");
            let lo = aggs
                .iter()
                .map(|a| fin(a.quality.mean - a.quality.std))
                .fold(f64::INFINITY, f64::min);
            let hi = aggs
                .iter()
                .map(|a| fin(a.quality.mean + a.quality.std))
                .fold(f64::NEG_INFINITY, f64::max);
            // zoomed on the bars' range, with room on the right for the labels
            let span = (hi - lo).max(0.02);
            let (xlo, xhi) = sane_range(lo - 0.15 * span, hi + 0.45 * span);
            let mut chart = ChartBuilder::on(area)
                .caption(sc, (FONT, 46).into_font().style(FontStyle::Bold))
                .margin(25)
                .x_label_area_size(90)
                .y_label_area_size(330)
                .build_cartesian_2d(xlo..xhi, (0..n - 1).into_segmented())
                .map_err(plot_err(fig))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_labels(5)
                .y_labels(aggs.len())
                .x_desc(format!("{metric} (held-out)"))
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => aggs
                        .get(*i as usize)
                        .map(|a| a.strategy.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                })
                .x_label_formatter(&|x| {
                    if xhi - xlo < 0.05 {
                        format!("{x:.3}")
                    } else {
                        format!("{x:.2}")
                    }
                })
                .label_style((FONT, 34))
                .axis_desc_style((FONT, 38))
                .draw()
                .map_err(plot_err(fig))?;
            for (i, a) in aggs.iter().enumerate() {
                let i = i as i32;
                let v = fin(a.quality.mean).clamp(xlo, xhi);
                let color = kind_color(a.kind, is_headline(r, sc, &a.strategy));
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (xlo, SegmentValue::Exact(i)),
                            (v, SegmentValue::Exact(i + 1)),
                        ],
                        color.filled(),
                    )))
                    .map_err(plot_err(fig))?;
                // every drawn coordinate within the axis (a std may be anything in a file)
                let s = fin(a.quality.std).abs();
                let inside = |x: f64| fin(x).clamp(xlo, xhi);
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![
                            (inside(v - s), SegmentValue::CenterOf(i)),
                            (inside(v + s), SegmentValue::CenterOf(i)),
                        ],
                        BLACK.stroke_width(3),
                    )))
                    .map_err(plot_err(fig))?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("{:.3}", fin(a.quality.mean)),
                        (
                            inside(v + s + 0.02 * (xhi - xlo)),
                            SegmentValue::CenterOf(i),
                        ),
                        TextStyle::from((FONT, 32).into_font())
                            .pos(Pos::new(HPos::Left, VPos::Center)),
                    )))
                    .map_err(plot_err(fig))?;
            }
            if let Some(b) = aggs.iter().find(|a| a.kind == StrategyKind::Baseline) {
                let x = fin(b.quality.mean).clamp(xlo, xhi);
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(x, SegmentValue::Exact(0)), (x, SegmentValue::Exact(n))],
                        14,
                        10,
                        BLACK.stroke_width(2),
                    ))
                    .map_err(plot_err(fig))?;
            }
        }
        Ok(())
    })
}

/// Quality vs CO2 per strategy (log CO2 axis), one panel per scenario.
///
/// # Errors
/// [`BenchError::Plot`] / [`BenchError::Io`].
pub fn quality_vs_co2(r: &ResultsFile, path: &Path) -> Result<()> {
    let fig = "quality_vs_co2";
    let scen = with_aggregates(r);
    let (f, unit) = aggregate_co2_unit(r);
    render_png(path, (W, H), |root| {
        let areas = panels(
            root,
            "Quality vs CO2 per training (mean ± std over seeds)\nUp and to the left is better. Grey: the scenario's baseline, blue: reference (no transfer), green: transfer; dark green: the headline transfer.",
            scen.len(),
            fig,
        )?;
        for (area, &sc) in areas.iter().zip(&scen) {
            let aggs: Vec<_> = r.aggregates.iter().filter(|a| &a.scenario == sc).collect();
            let (xlo, xhi) = log_range(aggs.iter().map(|a| a.co2_kg.mean * f));
            let xhi = xhi * 3.0;
            let xs: Vec<f64> = aggs
                .iter()
                .map(|a| fin(a.co2_kg.mean * f).clamp(xlo * 1.5, xhi))
                .collect();
            let (ylo, yhi) = linear_range(aggs.iter().map(|a| a.quality.mean), 0.15, 0.02);
            let metric = aggs.first().map(|a| a.metric.short()).unwrap_or("quality");
            let mut chart = ChartBuilder::on(area)
                .caption(sc, (FONT, 46).into_font().style(FontStyle::Bold))
                .margin(25)
                .x_label_area_size(90)
                .y_label_area_size(120)
                .build_cartesian_2d((xlo..xhi).log_scale(), ylo..yhi)
                .map_err(plot_err(fig))?;
            chart
                .configure_mesh()
                .x_labels(8)
                .y_labels(5)
                .x_desc(format!("CO2 per training [{unit}], log scale"))
                .y_desc(format!("{metric} (held-out target)"))
                .x_label_formatter(&|x| tick(*x))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .label_style((FONT, 32))
                .axis_desc_style((FONT, 36))
                .draw()
                .map_err(plot_err(fig))?;
            for (a, &x) in aggs.iter().zip(&xs) {
                let c = kind_color(a.kind, is_headline(r, sc, &a.strategy));
                let q = fin(a.quality.mean);
                let sd = fin(a.quality.std).abs();
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, fin(q - sd)), (x, fin(q + sd))],
                        c.stroke_width(3),
                    )))
                    .map_err(plot_err(fig))?;
                chart
                    .draw_series(std::iter::once(Circle::new((x, q), 14, c.filled())))
                    .map_err(plot_err(fig))?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        a.strategy.clone(),
                        (x, q),
                        TextStyle::from((FONT, 28).into_font())
                            .pos(Pos::new(HPos::Left, VPos::Bottom)),
                    )))
                    .map_err(plot_err(fig))?;
            }
        }
        Ok(())
    })
}

/// The scenarios of the run that have aggregates (the others are skipped by [`write_all`]).
fn with_aggregates(r: &ResultsFile) -> Vec<&String> {
    r.run
        .scenarios
        .iter()
        .filter(|sc| r.aggregates.iter().any(|a| &a.scenario == *sc))
        .collect()
}

/// Mean (over seeds) of curves of possibly different lengths, padding each with its last value.
fn mean_curve(curves: &[&Vec<f64>]) -> Vec<f64> {
    let len = curves.iter().map(|c| c.len()).max().unwrap_or(0);
    (0..len)
        .map(|e| {
            let v: Vec<f64> = curves
                .iter()
                .filter_map(|c| c.get(e).or(c.last()).copied())
                .collect();
            mean_std(&v).mean
        })
        .collect()
}

/// Convergence curves: held-out quality vs epoch of each scenario's baseline and headline
/// transfer (named, and worded, by the scenario), one panel per scenario, with the baseline's
/// final quality as a dashed line.
///
/// # Errors
/// [`BenchError::Plot`] / [`BenchError::Io`].
pub fn convergence(r: &ResultsFile, path: &Path) -> Result<()> {
    let fig = "convergence";
    let scen: Vec<&String> = r
        .run
        .scenarios
        .iter()
        .filter(|s| r.convergence.iter().any(|c| &&c.scenario == s))
        .collect();
    render_png(path, (W, H), |root| {
        let areas = panels(
            root,
            "Convergence: held-out quality vs training epochs (mean over seeds)\nEach scenario's baseline (grey) vs its headline transfer (green), other strategies in colour; dashed: the baseline's final quality.",
            scen.len(),
            fig,
        )?;
        for (area, sc) in areas.iter().zip(&scen) {
            let get = |st: &str| -> Vec<f64> {
                let cs: Vec<&Vec<f64>> = r
                    .convergence
                    .iter()
                    .filter(|c| &&c.scenario == sc && c.strategy == st)
                    .map(|c| &c.quality)
                    .collect();
                mean_curve(&cs)
            };
            let sum = r.scenarios.iter().find(|s| &&s.scenario == sc);
            let scratch = get(sum.map(|s| s.baseline.as_str()).unwrap_or(""));
            let warm = get(sum.map(|s| s.transfer.as_str()).unwrap_or(""));
            let word = |w: Option<&str>, name: Option<&str>, default: &str| -> String {
                w.filter(|w| !w.is_empty())
                    .or(name.filter(|n| !n.is_empty()))
                    .unwrap_or(default)
                    .to_string()
            };
            let base_label = word(
                sum.map(|s| s.wording.baseline.as_str()),
                sum.map(|s| s.baseline.as_str()),
                "baseline",
            );
            let transfer_label = word(
                sum.map(|s| s.wording.transfer.as_str()),
                sum.map(|s| s.transfer.as_str()),
                "transfer",
            );
            let x_desc = word(sum.map(|s| s.wording.curve_x.as_str()), None, "epochs");
            let metric = r
                .convergence
                .iter()
                .find(|c| &&c.scenario == sc)
                .map(|c| c.metric.short())
                .unwrap_or("quality");
            // every other strategy with a curve in this scenario (e.g. LoRA r8 next to full
            // fine-tuning and LoRA r4), in the scenario's strategy order
            let base_name = sum.map(|s| s.baseline.as_str()).unwrap_or("");
            let transfer_name = sum.map(|s| s.transfer.as_str()).unwrap_or("");
            let mut others: Vec<&str> = Vec::new();
            for a in r.aggregates.iter().filter(|a| &&a.scenario == sc) {
                let has_curve = r
                    .convergence
                    .iter()
                    .any(|c| &&c.scenario == sc && c.strategy == a.strategy);
                if has_curve
                    && a.strategy != base_name
                    && a.strategy != transfer_name
                    && !others.contains(&a.strategy.as_str())
                {
                    others.push(a.strategy.as_str());
                }
            }
            let other_curves: Vec<Vec<f64>> = others.iter().map(|st| get(st)).collect();
            let last = fin(scratch.last().copied().unwrap_or(0.0));
            let all: Vec<f64> = scratch
                .iter()
                .chain(&warm)
                .chain(other_curves.iter().flatten())
                .copied()
                .filter(|v| v.is_finite())
                .map(fin)
                .collect();
            // Zoom on the interesting range: initial values can be very negative (R2 of a zero model).
            let (ylo, yhi) = sane_range(
                all.iter()
                    .cloned()
                    .fold(f64::INFINITY, f64::min)
                    .max(last - 0.5)
                    - 0.03,
                all.iter().cloned().fold(f64::NEG_INFINITY, f64::max) + 0.03,
            );
            let n = other_curves
                .iter()
                .map(Vec::len)
                .fold(scratch.len().max(warm.len()), usize::max)
                .max(2)
                - 1;
            let mut chart = ChartBuilder::on(area)
                .caption(sc.as_str(), (FONT, 46).into_font().style(FontStyle::Bold))
                .margin(25)
                .x_label_area_size(90)
                .y_label_area_size(120)
                .build_cartesian_2d(0f64..n as f64, ylo..yhi)
                .map_err(plot_err(fig))?;
            chart
                .configure_mesh()
                .x_labels((n + 1).min(8))
                .y_labels(5)
                .x_desc(x_desc.as_str())
                .y_desc(format!("{metric} (held-out target)"))
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .label_style((FONT, 32))
                .axis_desc_style((FONT, 36))
                .draw()
                .map_err(plot_err(fig))?;
            let clip = |v: f64| fin(v).clamp(ylo, yhi);
            let grey = RGBColor(110, 110, 110);
            let green = RGBColor(20, 140, 60);
            chart
                .draw_series(LineSeries::new(
                    scratch
                        .iter()
                        .enumerate()
                        .map(|(e, &q)| (e as f64, clip(q))),
                    grey.stroke_width(5),
                ))
                .map_err(plot_err(fig))?
                .label(base_label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], grey.stroke_width(5))
                });
            // the headline transfer may have no curve (sst2-to-agnews records all-at-once and
            // progressive unfreezing, not EWC): no legend entry for a line that is not drawn
            if !warm.is_empty() {
                chart
                    .draw_series(LineSeries::new(
                        warm.iter().enumerate().map(|(e, &q)| (e as f64, clip(q))),
                        green.stroke_width(5),
                    ))
                    .map_err(plot_err(fig))?
                    .label(transfer_label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 22, y)], green.stroke_width(5))
                    });
            }
            let palette = [
                RGBColor(31, 119, 180),
                RGBColor(230, 120, 20),
                RGBColor(140, 70, 170),
                RGBColor(200, 40, 60),
            ];
            for (k, (st, curve)) in others.iter().zip(&other_curves).enumerate() {
                let colour = palette[k % palette.len()];
                chart
                    .draw_series(LineSeries::new(
                        curve.iter().enumerate().map(|(e, &q)| (e as f64, clip(q))),
                        colour.stroke_width(4),
                    ))
                    .map_err(plot_err(fig))?
                    .label(*st)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 22, y)], colour.stroke_width(4))
                    });
            }
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(0.0, clip(last)), (n as f64, clip(last))],
                    14,
                    10,
                    BLACK.stroke_width(2),
                ))
                .map_err(plot_err(fig))?
                .label("baseline final quality")
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], BLACK.stroke_width(2))
                });
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font((FONT, 30))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err(fig))?;
        }
        Ok(())
    })
}

/// The transfer gate's statistics: one panel per statistic, one bar per scenario (mean over
/// seeds), coloured by the majority verdict, with the statistic's threshold as a dashed line.
///
/// # Errors
/// [`BenchError::Plot`] / [`BenchError::Io`].
pub fn gate_statistics(r: &ResultsFile, path: &Path) -> Result<()> {
    let fig = "gate";
    let mut names: Vec<String> = Vec::new();
    for g in &r.gate {
        for s in &g.statistics {
            if !names.contains(&s.name) {
                names.push(s.name.clone());
            }
        }
    }
    let scen: Vec<String> = r
        .run
        .scenarios
        .iter()
        .filter(|s| r.gate.iter().any(|g| &g.scenario == *s))
        .cloned()
        .collect();
    render_png(path, (W, H), |root| {
        let areas = panels(
            root,
            "Transfer gate statistics per scenario (forge-safety)\nBar colour = majority verdict over seeds: green transfer, orange transfer with caution, red block. Dashed red line = the check's threshold.",
            names.len().max(1),
            fig,
        )?;
        for (area, name) in areas.iter().zip(&names) {
            let mut vals = Vec::new();
            let mut thr = None;
            for sc in &scen {
                let gs: Vec<_> = r.gate.iter().filter(|g| &g.scenario == sc).collect();
                let v: Vec<f64> = gs
                    .iter()
                    .filter_map(|g| g.statistics.iter().find(|s| &s.name == name))
                    .map(|s| {
                        thr = thr.or(s.threshold);
                        s.value
                    })
                    .collect();
                let verdict = majority(gs.iter().map(|g| g.verdict.as_str()));
                vals.push((sc.clone(), mean_std(&v), verdict));
            }
            let ends = vals
                .iter()
                .flat_map(|v| [v.1.mean - v.1.std, v.1.mean + v.1.std])
                .chain(thr)
                .chain([0.0]);
            let (lo, hi) = linear_range(ends, 0.1, 1e-3);
            let n = (vals.len() as i32).max(1);
            let mut chart = ChartBuilder::on(area)
                .caption(name.as_str(), (FONT, 46).into_font().style(FontStyle::Bold))
                .margin(25)
                .x_label_area_size(90)
                .y_label_area_size(330)
                .build_cartesian_2d(lo..hi, (0..n - 1).into_segmented())
                .map_err(plot_err(fig))?;
            chart
                .configure_mesh()
                .disable_y_mesh()
                .x_labels(5)
                .y_labels(vals.len())
                .x_desc(format!("{name} (mean ± std over seeds)"))
                .y_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => vals
                        .get(*i as usize)
                        .map(|v| v.0.clone())
                        .unwrap_or_default(),
                    _ => String::new(),
                })
                .x_label_formatter(&|x| format!("{x:.2}"))
                .label_style((FONT, 34))
                .axis_desc_style((FONT, 38))
                .draw()
                .map_err(plot_err(fig))?;
            for (i, (_, m, verdict)) in vals.iter().enumerate() {
                let i = i as i32;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (0.0, SegmentValue::Exact(i)),
                            (fin(m.mean).clamp(lo, hi), SegmentValue::Exact(i + 1)),
                        ],
                        verdict_color(verdict).filled(),
                    )))
                    .map_err(plot_err(fig))?;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![
                            (fin(m.mean - m.std).clamp(lo, hi), SegmentValue::CenterOf(i)),
                            (fin(m.mean + m.std).clamp(lo, hi), SegmentValue::CenterOf(i)),
                        ],
                        BLACK.stroke_width(3),
                    )))
                    .map_err(plot_err(fig))?;
            }
            if let Some(t) = thr.filter(|t| t.is_finite()) {
                let t = t.clamp(lo, hi);
                chart
                    .draw_series(DashedLineSeries::new(
                        vec![(t, SegmentValue::Exact(0)), (t, SegmentValue::Last)],
                        14,
                        10,
                        RED.stroke_width(4),
                    ))
                    .map_err(plot_err(fig))?;
            }
        }
        Ok(())
    })
}

/// What [`write_all`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// The PNGs written.
    pub written: Vec<PathBuf>,
    /// What was left out and why (e.g. a scenario with no aggregates).
    pub notes: Vec<String>,
}

/// Prefix of the per-layer similarity keys a scenario may put in `extra_metrics`
/// (`<prefix><i>` for hidden state `i`), drawn as a heat map by [`layer_similarity`].
pub const LAYER_KEY_PREFIX: &str = "cka_layer_";

/// The scenarios whose strategies train very different numbers of parameters (at least two
/// with trainable parameters, a factor of 20 or more apart, the largest at least 10,000, as full
/// fine-tuning vs an adapter): parameter-efficiency panels.
fn parameter_scenarios(r: &ResultsFile) -> Vec<&String> {
    with_aggregates(r)
        .into_iter()
        .filter(|sc| {
            let p: Vec<f64> = r
                .aggregates
                .iter()
                .filter(|a| &&a.scenario == sc && a.trainable_params > 0.0)
                .map(|a| a.trainable_params)
                .collect();
            let (lo, hi) = p
                .iter()
                .fold((f64::INFINITY, 0.0f64), |(a, b), &v| (a.min(v), b.max(v)));
            p.len() >= 2 && hi >= 20.0 * lo && hi >= 1e4
        })
        .collect()
}

/// Quality against trainable parameters (log scale), one panel per scenario whose strategies
/// train very different numbers of parameters (e.g. full fine-tuning vs LoRA).
///
/// # Errors
/// [`BenchError::Plot`] / [`BenchError::Io`].
pub fn parameter_efficiency(r: &ResultsFile, path: &Path) -> Result<()> {
    let fig = "parameter_efficiency";
    let scen = parameter_scenarios(r);
    render_png(path, (W, H), |root| {
        let areas = panels(
            root,
            "Parameter efficiency: quality vs trainable parameters (mean ± std over seeds)\nUp and to the left is better. Grey: baseline, blue: reference, green: transfer; dark green: the headline transfer.",
            scen.len(),
            fig,
        )?;
        for (area, &sc) in areas.iter().zip(&scen) {
            let aggs: Vec<_> = r
                .aggregates
                .iter()
                .filter(|a| &a.scenario == sc && a.trainable_params > 0.0)
                .collect();
            let (xlo, xhi) = log_range(aggs.iter().map(|a| a.trainable_params));
            let (xlo, xhi) = (xlo / 2.0, xhi * 8.0);
            let (ylo, yhi) = linear_range(aggs.iter().map(|a| a.quality.mean), 0.15, 0.02);
            let metric = aggs.first().map(|a| a.metric.short()).unwrap_or("quality");
            let mut chart = ChartBuilder::on(area)
                .caption(sc, (FONT, 46).into_font().style(FontStyle::Bold))
                .margin(25)
                .x_label_area_size(90)
                .y_label_area_size(120)
                .build_cartesian_2d((xlo..xhi).log_scale(), ylo..yhi)
                .map_err(plot_err(fig))?;
            chart
                .configure_mesh()
                .x_labels(8)
                .y_labels(5)
                .x_desc("trainable parameters, log scale")
                .y_desc(format!("{metric} (held-out target)"))
                .x_label_formatter(&|x| tick(*x))
                .y_label_formatter(&|y| format!("{y:.2}"))
                .label_style((FONT, 32))
                .axis_desc_style((FONT, 36))
                .draw()
                .map_err(plot_err(fig))?;
            for a in &aggs {
                let c = kind_color(a.kind, is_headline(r, sc, &a.strategy));
                let (x, q) = (fin(a.trainable_params).max(xlo), fin(a.quality.mean));
                let sd = fin(a.quality.std).abs();
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(x, fin(q - sd)), (x, fin(q + sd))],
                        c.stroke_width(3),
                    )))
                    .map_err(plot_err(fig))?;
                chart
                    .draw_series(std::iter::once(Circle::new((x, q), 14, c.filled())))
                    .map_err(plot_err(fig))?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        a.strategy.clone(),
                        (x, q),
                        TextStyle::from((FONT, 28).into_font())
                            .pos(Pos::new(HPos::Left, VPos::Bottom)),
                    )))
                    .map_err(plot_err(fig))?;
            }
        }
        Ok(())
    })
}

/// Per scenario: per strategy, the mean over seeds of each layer's value.
type LayerMatrices = Vec<(String, Vec<(String, Vec<f64>)>)>;

/// Per scenario with per-layer similarity metrics ([`LAYER_KEY_PREFIX`]): strategy -> the mean
/// over seeds of each layer's value.
fn layer_matrices(r: &ResultsFile) -> LayerMatrices {
    let mut out = Vec::new();
    for sc in with_aggregates(r) {
        let mut rows = Vec::new();
        for a in r.aggregates.iter().filter(|a| &a.scenario == sc) {
            let mut vals = Vec::new();
            for i in 0.. {
                let key = format!("{LAYER_KEY_PREFIX}{i}");
                match crate::gates::mean_extra_metric(r, sc, &a.strategy, &key) {
                    Some(v) => vals.push(v),
                    None => break,
                }
            }
            if !vals.is_empty() {
                rows.push((a.strategy.clone(), vals));
            }
        }
        if !rows.is_empty() {
            out.push((sc.clone(), rows));
        }
    }
    out
}

/// A heat map of per-layer representation similarity (e.g. linear CKA per hidden state), one
/// panel per scenario that reports it: rows are the compared pairs, columns the hidden states
/// (0 = embeddings), each cell labelled with its value.
///
/// # Errors
/// [`BenchError::Plot`] / [`BenchError::Io`].
pub fn layer_similarity(r: &ResultsFile, path: &Path) -> Result<()> {
    let fig = "layer_similarity";
    let mats = layer_matrices(r);
    render_png(path, (W, H), |root| {
        let areas = panels(
            root,
            "Representation similarity per layer (CKA, mean over seeds)\nDark: similar (1 = the same up to rotation and scale); light: the representations moved apart.",
            mats.len(),
            fig,
        )?;
        for (area, (sc, rows)) in areas.iter().zip(&mats) {
            let cols = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
            let mut chart = ChartBuilder::on(area)
                .caption(sc, (FONT, 46).into_font().style(FontStyle::Bold))
                .margin(25)
                .x_label_area_size(90)
                .y_label_area_size(520)
                .build_cartesian_2d(-0.5..cols as f64 - 0.5, -0.5..rows.len() as f64 - 0.5)
                .map_err(plot_err(fig))?;
            let names: Vec<String> = rows.iter().map(|(n, _)| n.clone()).collect();
            // Cells are centred on integer coordinates, so that the axis labels sit on them.
            let at = |v: f64| (v - v.round()).abs() < 1e-6 && v >= -1e-6;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(cols + 1)
                .y_labels(rows.len() + 1)
                .x_desc("hidden state (0 = embeddings)")
                .x_label_formatter(&|x| {
                    if at(*x) {
                        format!("{}", x.round() as i64)
                    } else {
                        String::new()
                    }
                })
                .y_label_formatter(&|y| {
                    if at(*y) {
                        names.get(y.round() as usize).cloned().unwrap_or_default()
                    } else {
                        String::new()
                    }
                })
                .label_style((FONT, 30))
                .axis_desc_style((FONT, 36))
                .draw()
                .map_err(plot_err(fig))?;
            for (ri, (_, vals)) in rows.iter().enumerate() {
                for (ci, &v) in vals.iter().enumerate() {
                    let t = fin(v).clamp(0.0, 1.0);
                    // White (0) to dark blue (1).
                    let c = RGBColor(
                        (255.0 - 235.0 * t) as u8,
                        (255.0 - 185.0 * t) as u8,
                        (255.0 - 95.0 * t) as u8,
                    );
                    let (x, y) = (ci as f64, ri as f64);
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            [(x - 0.48, y - 0.46), (x + 0.48, y + 0.46)],
                            c.filled(),
                        )))
                        .map_err(plot_err(fig))?;
                    let fg = if t > 0.6 { WHITE } else { BLACK };
                    chart
                        .draw_series(std::iter::once(Text::new(
                            format!("{v:.2}"),
                            (x, y),
                            TextStyle::from((FONT, 34).into_font())
                                .color(&fg)
                                .pos(Pos::new(HPos::Center, VPos::Center)),
                        )))
                        .map_err(plot_err(fig))?;
                }
            }
        }
        Ok(())
    })
}

/// Writes every figure into `dir`. A figure whose data is absent (e.g. no gate decisions) is
/// skipped, and so is a scenario with no aggregates, with a note.
///
/// # Errors
/// [`BenchError::Plot`] / [`BenchError::Io`].
pub fn write_all(r: &ResultsFile, dir: &Path) -> Result<Figures> {
    let mut out = Figures::default();
    for sc in &r.run.scenarios {
        if !r.aggregates.iter().any(|a| &a.scenario == sc) {
            out.notes.push(format!(
                "scenario {sc:?} has no aggregates in the results: left out of the figures"
            ));
        }
    }
    if r.aggregates.is_empty() {
        out.notes
            .push("no aggregates at all: no CO2 or quality figure".to_string());
        return Ok(out);
    }
    let p = dir.join("co2_per_strategy.png");
    co2_per_strategy(r, &p)?;
    out.written.push(p);
    let p = dir.join("quality_vs_co2.png");
    quality_vs_co2(r, &p)?;
    out.written.push(p);
    let p = dir.join("quality_per_strategy.png");
    quality_per_strategy(r, &p)?;
    out.written.push(p);
    if !r.convergence.is_empty() {
        let p = dir.join("convergence.png");
        convergence(r, &p)?;
        out.written.push(p);
    }
    if r.gate.iter().any(|g| !g.statistics.is_empty()) {
        let p = dir.join("gate.png");
        gate_statistics(r, &p)?;
        out.written.push(p);
    }
    if !parameter_scenarios(r).is_empty() {
        let p = dir.join("parameter_efficiency.png");
        parameter_efficiency(r, &p)?;
        out.written.push(p);
    }
    if !layer_matrices(r).is_empty() {
        let p = dir.join("layer_similarity.png");
        layer_similarity(r, &p)?;
        out.written.push(p);
    }
    Ok(out)
}

/// Reads the pHYs chunk of a PNG file: (x pixels per unit, y pixels per unit, unit is metre).
///
/// # Errors
/// [`BenchError::Io`] / [`BenchError::Plot`] if the file cannot be read or decoded.
pub fn read_phys(path: &Path) -> Result<Option<(u32, u32, bool)>> {
    let f = std::fs::File::open(path).map_err(|e| BenchError::io(path, e))?;
    let dec = png::Decoder::new(std::io::BufReader::new(f));
    let reader = dec
        .read_info()
        .map_err(plot_err(&path.display().to_string()))?;
    Ok(reader
        .info()
        .pixel_dims
        .map(|d| (d.xppu, d.yppu, d.unit == png::Unit::Meter)))
}
