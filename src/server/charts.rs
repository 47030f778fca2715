//! Draws the console's charts (training curves, canary exposure, the utility/memorization frontier, the
//! repetition study) as SVG strings on the server.
//!
//! The console ships no chart script, so its Content-Security-Policy can forbid inline script and every
//! external origin. Everything here is therefore plain SVG markup styled only through presentation
//! attributes (`stroke`, `fill`, `font-size`): no `style` attribute, no `<script>`, no external reference.
//! A point's details are an SVG `<title>`, which browsers show on hover without any script.
//! Output is deterministic (same input, same bytes) so pages can be cached and compared in tests.

use std::fmt::Write;

/// How a series' points are drawn. Shapes as well as colours tell series apart, so a chart still reads
/// in grey or to a reader who does not see the colours.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Marker {
    #[default]
    Circle,
    Square,
    Triangle,
    Diamond,
}

/// One named sequence of `(x, y)` points; non-finite points are ignored when drawing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Per point, an interval on y (a 95% interval) drawn as a whisker; empty, or as long as `points`.
    pub y_ranges: Vec<Option<(f64, f64)>>,
    /// Per point, what a hover shows (an SVG `<title>`); empty, or as long as `points`.
    pub labels: Vec<String>,
    pub marker: Marker,
    /// Outline only: the same colour and shape then tell two groups apart (this run and the others).
    pub hollow: bool,
    /// A palette index, so related series share a colour; `None`: the series' position.
    pub colour: Option<usize>,
    /// A dashed line (line charts): where two series coincide, the one beneath shows through the gaps.
    pub dashed: bool,
}

/// A reference line across the plot area at `at` on one axis: a policy limit, or chance.
#[derive(Debug, Clone, PartialEq)]
pub struct Guide {
    /// A vertical line at x = `at`; otherwise a horizontal one at y = `at`.
    pub vertical: bool,
    pub at: f64,
    pub label: String,
    /// Dotted (chance, a baseline) rather than dashed (a limit).
    pub dotted: bool,
}

impl Guide {
    pub fn x(at: f64, label: impl Into<String>) -> Guide {
        Guide {
            vertical: true,
            at,
            label: label.into(),
            dotted: false,
        }
    }

    pub fn y(at: f64, label: impl Into<String>) -> Guide {
        Guide {
            vertical: false,
            at,
            label: label.into(),
            dotted: false,
        }
    }

    pub fn dotted(self) -> Guide {
        Guide { dotted: true, ..self }
    }
}

/// A chart description; `log_x` puts x on a logarithmic scale and drops points with `x <= 0`. The axes
/// always take in the guides, so a limit is drawn even where every point is far from it.
/// `Chart { title, x_label, y_label, ..Chart::default() }` leaves the rest off.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub series: Vec<Series>,
    pub guides: Vec<Guide>,
    /// The axis reaches down to 0 (a rate or an exposure, where "none" is the natural origin); ignored
    /// for a logarithmic x.
    pub x_from_zero: bool,
    pub y_from_zero: bool,
}

const W: f64 = 640.0;
const H: f64 = 320.0;
// Plot area; the right margin holds the legend so it never covers data.
const LEFT: f64 = 60.0;
const RIGHT: f64 = 500.0;
const TOP: f64 = 32.0;
const BOTTOM: f64 = 272.0;
// Okabe-Ito order (without the yellow, which vanishes on white): distinguishable under colour blindness.
const PALETTE: [&str; 8] = [
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#8c564b",
];
// Width of the legend column in characters: longer names wrap onto more lines (up to LEGEND_LINES), so
// two names that differ only after the first line still read differently.
const LEGEND_CHARS: usize = 18;
const LEGEND_LINES: usize = 3;
const GUIDE_COLOUR: &str = "#555";

/// Escapes text for XML/HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 cannot carry these even escaped; dropping them keeps a standalone SVG well-formed.
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A series' points that can be drawn, each with its index in the series.
fn drawable(s: &Series, log_x: bool, sort: bool) -> Vec<(usize, (f64, f64))> {
    let keep = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!log_x || x > 0.0);
    let mut pts: Vec<(usize, (f64, f64))> = s
        .points
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, p)| keep(p))
        .collect();
    // Records can arrive out of order (resumed runs); a line must not zig-zag back in x.
    if sort {
        pts.sort_by(|a, b| a.1 .0.total_cmp(&b.1 .0));
    }
    pts
}

/// The finite part of a point's y interval, if it has one.
fn y_range(s: &Series, i: usize) -> Option<(f64, f64)> {
    s.y_ranges
        .get(i)
        .copied()
        .flatten()
        .filter(|(lo, hi)| lo.is_finite() && hi.is_finite())
}

impl Chart {
    /// Each series as a polyline with point markers, in x order.
    pub fn line_svg(&self) -> String {
        self.render(true)
    }

