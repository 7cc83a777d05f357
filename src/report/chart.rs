//! The report's chart as a PNG: incidents per day stacked by severity, and the daily mean time
//! to mitigate. Drawn with plotters into an RGB buffer and encoded with `png`; labels use the
//! public-domain 8×8 bitmap font of `font8x8`, so nothing depends on system fonts (plotters'
//! own text support would need them, and without them it cannot draw text at all).

use super::Daily;
use chrono::NaiveDate;
use plotters::prelude::*;

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 540;

const SEVERITY_COLORS: [RGBColor; 4] = [
    RGBColor(220, 38, 38),
    RGBColor(234, 88, 12),
    RGBColor(202, 138, 4),
    RGBColor(37, 99, 235),
];
const INK: RGBColor = RGBColor(31, 41, 55);
const GRID: RGBColor = RGBColor(229, 231, 235);
const TREND: RGBColor = RGBColor(124, 58, 237);

/// Plot area left and right edges.
const LEFT: i32 = 70;
const RIGHT: i32 = WIDTH as i32 - 20;
/// Top panel (bars) and bottom panel (trend), top and bottom edges.
const BARS: (i32, i32) = (60, 300);
const TREND_PANEL: (i32, i32) = (350, 490);

/// Renders the chart for `days` (one entry per local day of the period) under `title`.
pub fn render(title: &str, days: &[(NaiveDate, Daily)]) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw(&root, title, days).map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&buf)?;
        writer.finish()?;
    }
    Ok(png_bytes)
}

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {e:?}")
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;
type DrawResult = Result<(), DrawingAreaErrorKind<<BitMapBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw(root: &Area<'_>, title: &str, days: &[(NaiveDate, Daily)]) -> DrawResult {
    // The title at double size when it fits, else at normal size.
    let scale = if title.chars().count() as i32 * 16 <= RIGHT - LEFT {
        2
    } else {
        1
    };
    text(root, title, (LEFT, 24 - 4 * scale), scale, &INK)?;
    // Legend, top right.
    let mut x = RIGHT - 4 * 64;
    for (i, color) in SEVERITY_COLORS.iter().enumerate() {
        root.draw(&Rectangle::new([(x, 44), (x + 10, 54)], color.filled()))?;
        text(root, &format!("SEV{}", i + 1), (x + 14, 46), 1, &INK)?;
        x += 64;
    }
    text(root, "Incidents per day by severity", (LEFT, 46), 1, &INK)?;
    text(
        root,
        "Time to mitigate, daily mean (minutes)",
        (LEFT, TREND_PANEL.0 - 14),
        1,
        &INK,
    )?;
    let n = days.len().max(1) as i32;
    let slot = (RIGHT - LEFT) as f64 / n as f64;
    let x_of = |i: usize| LEFT + (slot * i as f64).round() as i32;

    // Bars.
    let max_count = days
        .iter()
        .map(|(_, d)| d.incidents.iter().sum::<i64>())
        .max()
        .unwrap_or(0);
    let (step, top) = ticks(max_count.max(1));
    axis(root, BARS, step, top, |v| v.to_string())?;
    let y_of = |v: i64, panel: (i32, i32), top: i64| {
        panel.1 - ((panel.1 - panel.0) as f64 * v as f64 / top as f64).round() as i32
    };
    let gap = (slot * 0.25).round() as i32;
    for (i, (_, d)) in days.iter().enumerate() {
        let mut base = 0;
        for (sev, color) in SEVERITY_COLORS.iter().enumerate() {
            let k = d.incidents[sev];
            if k == 0 {
                continue;
            }
            let (y0, y1) = (y_of(base + k, BARS, top), y_of(base, BARS, top));
            let (x0, x1) = (x_of(i) + gap / 2, (x_of(i + 1) - gap / 2 - 1).max(x_of(i) + gap / 2));
            root.draw(&Rectangle::new([(x0, y0), (x1, y1)], color.filled()))?;
            base += k;
        }
    }

    // Trend: daily mean time to mitigate, in minutes; days without a mitigation break the line.
    let means: Vec<Option<i64>> = days
        .iter()
        .map(|(_, d)| d.mean_ttm_ms().map(|ms| (ms + 30_000) / 60_000))
        .collect();
    let max_mean = means.iter().flatten().copied().max().unwrap_or(0);
    let (step, top) = ticks(max_mean.max(1));
    axis(root, TREND_PANEL, step, top, |v| v.to_string())?;
    let center = |i: usize| (x_of(i) + x_of(i + 1)) / 2;
    let mut run: Vec<(i32, i32)> = Vec::new();
    for (i, m) in means.iter().enumerate() {
        match m {
            Some(v) => run.push((center(i), y_of(*v, TREND_PANEL, top))),
            None => {
                line(root, &run)?;
                run.clear();
            }
        }
        if let Some(v) = m {
            root.draw(&Circle::new((center(i), y_of(*v, TREND_PANEL, top)), 3, TREND.filled()))?;
        }
    }
    line(root, &run)?;

    // Dates under the trend panel: at most ~12 labels.
    let every = days.len().div_ceil(12).max(1);
    for (i, (date, _)) in days.iter().enumerate() {
        if i % every == 0 || i + 1 == days.len() && days.len() <= 12 {
            let label = date.format("%m-%d").to_string();
            text(root, &label, (center(i) - 20, TREND_PANEL.1 + 8), 1, &INK)?;
        }
    }
    Ok(())
}

