//! Backtest and diff reports as one self-contained HTML page each: inline
//! CSS and hand-written SVG charts, no script and no network, so the file
//! reads the same in a browser, a mail attachment or a code review.
//!
//! Charts: the ROC curve, lift and cumulative capture by tenth, conversion
//! by tier, grade and stage as bars with Wilson 95 % intervals as
//! whiskers; tables for the criteria (penalties that fire among converters
//! flagged) and, for a diff, the tier transition matrix.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Bucket, Decile, Report, ScoreMetrics};

/// Old → new → records, per label.
pub type Moves = BTreeMap<String, BTreeMap<String, u64>>;

const OLD: &str = "#7a869a";
const NEW: &str = "#1f6feb";
const ONE: &str = "#1f6feb";
const WARN: &str = "#b42318";

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.1} %", 100.0 * x)
}

fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2433; margin: 24px auto; max-width: 1180px; padding: 0 16px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }}
h2 {{ font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde6; padding-bottom: 4px; }}
h3 {{ font-size: 15px; margin: 16px 0 6px; }}
.sub {{ color: #5b6475; margin: 0 0 12px; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(340px, 1fr)); gap: 16px 24px; }}
.card {{ border: 1px solid #d8dde6; border-radius: 6px; padding: 10px 12px; background: #fff; }}
.figures {{ display: flex; gap: 24px; flex-wrap: wrap; margin: 6px 0 10px; }}
.figure b {{ display: block; font-size: 20px; }}
.figure span {{ color: #5b6475; font-size: 12px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13px; }}
th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid #eceff4; }}
th {{ color: #5b6475; font-weight: 600; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.flag td {{ background: #fdecea; }}
.flag-text {{ color: {WARN}; font-weight: 600; }}
ul.warn {{ color: {WARN}; margin: 4px 0; padding-left: 20px; }}
.legend {{ font-size: 12px; color: #5b6475; }}
.swatch {{ display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin: 0 4px 0 10px; vertical-align: -1px; }}
svg {{ width: 100%; height: auto; display: block; }}
svg text {{ font: 11px system-ui, sans-serif; fill: #1d2433; }}
svg .axis {{ stroke: #5b6475; stroke-width: 1; }}
svg .grid {{ stroke: #eceff4; stroke-width: 1; }}
</style>
</head>
<body>
{body}
</body>
</html>
"#,
        title = esc(title)
    )
}

fn legend(series: &[(&str, &str)]) -> String {
    if series.len() < 2 {
        return String::new();
    }
    let mut out = String::from("<div class=\"legend\">");
    for (label, color) in series {
        let _ = write!(
            out,
            "<span class=\"swatch\" style=\"background:{color}\"></span>{}",
            esc(label)
        );
    }
    out.push_str("</div>");
    out
}

/// The ROC curve of each series, with the diagonal of chance.
fn roc_svg(series: &[(&str, &ScoreMetrics, &str)]) -> String {
    let (size, pad) = (300.0, 36.0);
    let mut out = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" height=\"{h}\" style=\"max-width:{w}px\" role=\"img\" aria-label=\"ROC curve\">",
        w = size + pad + 12.0,
        h = size + pad + 12.0
    );
    let x = |v: f64| pad + v * size;
    let y = |v: f64| 8.0 + (1.0 - v) * size;
    for tick in 0..=4 {
        let v = f64::from(tick) / 4.0;
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/><line class=\"grid\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
            x(v),
            y(0.0),
            x(v),
            y(1.0),
            x(0.0),
            y(v),
            x(1.0),
            y(v)
        );
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{v}</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{v}</text>",
            x(v),
            y(0.0) + 14.0,
            x(0.0) - 4.0,
            y(v) + 4.0
        );
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/><line class=\"axis\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
        x(0.0),
        y(0.0),
        x(1.0),
        y(0.0),
        x(0.0),
        y(0.0),
        x(0.0),
        y(1.0)
    );
    let _ = write!(
        out,
        "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#b8c0cc\" stroke-dasharray=\"4 4\"/>",
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    );
    for (label, score, color) in series {
        let points: Vec<String> = score
            .roc
            .iter()
            .map(|[fp, tp]| format!("{:.1},{:.1}", x(*fp), y(*tp)))
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>",
            points.join(" "),
            esc(label)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">false positive rate</text>",
        x(0.5),
        y(0.0) + 28.0
    );
    let _ = write!(
        out,
        "<text transform=\"translate(10 {:.1}) rotate(-90)\" text-anchor=\"middle\">true positive rate</text></svg>",
        y(0.5)
    );
    out
}

/// Lift per tenth as bars (one per series), cumulative capture as a line
/// on the right-hand axis.
fn deciles_svg(series: &[(&str, &[Decile], &str)]) -> String {
    let (width, height, left, bottom, top) = (420.0, 240.0, 36.0, 30.0, 10.0);
    let right = 40.0;
    let plot_w = width - left - right;
    let plot_h = height - bottom - top;
    let max_lift = series
        .iter()
        .flat_map(|(_, d, _)| d.iter().map(|d| d.lift))
        .fold(1.0_f64, f64::max)
        .ceil();
    let mut out = format!(
        "<svg viewBox=\"0 0 {width} {height}\" width=\"{width}\" height=\"{height}\" style=\"max-width:{width}px\" role=\"img\" aria-label=\"lift and capture by tenth\">"
    );
    let y_lift = |v: f64| top + plot_h * (1.0 - v / max_lift);
    let y_capture = |v: f64| top + plot_h * (1.0 - v);
    let ticks = max_lift as u32;
    for t in 0..=ticks {
        let v = f64::from(t);
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{left}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\"/><text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{t}×</text>",
            y = y_lift(v),
            x2 = left + plot_w,
            tx = left - 4.0,
            ty = y_lift(v) + 4.0
        );
    }
    for t in [0.0, 0.5, 1.0] {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{:.0} %</text>",
            left + plot_w + 4.0,
            y_capture(t) + 4.0,
            t * 100.0
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{x2:.1}\" y2=\"{y:.1}\" stroke=\"{WARN}\" stroke-dasharray=\"3 3\"><title>lift 1× (the base rate)</title></line>",
        y = y_lift(1.0),
        x2 = left + plot_w
    );
    let slot = plot_w / 10.0;
    let bar = (slot * 0.7) / series.len().max(1) as f64;
    for (s, (label, deciles, color)) in series.iter().enumerate() {
        for d in deciles.iter() {
            let x = left + slot * f64::from(d.decile - 1) + slot * 0.15 + bar * s as f64;
            let y = y_lift(d.lift);
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar:.1}\" height=\"{h:.1}\" fill=\"{color}\" opacity=\"0.85\"><title>{} tenth {}: {} records, {} convert, lift {:.2}×</title></rect>",
                esc(label),
                d.decile,
                d.records,
                pct(d.rate),
                d.lift,
                h = (top + plot_h - y).max(0.0)
            );
        }
        let points: Vec<String> = deciles
            .iter()
            .map(|d| {
                format!(
                    "{:.1},{:.1}",
                    left + slot * (f64::from(d.decile) - 0.5),
                    y_capture(d.capture)
                )
            })
            .collect();
        let _ = write!(
            out,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" stroke-dasharray=\"{}\" points=\"{}\"><title>{} cumulative capture</title></polyline>",
            if s == 0 { "none" } else { "5 3" },
            points.join(" "),
            esc(label)
        );
    }
    for k in 1..=10 {
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{k}</text>",
            left + slot * (f64::from(k) - 0.5),
            top + plot_h + 14.0
        );
    }
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">tenth by score (1 = highest) · bars: lift · line: converters captured so far</text></svg>",
        left + plot_w / 2.0,
        height - 2.0
    );
    out
}

/// Conversion per bucket as horizontal bars with Wilson 95 % whiskers;
/// one bar per series for each label, labels in the first series' order.
fn buckets_svg(series: &[(&str, &[Bucket], &str)], flagged: &[String]) -> String {
    let mut labels: Vec<&str> = Vec::new();
    for (_, buckets, _) in series {
        for b in buckets.iter() {
            if !labels.contains(&b.label.as_str()) {
                labels.push(&b.label);
            }
        }
    }
    let row = 14.0 * series.len() as f64 + 10.0;
    let (left, width, right) = (110.0, 440.0, 150.0);
    let plot_w = width - left - right;
    let height = row * labels.len() as f64 + 28.0;
    let max_rate = series
        .iter()
        .flat_map(|(_, b, _)| b.iter().map(|b| b.high))
        .fold(0.05_f64, f64::max)
        .min(1.0);
    let x = |v: f64| left + plot_w * v / max_rate;
    let mut out = format!(
        "<svg viewBox=\"0 0 {width} {height:.0}\" width=\"{width}\" height=\"{height:.0}\" style=\"max-width:{width}px\" role=\"img\" aria-label=\"conversion with 95 % intervals\">"
    );
    for t in 0..=4 {
        let v = max_rate * f64::from(t) / 4.0;
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"4\" x2=\"{x:.1}\" y2=\"{y2:.1}\"/><text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{}</text>",
            pct(v),
            x = x(v),
            y2 = height - 22.0,
            ty = height - 8.0
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let y0 = 6.0 + row * i as f64;
        let inverted = flagged
            .iter()
            .any(|f| f.starts_with(&format!("{label} converts")));
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\"{}>{}{}</text>",
            left - 6.0,
            y0 + row / 2.0,
            if inverted {
                format!(" fill=\"{WARN}\" font-weight=\"600\"")
            } else {
                String::new()
            },
            if inverted { "! " } else { "" },
            esc(label)
        );
        for (s, (name, buckets, color)) in series.iter().enumerate() {
            let Some(b) = buckets.iter().find(|b| b.label == *label) else {
                continue;
            };
            let y = y0 + 14.0 * s as f64;
            let _ = write!(
                out,
                "<rect x=\"{left}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"11\" fill=\"{color}\" opacity=\"0.8\"><title>{}: {} of {} convert ({}, 95 % CI {} – {})</title></rect>",
                esc(name),
                b.converted,
                b.records,
                pct(b.rate),
                pct(b.low),
                pct(b.high),
                w = (x(b.rate) - left).max(0.5)
            );
            let mid = y + 5.5;
            let _ = write!(
                out,
                "<line x1=\"{lo:.1}\" y1=\"{mid:.1}\" x2=\"{hi:.1}\" y2=\"{mid:.1}\" stroke=\"#1d2433\"/><line x1=\"{lo:.1}\" y1=\"{a:.1}\" x2=\"{lo:.1}\" y2=\"{b:.1}\" stroke=\"#1d2433\"/><line x1=\"{hi:.1}\" y1=\"{a:.1}\" x2=\"{hi:.1}\" y2=\"{b:.1}\" stroke=\"#1d2433\"/>",
                lo = x(b.low),
                hi = x(b.high),
                a = mid - 3.0,
                b = mid + 3.0
            );
            let _ = write!(
                out,
                "<text x=\"{:.1}\" y=\"{:.1}\">{} · {} records</text>",
                left + plot_w + 8.0,
                y + 9.5,
                pct(b.rate),
                b.records
            );
        }
    }
    out.push_str("</svg>");
    out
}

/// One model's buckets on a conversion chart: its name on the bars, its
/// short name in the legend and before its inversions.
struct Series<'a> {
    name: &'a str,
    short: &'a str,
    buckets: &'a [Bucket],
    color: &'a str,
    inversions: &'a [String],
}

/// The only model of a backtest.
fn one<'a>(name: &'a str, buckets: &'a [Bucket], inversions: &'a [String]) -> Series<'a> {
    Series {
        name,
        short: "",
        buckets,
        color: ONE,
        inversions,
    }
}

/// The old and the new model of a diff.
fn old_new<'a>(
    names: [&'a str; 2],
    old: (&'a [Bucket], &'a [String]),
    new: (&'a [Bucket], &'a [String]),
) -> [Series<'a>; 2] {
    [
        Series {
            name: names[0],
            short: "old",
            buckets: old.0,
            color: OLD,
            inversions: old.1,
        },
        Series {
            name: names[1],
            short: "new",
            buckets: new.0,
            color: NEW,
            inversions: new.1,
        },
    ]
}

/// A card of conversion bars, one series per model, with the inversions
/// of each listed under the chart (named by model when there are two).
fn conversion_card(out: &mut String, title: &str, series: &[Series<'_>]) {
    if series.iter().all(|s| s.buckets.is_empty()) {
        return;
    }
    let bars: Vec<(&str, &[Bucket], &str)> = series
        .iter()
        .map(|s| (s.name, s.buckets, s.color))
        .collect();
    let flagged: Vec<String> = series
        .iter()
        .flat_map(|s| s.inversions.iter().cloned())
        .collect();
    let _ = write!(
        out,
        "<div class=\"card\"><h3>{}</h3>{}",
        esc(title),
        buckets_svg(&bars, &flagged)
    );
    let keys: Vec<(&str, &str)> = series.iter().map(|s| (s.short, s.color)).collect();
    out.push_str(&legend(&keys));
    for s in series {
        if series.len() > 1 {
            inversion_list(out, &prefixed(s.short, s.inversions));
        } else {
            inversion_list(out, s.inversions);
        }
    }
    out.push_str("</div>");
}

fn inversion_list(out: &mut String, inversions: &[String]) {
    if inversions.is_empty() {
        return;
    }
    out.push_str("<ul class=\"warn\">");
    for inversion in inversions {
        let _ = write!(out, "<li>{}</li>", esc(inversion));
    }
    out.push_str("</ul>");
}

fn figures(out: &mut String, score: &ScoreMetrics) {
    let auc = score.auc.map_or("n/a".to_owned(), |a| format!("{a:.3}"));
    out.push_str("<div class=\"figures\">");
    let _ = write!(
        out,
        "<div class=\"figure\"><b>{auc}</b><span>ROC AUC</span></div>"
    );
    for top in &score.top {
        let _ = write!(
            out,
            "<div class=\"figure\"><b>{:.2}×</b><span>lift in the top {:.0} % · captures {}</span></div>",
            top.lift,
            top.fraction * 100.0,
            pct(top.capture)
        );
    }
    out.push_str("</div>");
}

/// One score's charts for one model.
fn score_section(out: &mut String, report: &Report, score: &ScoreMetrics) {
    let _ = write!(out, "<h3>score “{}”</h3>", esc(&score.score));
    figures(out, score);
    out.push_str("<div class=\"grid\">");
    let _ = write!(
        out,
        "<div class=\"card\"><h3>ROC curve</h3>{}</div>",
        roc_svg(&[(&report.model, score, ONE)])
    );
    let _ = write!(
        out,
        "<div class=\"card\"><h3>Lift and capture by tenth</h3>{}</div>",
        deciles_svg(&[(&report.model, &score.deciles, ONE)])
    );
    conversion_card(
        out,
        "Conversion by tier (lowest first)",
        &[one(&report.model, &score.tiers, &score.tier_inversions)],
    );
    conversion_card(
        out,
        "Conversion by stage (lowest first)",
        &[one(&report.model, &score.stages, &score.stage_inversions)],
    );
    out.push_str("</div>");
}

fn criteria_table(out: &mut String, report: &Report) {
    if report.criteria.is_empty() {
        return;
    }
    out.push_str("<table><thead><tr><th>score</th><th>rule</th><th>points</th><th>fires among converters</th><th>among the others</th><th>ratio</th><th></th></tr></thead><tbody>");
    for c in &report.criteria {
        let _ = write!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"flag-text\">{}</td></tr>",
            if c.flag.is_some() {
                " class=\"flag\""
            } else {
                ""
            },
            esc(&c.score),
            esc(&c.rule),
            c.points,
            pct(c.among_converters),
            pct(c.among_others),
            c.ratio.map_or("—".to_owned(), |r| format!("{r:.2}×")),
            c.flag.as_deref().map(esc).unwrap_or_default()
        );
    }
    out.push_str("</tbody></table>");
}

fn header(out: &mut String, title: &str, report: &Report) {
    let _ = write!(
        out,
        "<h1>{}</h1><p class=\"sub\">{} records, {} converted (base rate {}). Bars show conversion; whiskers its Wilson 95 % interval. ! marks a tier, grade or stage that converts no better than the one below it, and a criterion whose points point the other way from who it fires for.</p>",
        esc(title),
        report.records,
        report.converted,
        pct(report.base_rate)
    );
}

/// The backtest of one model as a page.
pub fn backtest_page(report: &Report) -> String {
    let mut body = String::new();
    header(
        &mut body,
        &format!("Backtest of “{}”", report.model),
        report,
    );
    for score in &report.scores {
        score_section(&mut body, report, score);
    }
    if !report.grades.is_empty() {
        body.push_str("<h2>Grades</h2><div class=\"grid\">");
        conversion_card(
            &mut body,
            "Conversion by grade (worst first)",
            &[one(&report.model, &report.grades, &report.grade_inversions)],
        );
        body.push_str("</div>");
    }
    body.push_str("<h2>Criteria, most telling first</h2>");
    criteria_table(&mut body, report);
    page(&format!("Backtest: {}", report.model), &body)
}

/// Labels in ladder order for a transition matrix: the report's tiers,
/// then whatever else the moves name.
fn ladder(score: Option<&ScoreMetrics>, moves: &Moves) -> Vec<String> {
    let mut labels: Vec<String> = score
        .map(|s| {
            s.tiers
                .iter()
                .map(|t| {
                    if t.label == "(no tier)" {
                        "(none)".to_owned()
                    } else {
                        t.label.clone()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    for (from, row) in moves {
        for label in std::iter::once(from).chain(row.keys()) {
            if !labels.contains(label) {
                labels.push(label.clone());
            }
        }
    }
    labels
}

fn transition_table(out: &mut String, labels: &[String], moves: &Moves) {
    let max = moves
        .values()
        .flat_map(|row| row.values())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    out.push_str("<table><thead><tr><th>old ↓ · new →</th>");
    for label in labels {
        let _ = write!(out, "<th>{}</th>", esc(label));
    }
    out.push_str("</tr></thead><tbody>");
    for from in labels {
        let _ = write!(out, "<tr><th>{}</th>", esc(from));
        for to in labels {
            let n = moves
                .get(from)
                .and_then(|row| row.get(to))
                .copied()
                .unwrap_or(0);
            let alpha = 0.08 + 0.6 * n as f64 / max as f64;
            let style = if n == 0 {
                String::new()
            } else if from == to {
                format!(" style=\"background: rgba(31,111,235,{alpha:.2}); font-weight:600\"")
            } else {
                format!(" style=\"background: rgba(180,35,24,{alpha:.2})\"")
            };
            let _ = write!(out, "<td class=\"n\"{style}>{n}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
}

/// Two models on the same records, side by side.
/// `labels` name the two models as the user gave them (file names).
pub fn diff_page(
    old: &Report,
    new: &Report,
    labels: [&str; 2],
    tier_moves: &[(String, Moves)],
    grade_changes: u64,
) -> String {
    let mut body = String::new();
    header(&mut body, &format!("{} → {}", labels[0], labels[1]), old);
    let old_name = format!("old: {} (“{}”)", labels[0], old.model);
    let new_name = format!("new: {} (“{}”)", labels[1], new.model);
    body.push_str(&legend(&[(&old_name, OLD), (&new_name, NEW)]));
    for a in &old.scores {
        let Some(b) = new.scores.iter().find(|s| s.score == a.score) else {
            continue;
        };
        let _ = write!(body, "<h2>score “{}”</h2>", esc(&a.score));
        body.push_str("<div class=\"grid\"><div class=\"card\"><h3>old</h3>");
        figures(&mut body, a);
        body.push_str("</div><div class=\"card\"><h3>new</h3>");
        figures(&mut body, b);
        body.push_str("</div></div><div class=\"grid\">");
        let _ = write!(
            body,
            "<div class=\"card\"><h3>ROC curves</h3>{}{}</div>",
            roc_svg(&[(&old_name, a, OLD), (&new_name, b, NEW)]),
            legend(&[("old", OLD), ("new", NEW)])
        );
        let _ = write!(
            body,
            "<div class=\"card\"><h3>Lift and capture by tenth</h3>{}{}</div>",
            deciles_svg(&[(&old_name, &a.deciles, OLD), (&new_name, &b.deciles, NEW)]),
            legend(&[("old", OLD), ("new", NEW)])
        );
        conversion_card(
            &mut body,
            "Conversion by tier (lowest first)",
            &old_new(
                [&old_name, &new_name],
                (&a.tiers, &a.tier_inversions),
                (&b.tiers, &b.tier_inversions),
            ),
        );
        conversion_card(
            &mut body,
            "Conversion by stage (lowest first)",
            &old_new(
                [&old_name, &new_name],
                (&a.stages, &a.stage_inversions),
                (&b.stages, &b.stage_inversions),
            ),
        );
        body.push_str("</div>");
        if let Some((_, moves)) = tier_moves.iter().find(|(name, _)| *name == a.score) {
            let moved: u64 = moves
                .iter()
                .flat_map(|(from, row)| row.iter().filter(move |(to, _)| *to != from))
                .map(|(_, n)| *n)
                .sum();
            let _ = write!(
                body,
                "<h3>Tier transitions: {moved} of {} records change tier</h3>",
                old.records
            );
            transition_table(&mut body, &ladder(Some(a), moves), moves);
        }
    }
    if !old.grades.is_empty() || !new.grades.is_empty() {
        let _ = write!(
            body,
            "<h2>Grades: {grade_changes} records change grade</h2><div class=\"grid\">"
        );
        conversion_card(
            &mut body,
            "Conversion by grade (worst first)",
            &old_new(
                [&old_name, &new_name],
                (&old.grades, &old.grade_inversions),
                (&new.grades, &new.grade_inversions),
            ),
        );
        body.push_str("</div>");
    }
    body.push_str("<h2>Criteria</h2><div class=\"grid\"><div class=\"card\"><h3>old</h3>");
    criteria_table(&mut body, old);
    body.push_str("</div><div class=\"card\"><h3>new</h3>");
    criteria_table(&mut body, new);
    body.push_str("</div></div>");
    page(&format!("Diff: {} → {}", labels[0], labels[1]), &body)
}

fn prefixed(which: &str, items: &[String]) -> Vec<String> {
    items.iter().map(|i| format!("{which}: {i}")).collect()
}
