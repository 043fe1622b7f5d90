//! The churn plot: process RSS and live wasm linear memory (MiB, left axis)
//! and live instances (right axis) against cycles, as SVG or PNG
//! (plotters).
//!
//! Labels are drawn with a TrueType font found on the system at run time
//! (ab_glyph, so no C font library is linked); without one, `--plot` fails
//! with an error that says so rather than drawing an unlabelled chart.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::churn::Sample;
use super::measure::mib;

const SIZE: (u32, u32) = (1100, 600);
const FONT: &str = "sans-serif";

/// Where fonts are looked for, first match wins; then any `.ttf` under
/// /usr/share/fonts.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

fn find_ttf(dir: &Path, depth: usize) -> Option<PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in &entries {
        if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("ttf")) {
            return Some(path.clone());
        }
    }
    if depth == 0 {
        return None;
    }
    entries.iter().filter(|p| p.is_dir()).find_map(|p| find_ttf(p, depth - 1))
}

/// Registers a system font as plotters' sans-serif, once per process.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = REGISTERED.get_or_init(|| {
        let path = FONT_CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .or_else(|| find_ttf(Path::new("/usr/share/fonts"), 4))
            .ok_or_else(|| {
                "no TrueType font under /usr/share/fonts for the plot's labels (install fonts-dejavu-core)".to_owned()
            })?;
        let bytes = std::fs::read(&path).map_err(|e| format!("reading font {}: {e}", path.display()))?;
        // plotters keeps fonts for the life of the process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .map_err(|_| format!("{} is not a font plotters can read", path.display()))?;
        Ok(path)
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) => bail!("{e}"),
    }
}

/// Draws the churn plot to `path`: SVG if it ends in `.svg`, PNG otherwise.
pub(crate) fn churn(path: &Path, title: &str, samples: &[Sample], warmup: u64) -> Result<()> {
    ensure_font()?;
    let svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let drawn = if svg {
        draw(SVGBackend::new(path, SIZE).into_drawing_area(), title, samples, warmup)
    } else {
        draw(BitMapBackend::new(path, SIZE).into_drawing_area(), title, samples, warmup)
    };
    drawn.map_err(|e| anyhow!("drawing the plot {}: {e}", path.display()))
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    samples: &[Sample],
    warmup: u64,
) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let last = samples.last().map_or(1, |s| s.cycle).max(1);
    let rss_max = samples.iter().map(|s| mib(s.rss.total as f64)).fold(1.0, f64::max) * 1.15;
    let most_instances = samples.iter().map(|s| s.live_instances).max().unwrap_or(0).max(1);
    let instances_max = (most_instances * 2) as f64;

    root.fill(&WHITE).map_err(e)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .right_y_label_area_size(72)
        .build_cartesian_2d(0u64..last, 0f64..rss_max)
        .map_err(e)?
        .set_secondary_coord(0u64..last, 0f64..instances_max);
    chart
        .configure_mesh()
        .x_desc("cycles (wake, SELECT, UPDATE, sleep)")
        .y_desc("MiB")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(e)?;
    chart
        .configure_secondary_axes()
        .y_desc("live instances")
        .y_labels((most_instances * 2).min(10) + 1)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .draw()
        .map_err(e)?;

    let blue = RGBColor(31, 119, 180);
    let green = RGBColor(44, 160, 44);
    let red = RGBColor(214, 39, 40);
    chart
        .draw_series(LineSeries::new(samples.iter().map(|s| (s.cycle, mib(s.rss.total as f64))), blue.stroke_width(2)))
        .map_err(e)?
        .label("process RSS (MiB)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], blue.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            samples.iter().map(|s| (s.cycle, mib(s.live_memory as f64))),
            green.stroke_width(2),
        ))
        .map_err(e)?
        .label("live wasm linear memory (MiB)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], green.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(samples.iter().map(|s| (s.cycle, s.live_instances as f64)), red))
        .map_err(e)?
        .label("live instances (right axis)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], red));
    let orange = RGBColor(255, 127, 14);
    chart
        .draw_series(LineSeries::new([(warmup, 0.0), (warmup, rss_max)], orange.stroke_width(2)))
        .map_err(e)?
        .label("end of warm-up")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], orange.stroke_width(2)));
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)?;
    Ok(())
}