    /// Markers only (e.g. canary exposure against number of repeats).
    pub fn scatter_svg(&self) -> String {
        self.render(false)
    }

    fn render(&self, lines: bool) -> String {
        let sets: Vec<Vec<(usize, (f64, f64))>> = self
            .series
            .iter()
            .map(|s| drawable(s, self.log_x, lines))
            .collect();
        let title = escape(&self.title);
        let mut o = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {H}\" width=\"100%\" role=\"img\" \
             aria-label=\"{title}\" font-family=\"sans-serif\" font-size=\"11\" fill=\"#333\">\
             <title>{title}</title>"
        );
        let (mid_x, mid_y) = ((LEFT + RIGHT) / 2.0, (TOP + BOTTOM) / 2.0);
        text(
            &mut o,
            LEFT,
            18.0,
            "font-size=\"13\" font-weight=\"bold\"",
            &title,
        );
        text(&mut o, mid_x, H - 10.0, MIDDLE, &escape(&self.x_label));
        let rotate = format!("{MIDDLE} transform=\"rotate(-90 14 {})\"", num(mid_y));
        text(&mut o, 14.0, mid_y, &rotate, &escape(&self.y_label));
        let (mut xs, mut ys): (Vec<f64>, Vec<f64>) = sets.iter().flatten().map(|&(_, p)| p).unzip();
        if xs.is_empty() {
            frame(&mut o);
            text(
                &mut o,
                mid_x,
                mid_y,
                "text-anchor=\"middle\" fill=\"#888\"",
                "no data yet",
            );
            return o + "</svg>";
        }
        // Whiskers and guides belong inside the frame too.
        for (s, pts) in self.series.iter().zip(&sets) {
            for &(i, _) in pts {
                if let Some((lo, hi)) = y_range(s, i) {
                    ys.extend([lo, hi]);
                }
            }
        }
        let guides: Vec<&Guide> = self
            .guides
            .iter()
            .filter(|g| g.at.is_finite() && !(g.vertical && self.log_x && g.at <= 0.0))
            .collect();
        for g in &guides {
            if g.vertical {
                xs.push(g.at);
            } else {
                ys.push(g.at);
            }
        }
        if self.x_from_zero && !self.log_x {
            xs.push(0.0);
        }
        if self.y_from_zero {
            ys.push(0.0);
        }
        let ((x_lo, x_hi), (y_lo, y_hi)) = (min_max(&xs), min_max(&ys));
        let xt = if self.log_x {
            log_ticks(x_lo, x_hi)
        } else {
            nice_ticks(x_lo, x_hi)
        };
        let yt = nice_ticks(y_lo, y_hi);
        let (xmap, ymap) = (
            Axis::new(&xt, self.log_x, LEFT, RIGHT),
            Axis::new(&yt, false, BOTTOM, TOP),
        );
        for &t in &xt {
            let x = xmap.at(t);
            grid(&mut o, (x, TOP), (x, BOTTOM));
            text(&mut o, x, BOTTOM + 16.0, MIDDLE, &compact(t));
        }
        for &t in &yt {
            let y = ymap.at(t);
            grid(&mut o, (LEFT, y), (RIGHT, y));
            text(&mut o, LEFT - 6.0, y + 4.0, "text-anchor=\"end\"", &compact(t));
        }
        frame(&mut o);
        for g in &guides {
            guide(&mut o, g, &xmap, &ymap);
        }
        let (r, opacity) = if lines { (2.0, "1") } else { (3.0, "0.7") };
        for (i, (s, pts)) in self.series.iter().zip(&sets).enumerate() {
            if pts.is_empty() {
                continue;
            }
            let colour = PALETTE[s.colour.unwrap_or(i) % PALETTE.len()];
            if lines {
                let joined: Vec<String> = pts
                    .iter()
                    .map(|&(_, (x, y))| format!("{},{}", num(xmap.at(x)), num(ymap.at(y))))
                    .collect();
                let pts = joined.join(" ");
                let dash = if s.dashed { " stroke-dasharray=\"5 4\"" } else { "" };
                let _ = write!(
                    o,
                    "<polyline points=\"{pts}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\"{dash}/>"
                );
            }
            for &(k, (x, y)) in pts {
                let cx = xmap.at(x);
                if let Some((lo, hi)) = y_range(s, k) {
                    whisker(&mut o, cx, ymap.at(lo), ymap.at(hi), colour);
                }
                let label = s.labels.get(k).map(|l| escape(l)).unwrap_or_default();
                let paint = if s.hollow {
                    format!("fill=\"#fff\" stroke=\"{colour}\" stroke-width=\"1.5\"")
                } else {
                    format!("fill=\"{colour}\" fill-opacity=\"{opacity}\"")
                };
                marker(&mut o, s.marker, (cx, ymap.at(y)), r, &paint, &label);
            }
        }
        // Legend rows stop at the bottom of the plot area rather than spill out of the viewBox.
        let mut y = TOP + 8.0;
        for (i, s) in self.series.iter().enumerate() {
            let lines = wrap(&s.name, LEGEND_CHARS, LEGEND_LINES);
            let height = 14.0 * lines.len() as f64;
            if y + height - 14.0 > BOTTOM {
                break;
            }
            let colour = PALETTE[s.colour.unwrap_or(i) % PALETTE.len()];
            let x = RIGHT + 12.0;
            if s.marker == Marker::Circle && !s.hollow {
                let top = num(y - 9.0);
                let _ = write!(
                    o,
                    "<rect x=\"{x}\" y=\"{top}\" width=\"10\" height=\"10\" fill=\"{colour}\"/>"
                );
            } else {
                let paint = if s.hollow {
                    format!("fill=\"#fff\" stroke=\"{colour}\" stroke-width=\"1.5\"")
                } else {
                    format!("fill=\"{colour}\"")
                };
                marker(&mut o, s.marker, (x + 5.0, y - 4.0), 4.5, &paint, "");
            }
            for (j, line) in lines.iter().enumerate() {
                text(&mut o, RIGHT + 26.0, y + 14.0 * j as f64, "", &escape(line));
            }
            y += height + 4.0;
        }
        o + "</svg>"
    }
}

