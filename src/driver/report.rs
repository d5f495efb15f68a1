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
        let mut header = vec![
            "eps".to_string(),
            "clean".into(),
            "sample-wise".into(),
            "universal".into(),
            "milp".into(),
            "replayed δ".into(),
        ];
        header.extend(attack_names.iter().map(|a| a.to_string()));
        header.push(format!("population (1-ξ={})", 1.0 - first.xi));
        header.push("seconds".into());
        let mut table: Vec<Vec<String>> = vec![header];
        for r in &rows {
            let mut row = vec![
                r.eps_text.clone(),
                pct(r.clean_correct, r.n),
                pct(r.samplewise_certified, r.n),
                r.universal_certified.map_or("-".into(), |c| pct(c, r.n)),
                r.milp_status.map_or("-".into(), |s| s.label().to_string()),
                r.universal_upper.map_or("-".into(), |c| pct(c, r.n)),
            ];
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

/// An SVG line plot of certified/attacked accuracy against ε for one property.
pub fn render_sweep_svg(rows: &[&EpsResult]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 160.0, 30.0, 50.0);
    let max_eps = rows.iter().map(|r| r.eps).fold(0.0f64, f64::max).max(1e-12);
    let x = |eps: f64| left + (w - left - right) * eps / max_eps;
    let y = |frac: f64| top + (h - top - bottom) * (1.0 - frac);
    let mut series: Vec<(String, &str, Vec<(f64, f64)>)> = Vec::new();
    let frac = |c: usize, n: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
    series.push((
        "sample-wise".into(),
        "#1f77b4",
        rows.iter()
            .map(|r| (r.eps, frac(r.samplewise_certified, r.n)))
            .collect(),
    ));
    if rows.iter().all(|r| r.universal_certified.is_some()) {
        series.push((
            "universal (certified)".into(),
            "#d62728",
            rows.iter()
                .map(|r| (r.eps, frac(r.universal_certified.unwrap_or(0), r.n)))
                .collect(),
        ));
    }
    if rows.iter().all(|r| r.universal_upper.is_some()) {
        series.push((
            "replayed δ (upper)".into(),
            "#ff7f0e",
            rows.iter()
                .map(|r| (r.eps, frac(r.universal_upper.unwrap_or(0), r.n)))
                .collect(),
        ));
    }
    let palette = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
    let mut attack_names: Vec<&String> =
        rows.iter().flat_map(|r| r.attack_correct.keys()).collect();
    attack_names.sort();
    attack_names.dedup();
    for (k, name) in attack_names.iter().enumerate() {
        let points = rows
            .iter()
            .filter_map(|r| r.attack_correct.get(*name).map(|c| (r.eps, frac(*c, r.n))))
            .collect();
        series.push((name.to_string(), palette[k % palette.len()], points));
    }
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    if let Some(first) = rows.first() {
        let _ = writeln!(
            svg,
            r#"<text x="{left}" y="18">{} — {} on {}</text>"#,
            xml_escape(&first.property),
            xml_escape(&first.network),
            xml_escape(&first.dataset)
        );
    }
    for tick in 0..=5 {
        let f = tick as f64 / 5.0;
        let (x_end, y_line, x_label, y_label) = (w - right, y(f), left - 6.0, y(f) + 4.0);
        let percent = tick * 20;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{x_end}" y1="{y_line}" y2="{y_line}" stroke="#ddd"/><text x="{x_label}" y="{y_label}" text-anchor="end">{percent}%</text>"##
        );
    }
    for r in rows {
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            x(r.eps),
            h - bottom + 18.0,
            xml_escape(&r.eps_text)
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{}" y="{}" text-anchor="middle">ε</text>"#,
        (left + w - right) / 2.0,
        h - 10.0
    );
    for (k, (name, color, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|(e, f)| format!("{:.1},{:.1}", x(*e), y(*f)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for (e, f) in points {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/>"#,
                x(*e),
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
            xml_escape(name)
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
