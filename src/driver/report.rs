//! Results of `upcc verify` and their renderings: a text table, JSON, and an SVG sweep plot.

use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Whether the universal MILP was solved to optimality.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MilpStatus {
    Optimal,
    /// Stopped on its time limit; the certified count comes from the proven (dual) bound.
    TimeLimit,
    /// Presolve decided every sample; no MILP was solved.
    Presolved,
}

impl MilpStatus {
    pub fn label(self) -> &'static str {
        match self {
            MilpStatus::Optimal => "optimal",
            MilpStatus::TimeLimit => "time limit",
            MilpStatus::Presolved => "presolved",
        }
    }
}

/// One row of the report: a property at one ε.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpsResult {
    pub property: String,
    pub network: String,
    pub dataset: String,
    pub eps: f64,
    /// ε as written in the spec, e.g. `6/255`.
    pub eps_text: String,
    pub n: usize,
    pub clean_correct: usize,
    pub samplewise_certified: usize,
    /// Whether the property asked to compare with sample-wise certification (`compare: samplewise`);
    /// the table shows the sample-wise column only then. The JSON always has the count.
    #[serde(skip)]
    pub compare_samplewise: bool,
    /// `None` for sample-wise perturbation properties.
    pub universal_certified: Option<usize>,
    pub milp_status: Option<MilpStatus>,
    /// Correct samples under the replayed worst-case δ: a true upper bound on universal accuracy.
    pub universal_upper: Option<usize>,
    /// Theorem 2: accuracy on the population is at least this with probability 1 − ξ.
    pub population_lower_bound: Option<f64>,
    pub xi: f64,
    /// Correct samples under each attack's perturbation.
    pub attack_correct: BTreeMap<String, usize>,
    /// Wall-clock seconds per stage.
    pub seconds: BTreeMap<String, f64>,
}

fn pct(count: usize, n: usize) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.1}%", 100.0 * count as f64 / n as f64)
}

/// A plain-text table per property, one row per ε.
pub fn render_table(results: &[EpsResult]) -> String {
    let mut out = String::new();
    let mut properties: Vec<&str> = Vec::new();
    for r in results {
        if !properties.contains(&r.property.as_str()) {
            properties.push(&r.property);
        }
    }
    for property in properties {
        let rows: Vec<&EpsResult> = results.iter().filter(|r| r.property == property).collect();
        let first = rows[0];
        let _ = writeln!(
            out,
            "property {} — network {}, dataset {} (n = {})",
            property, first.network, first.dataset, first.n
        );
        let attack_names: Vec<&String> = {
            let mut names: Vec<&String> =
                rows.iter().flat_map(|r| r.attack_correct.keys()).collect();
            names.sort();
            names.dedup();
            names
        };
        let show_samplewise = rows
            .iter()
            .any(|r| r.compare_samplewise || r.universal_certified.is_none());
        let mut header = vec!["eps".to_string(), "clean".into()];
        if show_samplewise {
            header.push("sample-wise".into());
        }
        header.extend(["universal".into(), "milp".into(), "replayed δ".into()]);
        header.extend(attack_names.iter().map(|a| a.to_string()));
        header.push(format!("population (1-ξ={})", 1.0 - first.xi));
        header.push("seconds".into());
        let mut table: Vec<Vec<String>> = vec![header];
        for r in &rows {
            let mut row = vec![r.eps_text.clone(), pct(r.clean_correct, r.n)];
            if show_samplewise {
                row.push(pct(r.samplewise_certified, r.n));
            }
            row.extend([
                r.universal_certified.map_or("-".into(), |c| pct(c, r.n)),
                r.milp_status.map_or("-".into(), |s| s.label().to_string()),
                r.universal_upper.map_or("-".into(), |c| pct(c, r.n)),
            ]);
            for a in &attack_names {
                row.push(
                    r.attack_correct
                        .get(*a)
                        .map_or("-".into(), |c| pct(*c, r.n)),
                );
            }
            row.push(
                r.population_lower_bound
                    .map_or("-".into(), |p| format!("{:.1}%", 100.0 * p)),
            );
            let stages: Vec<String> = r
                .seconds
                .iter()
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            row.push(stages.join(", "));
            table.push(row);
        }
        let widths: Vec<usize> = (0..table[0].len())
            .map(|c| {
                table
                    .iter()
                    .map(|row| row[c].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for (i, row) in table.iter().enumerate() {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}", w = *w))
                .collect();
            let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                let _ = writeln!(out, "  {}", rule.join("  "));
            }
        }
        out.push('\n');
    }
    out
}

/// One JSON document for a whole run.
pub fn render_json(results: &[EpsResult]) -> String {
    serde_json::to_string_pretty(&serde_json::json!({ "results": results }))
        .expect("report values are always serialisable")
}

/// One line of a plot: a name, a colour and (x, fraction) points.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

const PALETTE: [&str; 5] = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

fn fraction(count: usize, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        count as f64 / n as f64
    }
}