fn line(root: &Area<'_>, points: &[(i32, i32)]) -> DrawResult {
    if points.len() > 1 {
        root.draw(&PathElement::new(points.to_vec(), TREND.stroke_width(2)))?;
    }
    Ok(())
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving at most 5 ticks, and the axis top.
fn ticks(max: i64) -> (i64, i64) {
    let mut magnitude = 1;
    loop {
        for m in [1, 2, 5] {
            let step = m * magnitude;
            if max <= step * 5 {
                let top = (max + step - 1) / step * step;
                return (step, top.max(step));
            }
        }
        magnitude *= 10;
    }
}

/// Horizontal grid lines with their values, and the base line.
fn axis(root: &Area<'_>, panel: (i32, i32), step: i64, top: i64, label: impl Fn(i64) -> String) -> DrawResult {
    let mut v = 0;
    while v <= top {
        let y = panel.1 - ((panel.1 - panel.0) as f64 * v as f64 / top as f64).round() as i32;
        let color = if v == 0 { INK } else { GRID };
        root.draw(&PathElement::new(vec![(LEFT, y), (RIGHT, y)], color))?;
        let s = label(v);
        text(root, &s, (LEFT - 8 - 8 * s.len() as i32, y - 4), 1, &INK)?;
        v += step;
    }
    Ok(())
}

/// Draws ASCII `s` with the 8×8 bitmap font, each font pixel `scale`×`scale`, top left at `at`.
fn text(root: &Area<'_>, s: &str, at: (i32, i32), scale: i32, color: &RGBColor) -> DrawResult {
    for (i, c) in s.chars().enumerate() {
        let c = match c {
            '–' | '—' | '·' => '-',
            c if c.is_ascii() => c,
            _ => '?',
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[c as usize];
        let x0 = at.0 + i as i32 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) != 0 {
                    let (x, y) = (x0 + col * scale, at.1 + row as i32 * scale);
                    for dx in 0..scale {
                        for dy in 0..scale {
                            root.draw_pixel((x + dx, y + dy), color)?;
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ticks() {
        assert_eq!(ticks(1), (1, 1));
        assert_eq!(ticks(4), (1, 4));
        assert_eq!(ticks(7), (2, 8));
        assert_eq!(ticks(23), (5, 25));
        assert_eq!(ticks(480), (100, 500));
    }

    #[test]
    fn renders_a_png_for_empty_and_busy_periods() {
        let day = |n: u32| NaiveDate::from_ymd_opt(2026, 11, n).unwrap();
        let empty = render("Empty", &[(day(16), Daily::default())]).unwrap();
        assert_eq!(&empty[1..4], b"PNG");
        let busy: Vec<_> = (1..=30)
            .map(|n| {
                (
                    day(n),
                    Daily {
                        incidents: [n as i64 % 3, 1, 0, n as i64 % 2],
                        ttm_sum_ms: if n % 4 == 0 { 0 } else { i64::from(n) * 600_000 },
                        ttm_count: if n % 4 == 0 { 0 } else { 1 },
                    },
                )
            })
            .collect();
        let png = render("Incident report – November ▲", &busy).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.len() > empty.len(), "bars and lines add pixels");
    }
}
