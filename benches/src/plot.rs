//! PNG plots with plotters' bitmap backend. Text uses the pure-Rust `ab_glyph` rasteriser with
//! a TTF file read at run time (DejaVu Sans, Debian's `fonts-dejavu-core`), so no fontconfig or
//! freetype is needed. Without a font the plots are skipped and the report says so.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::BoxResult;
use crate::results::{Results, Row, group_title, groups};

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a TTF font as "sans-serif". `Err` names what is missing.
pub fn register_font() -> Result<(), String> {
    for path in FONT_CANDIDATES {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{path} is not a usable font"));
        }
    }
    Err("no TTF font found (install Debian's fonts-dejavu-core)".into())
}

const COLORS: &[RGBColor] = &[
    RGBColor(0, 0, 0),
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn color_of(system: &str, all: &[String]) -> RGBColor {
    let i = all.iter().position(|s| s == system).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

/// x position of a quantile on a "nines" axis: 0.9 → 1, 0.99 → 2, 1.0 → 5.5.
fn nines(q: f64) -> f64 {
    if q >= 1.0 {
        5.5
    } else {
        (-(1.0 - q).log10()).min(5.5)
    }
}

fn file_name(workload: &str, size: usize) -> String {
    let w: String = workload
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{w}-{size}B.png")
}

fn latency_chart(path: &Path, title: &str, rows: &[&Row], all: &[String]) -> BoxResult<()> {
    let pts: Vec<(String, Vec<(f64, f64)>)> = rows
        .iter()
        .filter_map(|r| {
            let l = r.latency.as_ref()?;
            Some((
                r.system.clone(),
                l.curve
                    .iter()
                    .map(|&(q, v)| (nines(q), (v.max(1) as f64) / 1e3))
                    .collect(),
            ))
        })
        .collect();
    let lo = pts
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(f64::MAX, f64::min)
        .max(0.001);
    let hi = pts
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(0.0, f64::max)
        .max(lo * 10.0);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..5.6f64, (lo / 1.5..hi * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs, log)")
        .x_labels(7)
        .x_label_formatter(&|x| {
            let n = x.round() as i32;
            if (x - n as f64).abs() > 0.01 {
                return String::new();
            }
            match n {
                0 => "0%".into(),
                1 => "90%".into(),
                2 => "99%".into(),
                3 => "99.9%".into(),
                4 => "99.99%".into(),
                5 => "99.999%".into(),
                _ => String::new(),
            }
        })
        .y_label_formatter(&|y| format!("{y}"))
        .draw()?;
    for (system, p) in &pts {
        let c = color_of(system, all);
        chart
            .draw_series(LineSeries::new(p.iter().copied(), c.stroke_width(2)))?
            .label(system.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn throughput_chart(path: &Path, title: &str, rows: &[&Row], all: &[String]) -> BoxResult<()> {
    let bars: Vec<(&str, f64)> = rows
        .iter()
        .filter_map(|r| {
            Some((
                r.system.as_str(),
                r.throughput.as_ref()?.msgs_per_sec.max(1.0),
            ))
        })
        .collect();
    let hi = bars.iter().map(|b| b.1).fold(10.0, f64::max);
    let lo = bars
        .iter()
        .map(|b| b.1)
        .fold(f64::MAX, f64::min)
        .min(hi / 10.0)
        / 3.0;
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let n = bars.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(20)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n, (lo..hi * 3.0).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("messages / s (log)")
        .y_label_formatter(&|y| crate::results::fmt_rate(*y))
        .draw()?;
    for (i, (system, v)) in bars.iter().enumerate() {
        let x = i as f64;
        let c = color_of(system, all);
        chart.draw_series(std::iter::once(Rectangle::new(
            [(x + 0.15, lo), (x + 0.85, *v)],
            c.filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            format!("{system}: {}", crate::results::fmt_rate(*v)),
            (x + 0.12, v * 1.25),
            ("sans-serif", 14),
        )))?;
    }
    root.present()?;
    Ok(())
}

/// Draws every plot into `dir`; returns the file names written.
pub fn draw_all(results: &Results, dir: &Path) -> BoxResult<Vec<String>> {
    register_font()?;
    let mut all: Vec<String> = Vec::new();
    for r in &results.rows {
        if !all.contains(&r.system) {
            all.push(r.system.clone());
        }
    }
    let mut written = Vec::new();
    for ((workload, size), rows) in groups(&results.rows) {
        let name = file_name(&workload, size);
        let title = group_title(&workload, size);
        let path = dir.join(&name);
        if rows.iter().any(|r| r.latency.is_some())
            && workload != "durability"
            && workload != "recovery"
        {
            latency_chart(&path, &title, &rows, &all)?;
        } else if rows.iter().any(|r| r.throughput.is_some()) && rows.len() > 1 {
            throughput_chart(&path, &title, &rows, &all)?;
        } else {
            continue;
        }
        written.push(name);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nines_axis() {
        assert!((nines(0.9) - 1.0).abs() < 1e-9);
        assert!((nines(0.999) - 3.0).abs() < 1e-9);
        assert_eq!(nines(1.0), 5.5);
        assert_eq!(nines(0.0), 0.0);
    }

    #[test]
    fn file_names_are_plain() {
        assert_eq!(file_name("oneway@100k", 64), "oneway-100k-64B.png");
    }
}