/// An SVG line plot of certified/attacked accuracy against ε for one property.
pub fn render_sweep_svg(rows: &[&EpsResult]) -> String {
    let mut series = vec![Series {
        name: "sample-wise".into(),
        color: "#1f77b4",
        points: rows
            .iter()
            .map(|r| (r.eps, fraction(r.samplewise_certified, r.n)))
            .collect(),
    }];
    if rows.iter().all(|r| r.universal_certified.is_some()) {
        series.push(Series {
            name: "universal (certified)".into(),
            color: "#d62728",
            points: rows
                .iter()
                .map(|r| (r.eps, fraction(r.universal_certified.unwrap_or(0), r.n)))
                .collect(),
        });
    }
    if rows.iter().all(|r| r.universal_upper.is_some()) {
        series.push(Series {
            name: "replayed δ (upper)".into(),
            color: "#ff7f0e",
            points: rows
                .iter()
                .map(|r| (r.eps, fraction(r.universal_upper.unwrap_or(0), r.n)))
                .collect(),
        });
    }
    let mut attack_names: Vec<&String> =
        rows.iter().flat_map(|r| r.attack_correct.keys()).collect();
    attack_names.sort();
    attack_names.dedup();
    for (k, name) in attack_names.iter().enumerate() {
        series.push(Series {
            name: name.to_string(),
            color: PALETTE[k % PALETTE.len()],
            points: rows
                .iter()
                .filter_map(|r| {
                    r.attack_correct
                        .get(*name)
                        .map(|c| (r.eps, fraction(*c, r.n)))
                })
                .collect(),
        });
    }
    let title = rows
        .first()
        .map(|r| format!("{} — {} on {}", r.property, r.network, r.dataset))
        .unwrap_or_default();
    let ticks = rows.iter().map(|r| (r.eps, r.eps_text.clone())).collect();
    line_plot_svg(&title, "ε", ticks, &series)
}

/// Paper Figure 2: certified rate and the Theorem 2 lower bound against the number of samples,
/// for rows that share a network and ε but differ in n (one row per n).
pub fn render_population_svg(rows: &[&EpsResult]) -> String {
    let mut rows: Vec<&EpsResult> = rows
        .iter()
        .filter(|r| r.universal_certified.is_some())
        .copied()
        .collect();
    rows.sort_by_key(|r| r.n);
    let log_n = |n: usize| (n.max(1) as f64).ln();
    let series = vec![
        Series {
            name: "CRR (certified)".into(),
            color: "#d62728",
            points: rows
                .iter()
                .map(|r| {
                    (
                        log_n(r.n),
                        fraction(r.universal_certified.unwrap_or(0), r.n),
                    )
                })
                .collect(),
        },
        Series {
            name: "ARP lower bound".into(),
            color: "#1f77b4",
            points: rows
                .iter()
                .map(|r| (log_n(r.n), r.population_lower_bound.unwrap_or(0.0)))
                .collect(),
        },
    ];
    let title = rows
        .first()
        .map(|r| {
            format!(
                "{} at ε = {}, 1 − ξ = {}",
                r.network,
                r.eps_text,
                1.0 - r.xi
            )
        })
        .unwrap_or_default();
    let ticks = rows.iter().map(|r| (log_n(r.n), r.n.to_string())).collect();
    line_plot_svg(&title, "n (log scale)", ticks, &series)
}

/// A line plot with fractions (0–100%) on the y axis and labelled ticks on the x axis.
fn line_plot_svg(
    title: &str,
    x_label: &str,
    x_ticks: Vec<(f64, String)>,
    series: &[Series],
) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 170.0, 30.0, 50.0);
    let x_min = x_ticks
        .iter()
        .map(|t| t.0)
        .fold(f64::INFINITY, f64::min)
        .min(0.0);
    let x_max = x_ticks
        .iter()
        .map(|t| t.0)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = if x_max > x_min { x_max - x_min } else { 1.0 };
    let x = |v: f64| left + (w - left - right) * (v - x_min) / span;
    let y = |frac: f64| top + (h - top - bottom) * (1.0 - frac);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="18">{}</text>"#,
        xml_escape(title)
    );
    for tick in 0..=5 {
        let f = tick as f64 / 5.0;
        let (x_end, y_line, x_label_pos, y_label) = (w - right, y(f), left - 6.0, y(f) + 4.0);
        let percent = tick * 20;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{x_end}" y1="{y_line}" y2="{y_line}" stroke="#ddd"/><text x="{x_label_pos}" y="{y_label}" text-anchor="end">{percent}%</text>"##
        );
    }
    for (v, label) in &x_ticks {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x(*v),
            h - bottom + 18.0,
            xml_escape(label)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (left + w - right) / 2.0,
        h - 10.0,
        xml_escape(x_label)
    );
    for (k, line) in series.iter().enumerate() {
        let color = line.color;
        let path: Vec<String> = line
            .points
            .iter()
            .map(|(v, f)| format!("{:.1},{:.1}", x(*v), y(*f)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (v, f) in &line.points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x(*v),
                y(*f)
            );
        }
        let ly = top + 16.0 * k as f64;
        let _ = writeln!(
            svg,
            r#"<line x1="{}" x2="{}" y1="{ly}" y2="{ly}" stroke="{color}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            w - right + 10.0,
            w - right + 30.0,
            w - right + 34.0,
            ly + 4.0,
            xml_escape(&line.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