/// `name` in lines of at most `width` characters, broken at spaces where it can be; past `max` lines the
/// last one ends in `…`.
fn wrap(name: &str, width: usize, max: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in name.split(' ').filter(|w| !w.is_empty()) {
        let mut word: Vec<char> = word.chars().collect();
        let len = line.chars().count();
        if len > 0 && len + 1 + word.len() <= width {
            line.push(' ');
            line.extend(word);
            continue;
        }
        if len > 0 {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > width {
            lines.push(word.drain(..width).collect());
        }
        line = word.into_iter().collect();
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    if lines.len() > max {
        lines.truncate(max);
        let last: String = lines[max - 1].chars().take(width - 1).chain(['…']).collect();
        lines[max - 1] = last;
    }
    lines
}

/// One point's marker, centred on `(x, y)` with "radius" `r`, and its hover text when `label` (escaped)
/// is not empty.
fn marker(o: &mut String, shape: Marker, (x, y): (f64, f64), r: f64, paint: &str, label: &str) {
    let body = if label.is_empty() {
        "/>".to_string()
    } else {
        format!("><title>{label}</title>")
    };
    let close = |tag: &str| {
        if label.is_empty() {
            String::new()
        } else {
            format!("</{tag}>")
        }
    };
    let (cx, cy) = (num(x), num(y));
    match shape {
        Marker::Circle => {
            let _ = write!(
                o,
                "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{}\" {paint}{body}{}",
                num(r),
                close("circle")
            );
        }
        _ => {
            let d = match shape {
                Marker::Square => {
                    let s = r * 0.9;
                    format!(
                        "M{} {}H{}V{}H{}Z",
                        num(x - s),
                        num(y - s),
                        num(x + s),
                        num(y + s),
                        num(x - s)
                    )
                }
                Marker::Triangle => {
                    let s = r * 1.2;
                    format!(
                        "M{} {}L{} {}L{} {}Z",
                        cx,
                        num(y - s),
                        num(x + s),
                        num(y + s * 0.8),
                        num(x - s),
                        num(y + s * 0.8)
                    )
                }
                _ => {
                    let s = r * 1.25;
                    format!(
                        "M{} {}L{} {}L{} {}L{} {}Z",
                        cx,
                        num(y - s),
                        num(x + s),
                        cy,
                        cx,
                        num(y + s),
                        num(x - s),
                        cy
                    )
                }
            };
            let _ = write!(o, "<path d=\"{d}\" {paint}{body}{}", close("path"));
        }
    }
}

/// A vertical interval at `x` from `y1` to `y2`, with short caps.
fn whisker(o: &mut String, x: f64, y1: f64, y2: f64, colour: &str) {
    let (x, a, b, y1, y2) = (num(x), num(x - 3.0), num(x + 3.0), num(y1), num(y2));
    let _ = write!(
        o,
        "<path d=\"M{x} {y1}V{y2}M{a} {y1}H{b}M{a} {y2}H{b}\" fill=\"none\" stroke=\"{colour}\" \
         stroke-opacity=\"0.6\"/>"
    );
}

/// A guide across the plot area with its label inside the frame: at the top for a vertical line (on the
/// side with room), at the right end, above the line, for a horizontal one.
fn guide(o: &mut String, g: &Guide, xmap: &Axis, ymap: &Axis) {
    let dash = if g.dotted { "2 3" } else { "6 3" };
    let attrs = format!("stroke=\"{GUIDE_COLOUR}\" stroke-width=\"1.2\" stroke-dasharray=\"{dash}\"");
    let label = escape(&g.label);
    let paint = format!("font-size=\"10\" fill=\"{GUIDE_COLOUR}\"");
    if g.vertical {
        let x = xmap.at(g.at);
        let _ = write!(
            o,
            "<line x1=\"{0}\" y1=\"{TOP}\" x2=\"{0}\" y2=\"{BOTTOM}\" {attrs}/>",
            num(x)
        );
        let (tx, anchor) = if x > (LEFT + RIGHT) / 2.0 {
            (x - 3.0, "end")
        } else {
            (x + 3.0, "start")
        };
        text(
            o,
            tx,
            TOP + 12.0,
            &format!("text-anchor=\"{anchor}\" {paint}"),
            &label,
        );
    } else {
        let y = ymap.at(g.at);
        let _ = write!(
            o,
            "<line x1=\"{LEFT}\" y1=\"{0}\" x2=\"{RIGHT}\" y2=\"{0}\" {attrs}/>",
            num(y)
        );
        // Below the line when it runs along the top of the frame.
        let ty = if y - 3.0 < TOP + 10.0 { y + 11.0 } else { y - 3.0 };
        text(
            o,
            RIGHT - 3.0,
            ty,
            &format!("text-anchor=\"end\" {paint}"),
            &label,
        );
    }
}

const MIDDLE: &str = "text-anchor=\"middle\"";

/// `body` must already be escaped.
fn text(o: &mut String, x: f64, y: f64, attrs: &str, body: &str) {
    let sep = if attrs.is_empty() { "" } else { " " };
    let _ = write!(
        o,
        "<text x=\"{}\" y=\"{}\"{sep}{attrs}>{body}</text>",
        num(x),
        num(y)
    );
}

fn grid(o: &mut String, (x1, y1): (f64, f64), (x2, y2): (f64, f64)) {
    let (x1, y1, x2, y2) = (num(x1), num(y1), num(x2), num(y2));
    let _ = write!(
        o,
        "<line x1=\"{x1}\" y1=\"{y1}\" x2=\"{x2}\" y2=\"{y2}\" stroke=\"#e0e0e0\"/>"
    );
}

fn frame(o: &mut String) {
    let (w, h) = (RIGHT - LEFT, BOTTOM - TOP);
    let _ = write!(
        o,
        "<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{w}\" height=\"{h}\" fill=\"none\" stroke=\"#888\"/>"
    );
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
        (lo.min(x), hi.max(x))
    })
}

