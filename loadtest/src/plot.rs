//! Latency chart: one percentile curve per distribution of a report, as SVG (or an HTML page
//! around the SVG when the file name ends in `.html`). A report with series sampled over time
//! (`soak`) is drawn as time curves instead, one panel per unit (RSS in MiB above, counts of
//! open files and tasks below), because that is what such a run is read for.
//!
//! The x axis is "nines" (`-log10(1 - p)`), so 90 %, 99 %, 99.9 % ... are evenly spaced and the
//! tail is as visible as the median, as in HdrHistogram's own plots. Drawn with plotters' SVG
//! backend only.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use crate::report::Report;

/// Chart size in pixels.
const SIZE: (u32, u32) = (960, 560);
/// Curve colours, distinct on white.
const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
];
/// Points per curve.
const STEPS: u32 = 200;

/// Writes the chart of `report` to `path`.
pub fn write(path: &Path, report: &Report) -> anyhow::Result<()> {
    let svg = render(report)?;
    let html = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("html"));
    let text = if html {
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
             <body>\n{svg}\n</body></html>\n",
            title = escape(&title(report)),
        )
    } else {
        svg
    };
    std::fs::write(path, text)?;
    Ok(())
}

/// Title of the chart.
fn title(report: &Report) -> String {
    match &report.label {
        Some(label) => format!("{}: {label}", report.scenario),
        None => format!("{}: {}", report.scenario, report.hubs_text()),
    }
}

/// Minimal XML escaping for the HTML title.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The percentile curve of a histogram: (nines, milliseconds) points up to the precision its
/// count allows.
pub fn curve(histogram: &Histogram<u64>) -> Vec<(f64, f64)> {
    if histogram.is_empty() {
        return Vec::new();
    }
    // With n values, quantiles beyond 1 - 1/n are all the maximum.
    let max_nines = (histogram.len() as f64).log10().max(1.0);
    (0..=STEPS)
        .map(|step| {
            let nines = max_nines * f64::from(step) / f64::from(STEPS);
            let quantile = 1.0 - 10f64.powf(-nines);
            let micros =
                if step == STEPS { histogram.max() } else { histogram.value_at_quantile(quantile) };
            (nines, micros as f64 / 1000.0)
        })
        .collect()
}

/// Label of a position on the nines axis.
fn percentile_label(nines: f64) -> String {
    let percent = 100.0 * (1.0 - 10f64.powf(-nines));
    let decimals = (nines - 2.0).ceil().clamp(0.0, 6.0) as usize;
    format!("{percent:.decimals$}%")
}

