//! Hand-written SVG charts: mean quality against the share of calls to the large model.
//!
//! Drawing only: it takes ready-made series and must not compute metrics, pick routers or
//! colours for them, or write files.

use crate::metrics::Curve;

/// One line of a quality-vs-large-share plot.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotSeries {
    /// Legend label.
    pub name: String,
    /// SVG colour, e.g. `#1f77b4`.
    pub color: &'static str,
    /// Drawn dashed (baselines).
    pub dashed: bool,
    /// (large share in [0,1], mean quality) points, by increasing share.
    pub points: Vec<(f64, f64)>,
    /// An operating point to mark with a dot (e.g. the router at its default threshold).
    pub marker: Option<(f64, f64)>,
}

/// At most `max_points` (large share, quality) points of a curve, always with both ends.
pub fn curve_points(curve: &Curve, max_points: usize) -> Vec<(f64, f64)> {
    let n = curve.len();
    if n == 0 {
        return vec![(0.0, curve.quality.first().copied().unwrap_or(0.0))];
    }
    let steps = max_points.clamp(2, n + 1) - 1;
    let mut out: Vec<(f64, f64)> = (0..=steps)
        .map(|s| {
            let k = (s * n + steps / 2) / steps;
            (k as f64 / n as f64, curve.quality[k])
        })
        .collect();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A hand-written SVG line chart of quality against the share of large-model calls, with a
/// dotted horizontal reference line (e.g. 95% of always-large quality) if given.
pub fn quality_share_svg(
    title: &str,
    series: &[PlotSeries],
    reference: Option<(f64, &str)>,
) -> String {
    let (w, h) = (640.0, 420.0);
    let (left, right, top, bottom) = (60.0, 170.0, 36.0, 48.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let ys = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .chain(reference.map(|r| r.0));
    let (mut lo, mut hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    if !lo.is_finite() || !hi.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    // Round the y range out to 0.05 steps.
    let lo = (lo / 0.05).floor() * 0.05;
    let mut hi = (hi / 0.05).ceil() * 0.05;
    if hi - lo < 0.05 {
        hi = lo + 0.05;
    }
    let x_of = |x: f64| left + x.clamp(0.0, 1.0) * pw;
    let y_of = |y: f64| top + (1.0 - (y - lo) / (hi - lo)) * ph;
    let mut s = String::new();
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n"
    ));
    s.push_str(&format!(
        "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        xml_escape(title)
    ));
    // Grid and axes.
    for i in 0..=10 {
        let x = x_of(f64::from(i) / 10.0);
        s.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#e5e5e5\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}%</text>\n",
            top + ph,
            top + ph + 16.0,
            i * 10
        ));
    }
    let y_steps = ((hi - lo) / 0.05).round() as usize;
    for i in 0..=y_steps {
        let v = lo + 0.05 * i as f64;
        let y = y_of(v);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v:.2}</text>\n",
            left + pw,
            left - 6.0,
            y + 4.0
        ));
    }
    s.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">share of calls to the large model</text>\n<text transform=\"translate(16 {:.1}) rotate(-90)\" text-anchor=\"middle\">mean quality</text>\n",
        left + pw / 2.0,
        h - 10.0,
        top + ph / 2.0
    ));
    if let Some((y, label)) = reference {
        let yy = y_of(y);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"#888\" stroke-dasharray=\"2 3\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"#666\" text-anchor=\"end\">{}</text>\n",
            left + pw,
            left + pw - 4.0,
            yy - 4.0,
            xml_escape(label)
        ));
    }
    for (i, ser) in series.iter().enumerate() {
        let pts: Vec<String> = ser
            .points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), y_of(y)))
            .collect();
        let dash = if ser.dashed {
            " stroke-dasharray=\"6 4\""
        } else {
            ""
        };
        s.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n",
            ser.color,
            pts.join(" ")
        ));
        if let Some((x, y)) = ser.marker {
            s.push_str(&format!(
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{}\"/>\n",
                x_of(x),
                y_of(y),
                ser.color
            ));
        }
        let ly = top + 10.0 + 20.0 * i as f64;
        let lx = left + pw + 12.0;
        s.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            lx + 22.0,
            ser.color,
            lx + 28.0,
            ly + 4.0,
            xml_escape(&ser.name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Item;
    use crate::metrics::curve;

    #[test]
    fn curve_points_keep_the_ends_and_the_svg_is_well_formed() {
        let items: Vec<Item> = (0..1000)
            .map(|i| Item {
                quality_small: f64::from(i % 2),
                quality_large: 1.0,
                cost_small: 1.0,
                cost_large: 2.0,
            })
            .collect();
        let scores: Vec<f64> = (0..1000).map(|i| f64::from(-(i % 2))).collect();
        let c = curve(&items, &scores).unwrap();
        let pts = curve_points(&c, 101);
        assert_eq!(pts.len(), 101);
        assert_eq!(pts[0], (0.0, 0.5));
        assert_eq!(pts[100], (1.0, 1.0));
        assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
        let tiny = curve(&items[..3], &scores[..3]).unwrap();
        assert_eq!(curve_points(&tiny, 200).len(), 4);
        let svg = quality_share_svg(
            "a <b> & c",
            &[PlotSeries {
                name: String::from("router"),
                color: "#123456",
                dashed: false,
                points: pts,
                marker: Some((0.5, 1.0)),
            }],
            Some((0.95, "95%")),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt;b&gt; &amp; c"));
        assert_eq!(svg.matches("<polyline").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let empty = quality_share_svg("empty", &[], None);
        assert!(empty.contains("</svg>"));
    }
}

/// One point of a controller's trajectory for [`trajectory_svg`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrajectoryPoint {
    /// Requests so far (x).
    pub x: f64,
    /// Threshold in force.
    pub threshold: f64,
    /// Estimated quality retained, if any.
    pub estimated: Option<f64>,
    /// Its 95% interval.
    pub interval: Option<[f64; 2]>,
    /// True quality retained of the threshold in force.
    pub true_quality: f64,
}

/// A two-panel SVG: quality retained (estimated with its 95% band, true, the target) over
/// requests above, the threshold below; vertical lines at phase changes.
pub fn trajectory_svg(
    title: &str,
    points: &[TrajectoryPoint],
    target: Option<f64>,
    phase_starts: &[f64],
) -> String {
    let (w, h) = (720.0, 520.0);
    let (left, right, top) = (64.0, 24.0, 36.0);
    let pw = w - left - right;
    let (qh, gap, th) = (270.0, 40.0, 120.0);
    let x_max = points.last().map(|p| p.x).unwrap_or(1.0).max(1.0);
    let x_of = |x: f64| left + (x / x_max).clamp(0.0, 1.0) * pw;
    let qs = points
        .iter()
        .flat_map(|p| {
            let mut v = vec![p.true_quality];
            v.extend(p.estimated);
            v
        })
        .chain(target);
    let (mut qlo, mut qhi) = qs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    if !qlo.is_finite() || !qhi.is_finite() {
        (qlo, qhi) = (0.8, 1.0);
    }
    let qlo = ((qlo - 0.005) / 0.02).floor() * 0.02;
    let qhi = (((qhi + 0.005) / 0.02).ceil() * 0.02)
        .min(1.0)
        .max(qlo + 0.02);
    let qy = |y: f64| top + (1.0 - ((y - qlo) / (qhi - qlo)).clamp(0.0, 1.0)) * qh;
    let ts = points.iter().map(|p| p.threshold);
    let (mut tlo, mut thi) = ts.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
        (a.min(y), b.max(y))
    });
    if !tlo.is_finite() || !thi.is_finite() || thi - tlo < 0.01 {
        let mid = if tlo.is_finite() {
            (tlo + thi) / 2.0
        } else {
            0.5
        };
        (tlo, thi) = (mid - 0.005, mid + 0.005);
    }
    let t0 = top + qh + gap;
    let ty = |y: f64| t0 + (1.0 - (y - tlo) / (thi - tlo)) * th;
    let mut s = String::new();
    s.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{}</text>\n",
        w / 2.0,
        xml_escape(title)
    ));
    let steps = ((qhi - qlo) / 0.02).round() as usize;
    for i in 0..=steps {
        let v = qlo + 0.02 * i as f64;
        let y = qy(v);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e5e5e5\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>\n",
            left + pw,
            left - 6.0,
            y + 4.0,
            v * 100.0
        ));
    }
    for (v, label) in [(tlo, format!("{tlo:.3}")), (thi, format!("{thi:.3}"))] {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{label}</text>\n",
            left - 6.0,
            ty(v) + 4.0
        ));
    }
    for i in 0..=5 {
        let x = x_max * f64::from(i) / 5.0;
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            x_of(x),
            t0 + th + 16.0,
            x.round()
        ));
    }
    s.push_str(&format!(
        "<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{qh}\" fill=\"none\" stroke=\"#333\"/>\n<rect x=\"{left}\" y=\"{t0}\" width=\"{pw}\" height=\"{th}\" fill=\"none\" stroke=\"#333\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">requests</text>\n<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">quality retained</text>\n<text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">threshold</text>\n",
        left + pw / 2.0,
        h - 8.0,
        top + qh / 2.0,
        t0 + th / 2.0
    ));
    for &x in phase_starts {
        let xx = x_of(x);
        s.push_str(&format!(
            "<line x1=\"{xx:.1}\" y1=\"{top}\" x2=\"{xx:.1}\" y2=\"{:.1}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>\n",
            t0 + th
        ));
    }
    // The 95% band as a polygon: highs forward, lows back.
    let band: Vec<(f64, [f64; 2])> = points
        .iter()
        .filter_map(|p| p.interval.map(|i| (p.x, i)))
        .collect();
    if !band.is_empty() {
        let mut pts: Vec<String> = band
            .iter()
            .map(|(x, i)| format!("{:.1},{:.1}", x_of(*x), qy(i[1])))
            .collect();
        pts.extend(
            band.iter()
                .rev()
                .map(|(x, i)| format!("{:.1},{:.1}", x_of(*x), qy(i[0]))),
        );
        s.push_str(&format!(
            "<polygon fill=\"#1f77b4\" fill-opacity=\"0.15\" stroke=\"none\" points=\"{}\"/>\n",
            pts.join(" ")
        ));
    }
    if let Some(t) = target {
        let y = qy(t);
        s.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#d62728\" stroke-dasharray=\"2 3\"/>\n",
            left + pw
        ));
    }
    let line = |pts: Vec<(f64, f64)>, color: &str, y_of: &dyn Fn(f64) -> f64| {
        let p: Vec<String> = pts
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", x_of(x), y_of(y)))
            .collect();
        format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
            p.join(" ")
        )
    };
    s.push_str(&line(
        points
            .iter()
            .filter_map(|p| p.estimated.map(|e| (p.x, e)))
            .collect(),
        "#1f77b4",
        &qy,
    ));
    s.push_str(&line(
        points.iter().map(|p| (p.x, p.true_quality)).collect(),
        "#222222",
        &qy,
    ));
    s.push_str(&line(
        points.iter().map(|p| (p.x, p.threshold)).collect(),
        "#ff7f0e",
        &ty,
    ));
    let legend = [
        ("#1f77b4", "estimated (95% band)"),
        ("#222222", "true"),
        ("#d62728", "target"),
        ("#ff7f0e", "threshold"),
    ];
    for (i, (c, name)) in legend.iter().enumerate() {
        let lx = left + 10.0 + 160.0 * i as f64;
        let ly = top + qh + 22.0;
        s.push_str(&format!(
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{c}\" stroke-width=\"2\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            lx + 20.0,
            lx + 24.0,
            ly + 4.0,
            xml_escape(name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod trajectory_tests {
    use super::*;

    #[test]
    fn trajectory_svg_is_well_formed() {
        let pts: Vec<TrajectoryPoint> = (0..10)
            .map(|i| TrajectoryPoint {
                x: f64::from(i) * 500.0,
                threshold: 0.5 + f64::from(i) * 0.001,
                estimated: (i > 2).then_some(0.96),
                interval: (i > 2).then_some([0.94, 0.98]),
                true_quality: 0.95,
            })
            .collect();
        let svg = trajectory_svg("a & b", &pts, Some(0.95), &[2500.0]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &amp; b"));
        assert_eq!(svg.matches("<polyline").count(), 3);
        assert_eq!(svg.matches("<polygon").count(), 1);
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let empty = trajectory_svg("empty", &[], None, &[]);
        assert!(empty.contains("</svg>") && !empty.contains("NaN"));
    }
}