/// Maps data values onto a pixel interval; the domain is the first..last tick so ticks sit on the frame.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Axis {
    fn new(ticks: &[f64], log: bool, from: f64, to: f64) -> Axis {
        let f = |v: f64| if log { v.log10() } else { v };
        let lo = ticks.first().map_or(0.0, |&v| f(v));
        let hi = ticks.last().map_or(1.0, |&v| f(v));
        Axis {
            lo,
            hi,
            log,
            from,
            to,
        }
    }

    fn at(&self, v: f64) -> f64 {
        let v = if self.log { v.log10() } else { v };
        let span = self.hi - self.lo;
        let t = if span > 0.0 && span.is_finite() {
            (v - self.lo) / span
        } else {
            0.5
        };
        self.from + t.clamp(0.0, 1.0) * (self.to - self.from)
    }
}

/// `k * m * 10^e`, computed so that e.g. 3×2×10⁻¹ is exactly the double nearest 0.6.
fn decimal(km: i64, e: i32) -> f64 {
    if e >= 0 {
        km as f64 * 10f64.powi(e)
    } else {
        km as f64 / 10f64.powi(-e)
    }
}

/// 4–6 evenly spaced ticks with a 1/2/5×10^k step, the first at or below `lo`, the last at or above `hi`.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let (lo, hi) = if hi - lo <= lo.abs().max(hi.abs()) * 1e-12 {
        // A single value (or a flat line) still needs a visible range around it.
        let mid = (lo + hi) / 2.0;
        let pad = if mid == 0.0 { 1.0 } else { mid.abs() * 0.1 };
        (mid - pad, mid + pad)
    } else {
        (lo, hi)
    };
    let span = hi - lo;
    if !span.is_finite() {
        return vec![lo, hi];
    }
    let f = span.log10().floor() as i32;
    for e in (f - 1)..=(f + 1) {
        for m in [1i64, 2, 5] {
            let step = decimal(m, e);
            let (first, last) = ((lo / step).floor() as i64, (hi / step).ceil() as i64);
            if last - first + 1 > 6 {
                continue;
            }
            // The next coarser step can jump from 7 ticks to 3; widen rather than show a bare axis.
            let (mut first, mut last) = (first, last);
            while last - first + 1 < 4 {
                last += 1;
                if last - first + 1 < 4 {
                    first -= 1;
                }
            }
            return (first..=last).map(|k| decimal(k * m, e)).collect();
        }
    }
    vec![lo, hi]
}

