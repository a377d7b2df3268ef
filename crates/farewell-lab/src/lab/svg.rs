//! Hand-rolled SVG charts for the HTML report: lines over time (one chart,
//! or small multiples: one panel per series on a shared scale), and dots on
//! a logarithmic axis. Plain strings, no scripts, nothing fetched: the
//! page opens offline.

use std::fmt::Write as _;

/// Colours for series and categories, in order (colour-blind friendly,
/// Okabe–Ito, and a grey: one for each of the lab's nine behaviours).
const PALETTE: [&str; 9] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#000000", "#b8a000",
    "#8c8c8c",
];

const WIDTH: f64 = 760.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 34.0;

/// Escapes `&`, `<`, `>` and `"` for HTML and SVG text and attributes.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// The smallest of 1, 2, 5 × 10^k that is at least `x` (at least 1).
fn nice_ceiling(x: f64) -> f64 {
    let mut step = 1.0;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if m * step >= x {
                return m * step;
            }
        }
        step *= 10.0;
    }
}

/// A round axis for values up to `max`: (axis end, tick step), with at most
/// six steps of 1, 2 or 5 × 10^k.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = max.max(1e-9);
    let mut step = 10f64.powf((max / 6.0).log10().floor());
    while max / step > 6.0 {
        step = if max / (step * 2.0) <= 6.0 {
            step * 2.0
        } else if max / (step * 5.0) <= 6.0 {
            step * 5.0
        } else {
            step * 10.0
        };
    }
    let end = (max / step).ceil() * step;
    ((end * 1e9).round() / 1e9, step)
}

fn open(out: &mut String, width: f64, left: f64, height: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{t}" font-family="sans-serif" font-size="12">"#,
        t = escape(title)
    );
    let _ = write!(
        out,
        r#"<text x="{left}" y="18" font-size="14" font-weight="bold">{}</text>"#,
        escape(title)
    );
}

/// The legend of a strip chart: one dot per category, in its colour.
fn legend(out: &mut String, width: f64, names: &[String]) {
    for (i, name) in names.iter().enumerate() {
        let y = TOP + 8.0 + 18.0 * i as f64;
        let x = width - RIGHT + 14.0;
        let colour = PALETTE[i % PALETTE.len()];
        let _ = write!(
            out,
            r#"<circle cx="{}" cy="{y}" r="4" fill="{colour}"/>"#,
            x + 6.0
        );
        let _ = write!(
            out,
            r#"<text x="{}" y="{}">{}</text>"#,
            x + 20.0,
            y + 4.0,
            escape(name)
        );
    }
}

/// Small multiples: one small panel per `(name, points)` series, side by
/// side in rows of `columns`, every panel on the same x and y scales (x from
/// 0 to the largest x, y from 0 to a round ceiling of the largest y), so
/// series that would lie on top of each other in one chart each stay
/// visible, and a flat zero reads as one. One `<svg>` element.
pub(crate) fn small_multiples(
    title: &str,
    x_label: &str,
    y_label: &str,
    columns: usize,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let columns = columns.clamp(1, series.len().max(1));
    let rows = series.len().div_ceil(columns).max(1);
    let (panel_w, panel_h, gap_x, gap_y) = (250.0, 120.0, 30.0, 56.0);
    let (left, top) = (58.0, 40.0);
    let width = left + columns as f64 * (panel_w + gap_x);
    let height = top + rows as f64 * (panel_h + gap_y) + 10.0;
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (x_max, x_step) = nice_axis(points.clone().map(|p| p.0).fold(0.0, f64::max));
    let y_max = nice_ceiling(points.map(|p| p.1).fold(0.0, f64::max));

    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{t}" font-family="sans-serif" font-size="11">"#,
        t = escape(title)
    );
    let _ = write!(
        out,
        r##"<text x="{left}" y="18" font-size="14" font-weight="bold">{}</text><text x="{left}" y="32" fill="#555">y: {}, same scale in every panel; x: {}</text>"##,
        escape(title),
        escape(y_label),
        escape(x_label)
    );
    for (i, (name, pts)) in series.iter().enumerate() {
        let (col, row) = (i % columns, i / columns);
        let x0 = left + col as f64 * (panel_w + gap_x);
        let y0 = top + 16.0 + row as f64 * (panel_h + gap_y);
        let sx = |x: f64| x0 + x / x_max * panel_w;
        let sy = |y: f64| y0 + panel_h - y / y_max * panel_h;
        let colour = PALETTE[i % PALETTE.len()];
        let _ = write!(
            out,
            r##"<text x="{x0}" y="{}" font-size="13" font-weight="bold" fill="{colour}">{}</text><rect x="{x0}" y="{y0}" width="{panel_w}" height="{panel_h}" fill="none" stroke="#888"/>"##,
            y0 - 5.0,
            escape(name)
        );
        for tick in [0.0, y_max / 2.0, y_max] {
            let _ = write!(
                out,
                r##"<line x1="{x0}" y1="{py}" x2="{}" y2="{py}" stroke="#eee"/><text x="{}" y="{}" text-anchor="end">{tick}</text>"##,
                x0 + panel_w,
                x0 - 4.0,
                sy(tick) + 4.0,
                py = sy(tick),
            );
        }
        let mut x = 0.0;
        while x <= x_max + x_step / 2.0 {
            let _ = write!(
                out,
                r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
                sx(x),
                y0 + panel_h + 13.0,
                (x * 1000.0).round() / 1000.0
            );
            x += x_step * 2.0;
        }
        let coords: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
            .collect();
        let peak = pts.iter().map(|p| p.1).fold(0.0, f64::max);
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"><title>{}: peak {peak}</title></polyline><text x="{}" y="{}" text-anchor="end" fill="{colour}">peak {peak}</text>"#,
            coords.join(" "),
            escape(name),
            x0 + panel_w - 4.0,
            y0 + 13.0,
        );
    }
    out.push_str("</svg>");
    out
}