/// Draws the chart into an SVG string.
fn render(report: &Report) -> anyhow::Result<String> {
    if !report.series.is_empty() {
        return render_series(report);
    }
    let curves: Vec<(&str, Vec<(f64, f64)>)> = report
        .distributions
        .iter()
        .map(|(name, histogram)| (name.as_str(), curve(histogram)))
        .collect();
    let max_x = curves
        .iter()
        .flat_map(|(_, points)| points.last().map(|point| point.0))
        .fold(1.0, f64::max);
    let max_y = curves
        .iter()
        .flat_map(|(_, points)| points.iter().map(|point| point.1))
        .fold(0.0, f64::max)
        .max(0.001)
        * 1.05;

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title(report), ("sans-serif", 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("percentile")
            .y_desc("latency (ms)")
            .x_labels(max_x.ceil() as usize + 1)
            .x_label_formatter(&|nines| percentile_label(*nines))
            .draw()
            .map_err(plot_error)?;
        for (index, (name, points)) in curves.into_iter().enumerate() {
            let color = COLORS[index % COLORS.len()];
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))
                .map_err(plot_error)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Draws the time series of `report`, one panel per unit, in the order units first appear.
fn render_series(report: &Report) -> anyhow::Result<String> {
    let mut units: Vec<&str> = Vec::new();
    for series in &report.series {
        if !units.contains(&series.unit.as_str()) {
            units.push(&series.unit);
        }
    }
    let max_x = report
        .series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.0))
        .fold(1.0, f64::max);
    let min_x = report
        .series
        .iter()
        .flat_map(|series| series.points.iter().map(|point| point.0))
        .fold(0.0, f64::min);
    let height = SIZE.1 * u32::try_from(units.len()).unwrap_or(1).clamp(1, 3) * 3 / 4;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root.titled(&title(report), ("sans-serif", 22)).map_err(plot_error)?;
        let panels = root.split_evenly((units.len(), 1));
        let mut color_index = 0;
        for (panel, unit) in panels.iter().zip(&units) {
            let in_unit: Vec<_> =
                report.series.iter().filter(|series| series.unit == *unit).collect();
            // Counts and memory both start at zero, so that a slow growth is not magnified.
            let max_y = in_unit
                .iter()
                .flat_map(|series| series.points.iter().map(|point| point.1))
                .fold(0.0, f64::max)
                .max(1.0)
                * 1.1;
            let mut chart = ChartBuilder::on(panel)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(min_x..max_x, 0.0..max_y)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("seconds since the churn started")
                .y_desc(*unit)
                .draw()
                .map_err(plot_error)?;
            for series in in_unit {
                let color = COLORS[color_index % COLORS.len()];
                color_index += 1;
                chart
                    .draw_series(LineSeries::new(
                        series.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .map_err(plot_error)?
                    .label(series.name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// plotters' errors carry the backend's error type; keep their message.
fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Series;
    use crate::stats;
    use std::time::Duration;

    #[test]
    fn curve_is_monotonic_and_ends_at_the_maximum() {
        let mut histogram = stats::histogram();
        for ms in 1..=1000 {
            stats::record(&mut histogram, Duration::from_millis(ms));
        }
        let points = curve(&histogram);
        assert_eq!(points.len(), STEPS as usize + 1);
        assert!(points.windows(2).all(|pair| pair[0].1 <= pair[1].1));
        let last = points.last().expect("points");
        assert!((last.0 - 3.0).abs() < 1e-9);
        assert!((last.1 - 1000.0).abs() < 1.0);
        assert!(curve(&stats::histogram()).is_empty());
    }

    #[test]
    fn percentile_labels() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
    }

    #[test]
    fn renders_svg_and_html() {
        let mut histogram = stats::histogram();
        for ms in 1..=50 {
            stats::record(&mut histogram, Duration::from_millis(ms));
        }
        let mut report = crate::report::tests_support::empty_report();
        report.add_latency("delivery_latency", "delivery latency", histogram);
        let dir = std::env::temp_dir().join(format!("loadtest-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let svg_path = dir.join("latency.svg");
        write(&svg_path, &report).expect("SVG written");
        let svg = std::fs::read_to_string(&svg_path).expect("readable");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("delivery latency"));
        let html_path = dir.join("latency.html");
        write(&html_path, &report).expect("HTML written");
        let html = std::fs::read_to_string(&html_path).expect("readable");
        assert!(html.starts_with("<!DOCTYPE html>") && html.contains("<svg"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_report_with_series_is_drawn_over_time() {
        let mut report = crate::report::tests_support::empty_report();
        let points =
            |scale: f64| (0..10).map(|t| (f64::from(t) * 5.0, scale + f64::from(t))).collect();
        report.series = vec![
            Series { name: "hub RSS".into(), unit: "MiB".into(), points: points(20.0) },
            Series { name: "hub open files".into(), unit: "count".into(), points: points(100.0) },
            Series { name: "hub tasks".into(), unit: "count".into(), points: points(50.0) },
        ];
        let svg = render(&report).expect("drawn");
        assert!(svg.starts_with("<svg"));
        for text in ["hub RSS", "hub open files", "hub tasks", "MiB", "seconds since the churn"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}