/// Powers of 2 while the range is narrow and labels stay short (repeat counts 1, 2, 4, …), else powers of
/// 10; a stride keeps it to at most 6 ticks.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    for base2 in [true, false] {
        let log = |v: f64| if base2 { v.log2() } else { v.log10() };
        let (mut a, mut b) = (log(lo).floor() as i32, log(hi).ceil() as i32);
        if a == b {
            a -= 1;
            b += 1;
        }
        let stride = (b - a + 4) / 5;
        let last = a + stride * ((b - a + stride - 1) / stride);
        if base2 && !(b - a <= 6 && a >= -2 && last <= 9) {
            continue;
        }
        let power = |k: i32| if base2 { 2f64.powi(k) } else { decimal(1, k) };
        return (a..=last).step_by(stride as usize).map(power).collect();
    }
    Vec::new()
}

/// Short tick label: 1200 → "1.2k", 0.0005 → "5e-4", 0.25 → "0.25"; never more than 2 decimals.
fn compact(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 || !v.is_finite() {
        return "0".into();
    }
    if (1e3..1e15).contains(&a) {
        for (scale, suffix) in [(1e3, "k"), (1e6, "M"), (1e9, "G"), (1e12, "T")] {
            let m = round2(v / scale);
            if m.abs() < 1e3 {
                return format!("{}{suffix}", num(m));
            }
        }
    }
    let hundredths = a * 100.0;
    if (0.01..1e3).contains(&a) && (hundredths - hundredths.round()).abs() < 1e-6 {
        return num(v);
    }
    let mut e = a.log10().floor() as i32;
    let mut m = round2(if e < 0 {
        v * 10f64.powi(-e)
    } else {
        v / 10f64.powi(e)
    });
    if m.abs() >= 10.0 {
        m = round2(m / 10.0);
        e += 1;
    }
    format!("{}e{e}", num(m))
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// At most 2 decimals, trailing zeros dropped, and never "-0".
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    if s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f64 = f64::NAN;

    fn chart(log_x: bool, series: &[(&str, Vec<(f64, f64)>)]) -> Chart {
        let series = series.iter().map(|(n, p)| Series {
            name: n.to_string(),
            points: p.clone(),
            ..Series::default()
        });
        let (title, x_label, y_label) = ("Loss".to_string(), "step".to_string(), "loss".to_string());
        Chart {
            title,
            x_label,
            y_label,
            log_x,
            series: series.collect(),
            ..Chart::default()
        }
    }

    /// Every value of `attr="…"`, in document order.
    fn attrs(svg: &str, attr: &str) -> Vec<String> {
        let pat = format!(" {attr}=\"");
        svg.split(pat.as_str())
            .skip(1)
            .map(|r| r.split('"').next().unwrap_or("").to_string())
            .collect()
    }

    /// Marker centres, then polyline vertices, parsed back from the SVG.
    fn plotted(svg: &str) -> Vec<(f64, f64)> {
        let f = |v: &str| v.parse::<f64>().unwrap();
        let (cx, cy) = (attrs(svg, "cx"), attrs(svg, "cy"));
        let mut pts: Vec<(f64, f64)> = cx.iter().zip(&cy).map(|(x, y)| (f(x), f(y))).collect();
        for p in attrs(svg, "points") {
            pts.extend(
                p.split(' ')
                    .map(|xy| xy.split_once(',').unwrap())
                    .map(|(x, y)| (f(x), f(y))),
            );
        }
        pts
    }

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        assert_eq!(escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&apos;");
        assert_eq!(escape("a\u{0}b\tc é"), "ab\tc é");
        let mut c = chart(false, &[("<script>&\"'", vec![(1.0, 2.0), (2.0, 3.0)])]);
        c.title = "<script>alert(1)</script>".into();
        (c.x_label, c.y_label) = ("<script>".into(), "a&b".into());
        for svg in [c.line_svg(), c.scatter_svg(), chart(false, &[]).line_svg()] {
            assert!(!svg.contains("<script") && !svg.contains("style=") && !svg.contains("<style"));
            assert!(!svg.contains("href") && !svg.contains("url("));
            assert_eq!(svg.matches("http").count(), 1, "only the xmlns namespace");
        }
        let svg = c.line_svg();
        assert!(svg.contains(">&lt;script&gt;&amp;&quot;&apos;</text>"));
        assert!(svg.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>"));
        assert!(svg.contains("aria-label=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));
        assert!(svg.contains(">a&amp;b</text>") && svg.contains(">&lt;script&gt;</text>"));
    }

    #[test]
    fn one_polyline_per_non_empty_series_and_nan_skipped() {
        let c = chart(
            false,
            &[
                (
                    "a",
                    vec![(0.0, 1.0), (NAN, 2.0), (1.0, f64::NEG_INFINITY), (2.0, 0.5)],
                ),
                ("empty", vec![]),
                ("all nan", vec![(NAN, 1.0), (1.0, f64::INFINITY)]),
                ("single", vec![(0.5, 0.7)]),
            ],
        );
        let (line, scatter) = (c.line_svg(), c.scatter_svg());
        assert_eq!(line.matches("<polyline").count(), 2);
        assert_eq!(scatter.matches("<polyline").count(), 0);
        for svg in [&line, &scatter] {
            assert_eq!(svg.matches("<circle").count(), 3);
            assert!(!svg.contains("NaN") && !svg.contains("inf"));
        }
        // The legend still names every series, so a missing curve is visibly missing.
        assert_eq!(line.matches("<rect").count(), 1 + 4);
    }

    #[test]
    fn points_map_inside_the_plot_area() {
        let c = chart(
            false,
            &[
                ("a", vec![(-50.0, -3.0), (0.0, 7.5), (120.0, 0.001)]),
                ("b", vec![(7.0, -2.0), (33.0, 1.0)]),
            ],
        );
        for svg in [c.line_svg(), c.scatter_svg()] {
            let pts = plotted(&svg);
            assert!(pts.len() >= 5);
            for (x, y) in pts {
                assert!(
                    (LEFT..=RIGHT).contains(&x) && (TOP..=BOTTOM).contains(&y),
                    "({x},{y})"
                );
            }
        }
        // Input order (2,1),(1,0) is drawn in x order; y grows upward; the extremes land on the frame.
        let svg = chart(false, &[("a", vec![(2.0, 1.0), (1.0, 0.0)])]).line_svg();
        assert_eq!(attrs(&svg, "points"), vec!["60,272 500,32".to_string()]);
    }

    #[test]
    fn single_point_and_flat_series_get_a_real_range() {
        // Strictly inside: padding keeps a lone value off the frame (x too, for the single point).
        for (pts, x_padded) in [
            (vec![(3.0, 3.0)], true),
            (vec![(0.0, -2.0), (5.0, -2.0), (9.0, -2.0)], false),
        ] {
            let svg = chart(false, &[("a", pts)]).line_svg();
            let plotted = plotted(&svg);
            assert!(!plotted.is_empty() && svg.matches("<line").count() >= 8);
            for (x, y) in plotted {
                assert!(
                    y > TOP && y < BOTTOM && (!x_padded || (x > LEFT && x < RIGHT)),
                    "({x},{y})"
                );
            }
        }
    }

    #[test]
    fn empty_chart_draws_frame_and_notice() {
        for c in [
            chart(false, &[]),
            chart(true, &[("x", vec![(NAN, NAN), (0.0, 1.0)])]),
        ] {
            for svg in [c.line_svg(), c.scatter_svg()] {
                assert!(svg.contains(">no data yet</text>"));
                assert!(svg.contains("<rect x=\"60\" y=\"32\" width=\"440\" height=\"240\""));
                assert!(svg.starts_with("<svg ") && svg.ends_with("</svg>"));
                assert!(svg.contains(" width=\"100%\"") && svg.contains(" role=\"img\""));
            }
        }
    }

    #[test]
    fn log_x_skips_non_positive_x() {
        let pts = vec![(0.0, 1.0), (-4.0, 2.0), (1.0, 0.1), (4.0, 0.5), (16.0, 0.9)];
        let svg = chart(true, &[("exposure", pts.clone())]).scatter_svg();
        assert_eq!(svg.matches("<circle").count(), 3);
        let xs: Vec<f64> = plotted(&svg).iter().map(|p| p.0).collect();
        // Equal ratios get equal distances on a log axis.
        assert!(((xs[1] - xs[0]) - (xs[2] - xs[1])).abs() < 0.02);
        for label in [">1</text>", ">2</text>", ">4</text>", ">8</text>", ">16</text>"] {
            assert!(svg.contains(label), "{label}");
        }
        let linear = chart(false, &[("exposure", pts)]).scatter_svg();
        assert_eq!(linear.matches("<circle").count(), 5);
    }

    #[test]
    fn ticks_exact_values() {
        assert_eq!(nice_ticks(0.0, 0.87), vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(nice_ticks(0.0, 100.0), vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(nice_ticks(-3.0, 7.0), vec![-5.0, 0.0, 5.0, 10.0]);
        assert_eq!(
            nice_ticks(0.0012, 0.0049),
            vec![0.001, 0.002, 0.003, 0.004, 0.005]
        );
        assert_eq!(nice_ticks(1200.0, 5100.0), vec![1e3, 2e3, 3e3, 4e3, 5e3, 6e3]);
        // Degenerate ranges are padded: a single value 5 → 4.5..5.5, zero → -1..1.
        assert_eq!(nice_ticks(5.0, 5.0), vec![4.5, 5.0, 5.5, 6.0]);
        assert_eq!(nice_ticks(0.0, 0.0), vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
        assert_eq!(log_ticks(1.0, 20.0), vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0]);
        assert_eq!(log_ticks(8.0, 8.0), vec![4.0, 8.0, 16.0]);
        assert_eq!(log_ticks(1.0, 64.0), vec![1.0, 4.0, 16.0, 64.0]);
        assert_eq!(log_ticks(3.0, 100.0), vec![2.0, 8.0, 32.0, 128.0]);
        assert_eq!(log_ticks(1.0, 100.0), vec![1.0, 10.0, 100.0]);
        assert_eq!(log_ticks(2000.0, 2000.0), vec![1e3, 1e4]);
        assert_eq!(log_ticks(1000.0, 1000.0), vec![100.0, 1e3, 1e4]);
        assert_eq!(log_ticks(0.001, 1e6), vec![0.001, 0.1, 10.0, 1e3, 1e5, 1e7]);
    }

    #[test]
    fn ticks_cover_range_with_nice_even_steps() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        for _ in 0..5000 {
            let scale = 10f64.powf(rand() * 12.0 - 6.0);
            let lo = (rand() - 0.5) * scale;
            let hi = lo + rand() * scale;
            let t = nice_ticks(lo, hi);
            assert!(
                (4..=6).contains(&t.len()) && t[0] <= lo && t[t.len() - 1] >= hi,
                "{lo}..{hi}: {t:?}"
            );
            let step = t[1] - t[0];
            let m = step / 10f64.powf(step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0, 10.0].iter().any(|n| (m - n).abs() < 1e-6),
                "{step}"
            );
            assert!(t.windows(2).all(|w| ((w[1] - w[0]) - step).abs() <= step * 1e-9));
            let (lo, hi) = (lo.abs() + scale * 1e-3, hi.abs() + scale);
            let t = log_ticks(lo.min(hi), lo.max(hi));
            assert!((2..=6).contains(&t.len()) && t[0] <= lo.min(hi) && t[t.len() - 1] >= lo.max(hi));
        }
    }

    #[test]
    fn compact_labels() {
        let cases = [
            (1200.0, "1.2k"),
            (0.0005, "5e-4"),
            (0.0, "0"),
            (-0.0, "0"),
            (0.25, "0.25"),
            (0.6000000000000001, "0.6"),
            (-1_500_000.0, "-1.5M"),
            (999_999.0, "1M"),
            (0.001, "1e-3"),
            (0.015, "1.5e-2"),
            (3e9, "3G"),
            (1e20, "1e20"),
            (42.0, "42"),
        ];
        for (v, want) in cases {
            assert_eq!(compact(v), want, "{v}");
        }
        assert_eq!(
            (num(1.005), num(-0.001), num(12.5)),
            ("1".into(), "0".into(), "12.5".into())
        );
    }

    #[test]
    fn deterministic_with_at_most_two_decimals() {
        let train = vec![(0.0, 2.31234), (1.0, 1.98765), (2.0, 1.7), (3.0, 1.6543)];
        let c = chart(false, &[("train", train), ("val", vec![(0.0, 2.4), (3.0, 1.9)])]);
        assert_eq!(c.line_svg(), c.line_svg());
        assert_eq!(c.scatter_svg(), c.scatter_svg());
        for svg in [c.line_svg(), c.scatter_svg()] {
            let b = svg.as_bytes();
            for (i, _) in svg
                .match_indices('.')
                .filter(|&(i, _)| i > 0 && b[i - 1].is_ascii_digit())
            {
                let decimals = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                assert!(decimals <= 2, "{}", &svg[i.saturating_sub(10)..i + 10]);
            }
        }
        let mut p = PALETTE.to_vec();
        p.sort_unstable();
        p.dedup();
        assert!(p.len() >= 6);
    }

    #[test]
    fn guides_are_drawn_inside_the_frame_and_widen_the_axes_to_reach_them() {
        let mut c = chart(false, &[("acc", vec![(0.001, 0.4), (0.002, 0.5)])]);
        c.guides = vec![
            Guide::x(0.01, "limit <0.01>"),
            Guide::y(0.25, "chance").dotted(),
            Guide::x(f64::NAN, "never drawn"),
        ];
        let svg = c.scatter_svg();
        // The x axis now runs to the limit and y down to chance, though no point is there.
        assert!(
            svg.contains(">0.01</text>") && svg.contains(">0.25</text>"),
            "{svg}"
        );
        let dashes = attrs(&svg, "stroke-dasharray");
        assert_eq!(dashes, vec!["6 3".to_string(), "2 3".to_string()]);
        assert!(svg.contains(">limit &lt;0.01&gt;</text>") && svg.contains(">chance</text>"));
        assert!(!svg.contains("never drawn"));
        // The limit is the last x tick, so its line is the frame's right edge; chance is inside the frame.
        let guide = |dash: &str| -> String {
            svg.split("<line ")
                .find(|l| l.contains(&format!("stroke-dasharray=\"{dash}\"")))
                .unwrap()
                .to_string()
        };
        let (limit, chance) = (guide("6 3"), guide("2 3"));
        assert!(
            limit.starts_with("x1=\"500\" y1=\"32\" x2=\"500\" y2=\"272\""),
            "{limit}"
        );
        let y: f64 = attrs(&format!(" {chance}"), "y1")[0].parse().unwrap();
        assert!(y > TOP && y <= BOTTOM, "{chance}");
        // Rates start at none when asked to.
        let mut c = chart(false, &[("acc", vec![(0.3, 0.4), (0.5, 0.5)])]);
        assert!(!c.scatter_svg().contains(">0</text>"));
        (c.x_from_zero, c.y_from_zero) = (true, true);
        let svg = c.scatter_svg();
        assert_eq!(svg.matches(">0</text>").count(), 2, "{svg}");
        // On a log axis a guide at or below zero has no place and is left out.
        let mut c = chart(true, &[("a", vec![(1.0, 1.0), (8.0, 2.0)])]);
        c.guides = vec![Guide::x(0.0, "zero"), Guide::x(4.0, "four")];
        let svg = c.line_svg();
        assert!(!svg.contains(">zero<") && svg.contains(">four</text>"));
    }

    #[test]
    fn whiskers_widen_the_y_axis_and_markers_carry_shape_colour_and_an_escaped_hover_text() {
        let series = vec![
            Series {
                name: "this run".into(),
                points: vec![(1.0, 0.3), (2.0, 0.4)],
                y_ranges: vec![Some((0.2, 0.41)), Some((f64::NAN, 0.5))],
                labels: vec!["step 10 <a>".into(), "step 20".into()],
                colour: Some(1),
                ..Series::default()
            },
            Series {
                name: "others".into(),
                points: vec![(1.5, 0.35)],
                marker: Marker::Square,
                hollow: true,
                colour: Some(1),
                ..Series::default()
            },
            Series {
                name: "t".into(),
                points: vec![(1.2, 0.33)],
                marker: Marker::Triangle,
                ..Series::default()
            },
            Series {
                name: "d".into(),
                points: vec![(1.7, 0.36)],
                marker: Marker::Diamond,
                ..Series::default()
            },
        ];
        let c = Chart {
            series,
            ..chart(false, &[])
        };
        let svg = c.scatter_svg();
        // One whisker (the NaN interval is skipped), and the axis reaches down to its 0.2.
        assert_eq!(svg.matches("stroke-opacity=\"0.6\"").count(), 1);
        assert!(svg.contains(">0.2</text>"), "{svg}");
        assert!(svg.contains("<title>step 10 &lt;a&gt;</title></circle>"));
        assert!(svg.contains("<title>step 20</title></circle>"));
        // Both series of colour 1 share it; the hollow square is outlined (plot and legend).
        assert!(svg.matches("fill=\"#d55e00\"").count() >= 3, "{svg}");
        assert_eq!(svg.matches("fill=\"#fff\" stroke=\"#d55e00\"").count(), 2);
        // Square, triangle and diamond: one path each on the plot and one in the legend.
        assert_eq!(svg.matches("<path d=\"M").count(), 1 + 2 * 3);
        assert_eq!(svg.matches("<circle").count(), 2);
        // A dashed series dashes its line, and only its line.
        let mut c = chart(
            false,
            &[
                ("solid", vec![(1.0, 1.0), (2.0, 2.0)]),
                ("dashed", vec![(1.0, 1.0), (2.0, 2.0)]),
            ],
        );
        c.series[1].dashed = true;
        let svg = c.line_svg();
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches(" stroke-dasharray=\"5 4\"/>").count(), 1);
        assert!(!c.scatter_svg().contains("stroke-dasharray"));
    }

    #[test]
    fn legend_names_wrap_instead_of_truncating_to_the_same_text() {
        let (a, b) = ("diffusion run-0123456789ab", "diffusion run-0123456789ac");
        let svg = chart(false, &[(a, vec![(1.0, 1.0)]), (b, vec![(2.0, 2.0)])]).line_svg();
        let legend: Vec<&str> = svg
            .split("<text x=\"526\"")
            .skip(1)
            .map(|t| t.split('>').nth(1).unwrap().trim_end_matches("</text"))
            .collect();
        assert_eq!(
            legend,
            ["diffusion", "run-0123456789ab", "diffusion", "run-0123456789ac"]
        );
        assert_eq!(wrap("a b c", 18, 3), ["a b c"]);
        assert_eq!(wrap("", 18, 3), [""]);
        assert_eq!(
            wrap("abcdefghijklmnopqrstuvwxyz", 10, 3),
            ["abcdefghij", "klmnopqrst", "uvwxyz"]
        );
        assert_eq!(wrap("one two three four five six", 5, 3), ["one", "two", "thre…"]);
        for line in wrap("held-out continuation choice accuracy for the other runs", 18, 3) {
            assert!(line.chars().count() <= 18, "{line}");
        }
    }
}