/// A strip chart on a log₁₀ x axis: one row per `(row, dots)`, each dot a
/// value coloured (and nudged vertically) by its category index into
/// `categories`. Values below `floor` are drawn at `floor`.
pub(crate) fn strip_chart(
    title: &str,
    x_label: &str,
    floor: f64,
    categories: &[String],
    rows: &[(String, Vec<(f64, usize)>)],
) -> String {
    // Room on the left for the longest row label (about 7 px a character).
    let longest = rows
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0);
    let left = LEFT.max(7.0 * longest as f64 + 16.0);
    let width = WIDTH + left - LEFT;
    let row_h = 30.0;
    let plot_h = row_h * rows.len().max(1) as f64;
    let height = (TOP + plot_h + 50.0).max(TOP + 18.0 * categories.len() as f64 + 20.0);
    let plot_w = width - left - RIGHT;
    let max = rows
        .iter()
        .flat_map(|(_, d)| d.iter().map(|p| p.0))
        .fold(floor, f64::max);
    let (lo, hi) = (
        floor.log10().floor(),
        max.log10().ceil().max(floor.log10() + 1.0),
    );
    let sx = |v: f64| left + (v.max(floor).log10() - lo) / (hi - lo) * plot_w;

    let mut out = String::new();
    open(&mut out, width, left, height, title);
    let mut decade = lo;
    while decade <= hi {
        let v = 10f64.powf(decade);
        let label = if v >= 1.0 {
            format!("{v:.0}")
        } else {
            format!("{v}")
        };
        let _ = write!(
            out,
            r##"<line x1="{x}" y1="{TOP}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{label}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            x = sx(v),
        );
        decade += 1.0;
    }
    let _ = write!(
        out,
        r##"<rect x="{left}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/><text x="{}" y="{}" text-anchor="middle">{}</text>"##,
        left + plot_w / 2.0,
        TOP + plot_h + 36.0,
        escape(x_label)
    );
    let lanes = categories.len().max(1) as f64;
    for (r, (name, dots)) in rows.iter().enumerate() {
        let top = TOP + row_h * r as f64;
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 6.0,
            top + row_h / 2.0 + 4.0,
            escape(name)
        );
        for &(value, category) in dots {
            let y = top + 4.0 + (row_h - 8.0) * (category as f64 + 0.5) / lanes;
            let _ = write!(
                out,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="3" fill="{}" fill-opacity="0.7"><title>{} {}: {value} ms</title></circle>"#,
                sx(value),
                PALETTE[category % PALETTE.len()],
                escape(name),
                escape(categories.get(category).map_or("", String::as_str)),
            );
        }
    }
    legend(&mut out, width, categories);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceiling_rounds_up_to_1_2_5() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(3.0), 5.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(500.0), 500.0);
    }

    #[test]
    fn nice_axis_ends_on_a_round_tick() {
        assert_eq!(nice_axis(3.0), (3.0, 0.5));
        assert_eq!(nice_axis(1.05), (1.2, 0.2));
        assert_eq!(nice_axis(47.0), (50.0, 10.0));
    }

    #[test]
    fn escape_makes_text_safe_in_markup() {
        assert_eq!(escape(r#"a<b>&"c""#), "a&lt;b&gt;&amp;&quot;c&quot;");
    }

    #[test]
    fn charts_are_one_svg_element_each() {
        let strip = strip_chart(
            "t",
            "ms",
            0.01,
            &["c".into()],
            &[("p".into(), vec![(0.0, 0)])],
        );
        assert_eq!(strip.matches("<svg").count(), 1);
        let panels = small_multiples(
            "t",
            "s",
            "n",
            4,
            &[
                ("a".into(), vec![(0.0, 0.0), (1.0, 0.0)]),
                ("b".into(), vec![(0.0, 0.0), (1.0, 5.0)]),
            ],
        );
        assert_eq!(panels.matches("<svg").count(), 1);
        assert_eq!(panels.matches("<polyline").count(), 2);
        assert_eq!(strip.matches("<circle").count(), 2); // the dot and its legend
    }
}
