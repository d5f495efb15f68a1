//! Results of `upcc verify` and their renderings: a text table, JSON, and SVG plots.

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

/// What the universal MILP looked like and how hard it was.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MilpSummary {
    pub backend: &'static str,
    /// Branch-and-bound nodes (0 when presolve decided every sample).
    pub nodes: usize,
    /// The proven bound on the number of certified samples, before rounding.
    pub dual_bound: f64,
    pub presolve: crate::milp::PresolveStats,
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
    /// The scalar the bounds' window rows were computed in (`f64`, or `f32` with `--rows f32`).
    pub window_rows: &'static str,
    /// Worker threads for bounds, attacks and replay (`upcc verify --threads`).
    pub threads: usize,
    /// The vector instructions of the CPU engine's row loops: `avx512`, `avx2` or `portable`
    /// (the CPU's widest, capped by `$UPCC_SIMD`). Every level gives bit-identical bounds.
    pub simd: &'static str,
    /// The universal MILP's sizes before and after presolve and its search, when one was built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub milp: Option<MilpSummary>,
    /// For a class-wise scan's rows: the class every input was labelled with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<usize>,
}

/// Where a class-wise scan's inputs come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanInputs {
    /// Seeded random noise; every input is scored for every class.
    Noise,
    /// Labelled data; class c is scored on the inputs of the other classes.
    Data,
}

/// Universal certification of one class in a scan: how many of `n` inputs provably stay in the
/// class under every δ of the box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ClassCount {
    pub n: usize,
    pub certified: usize,
}

/// The class a scan points at. `score` is the population lower bound (Theorem 2, confidence
/// 1 − ξ) of the class's certified rate, averaged over the scan's networks; the class is named
/// when `score > threshold` = 0: some inputs provably stay in it under every δ, beyond what
/// sampling explains. Run the scan at the models' adversarial-training radius; at smaller radii a
/// clean model may hold noise in a natural class too.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct SuspectedTarget {
    pub class: usize,
    pub score: f64,
    pub threshold: f64,
}

/// Theorem 2 for a class of a scan over `models` networks that share the inputs: with
/// probability ≥ 1 − ξ the population rate, averaged over the networks, is at least the averaged
/// certified rate minus t*(ξ, inputs). (Bennett's inequality holds for the per-input average of
/// the networks' indicators, bounded in [0, 1].) `None` for a class with no inputs.
pub fn class_score(
    count: &ClassCount,
    models: usize,
    xi: f64,
) -> Result<Option<f64>, crate::population::PopulationError> {
    let inputs = count.n / models.max(1);
    if inputs == 0 {
        return Ok(None);
    }
    let t = crate::population::t_star(xi, inputs)?;
    Ok(Some((count.certified as f64 / count.n as f64 - t).max(0.0)))
}

/// A backdoor scan (paper §5.3) at one ε: class-wise certified UP-accuracy and its verdict.
/// Over several networks (one data set, several training seeds) counts are summed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClasswiseScan {
    pub property: String,
    pub networks: Vec<String>,
    pub dataset: String,
    pub inputs: ScanInputs,
    pub eps: f64,
    pub eps_text: String,
    pub xi: f64,
    /// Keyed by class index; `n` and `certified` are summed over the networks.
    pub classwise: BTreeMap<usize, ClassCount>,
    /// The class with the highest score, when that score exceeds the threshold; else `None`.
    pub suspected_target: Option<SuspectedTarget>,
}

impl ClasswiseScan {
    /// Scores every class and names the suspected target. `Err` only for an invalid ξ.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        property: &str,
        networks: Vec<String>,
        dataset: &str,
        inputs: ScanInputs,
        eps: f64,
        eps_text: &str,
        xi: f64,
        classwise: BTreeMap<usize, ClassCount>,
    ) -> Result<ClasswiseScan, crate::population::PopulationError> {
        let threshold = 0.0;
        // The highest score above the threshold.
        let mut best: Option<SuspectedTarget> = None;
        for (&class, count) in &classwise {
            let Some(score) = class_score(count, networks.len(), xi)? else {
                continue;
            };
            if score > best.map_or(threshold, |b| b.score) {
                best = Some(SuspectedTarget {
                    class,
                    score,
                    threshold,
                });
            }
        }
        Ok(ClasswiseScan {
            property: property.to_string(),
            networks,
            dataset: dataset.to_string(),
            inputs,
            eps,
            eps_text: eps_text.to_string(),
            xi,
            suspected_target: best,
            classwise,
        })
    }
}

/// Everything `upcc verify` found: one row per property and ε, and the class-wise scans.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    pub results: Vec<EpsResult>,
    pub scans: Vec<ClasswiseScan>,
}

fn pct(count: usize, n: usize) -> String {
    if n == 0 {
        return "-".into();
    }
    format!("{:.1}%", 100.0 * count as f64 / n as f64)
}

/// A plain-text table per property, one row per ε, then one table per class-wise scan.
pub fn render_table(report: &Report) -> String {
    let results: Vec<&EpsResult> = report
        .results
        .iter()
        .filter(|r| r.class.is_none())
        .collect();
    let mut out = String::new();
    let mut properties: Vec<&str> = Vec::new();
    for r in &results {
        if !properties.contains(&r.property.as_str()) {
            properties.push(&r.property);
        }
    }
    for property in properties {
        let rows: Vec<&EpsResult> = results
            .iter()
            .copied()
            .filter(|r| r.property == property)
            .collect();
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
        write_aligned(&mut out, &table);
        out.push('\n');
    }
    for scan in &report.scans {
        render_scan_table(&mut out, scan);
    }
    out
}

/// A class-wise scan: certified/n per class and the verdict.
fn render_scan_table(out: &mut String, scan: &ClasswiseScan) {
    let inputs = match scan.inputs {
        ScanInputs::Noise => "noise inputs, each labelled with every class in turn",
        ScanInputs::Data => "class c scored on the inputs of the other classes",
    };
    let _ = writeln!(
        out,
        "scan {} at ε = {} — network{} {}, dataset {} ({inputs})",
        scan.property,
        scan.eps_text,
        if scan.networks.len() > 1 { "s" } else { "" },
        scan.networks.join(", "),
        scan.dataset
    );
    let mut table = vec![
        vec!["class".to_string()],
        vec!["certified".to_string()],
        vec!["of n".to_string()],
        vec![format!("population (1-ξ={})", 1.0 - scan.xi)],
    ];
    for (class, count) in &scan.classwise {
        let lower = match class_score(count, scan.networks.len(), scan.xi) {
            Ok(Some(p)) => format!("{:.1}%", 100.0 * p),
            _ => "-".into(),
        };
        table[0].push(class.to_string());
        table[1].push(count.certified.to_string());
        table[2].push(count.n.to_string());
        table[3].push(lower);
    }
    write_aligned(out, &table);
    let verdict = match scan.suspected_target {
        Some(t) => format!(
            "suspected backdoor target: class {} (score {:.3} > threshold {:.3})",
            t.class, t.score, t.threshold
        ),
        None => "no suspected target (no class has a positive score)".into(),
    };
    let _ = writeln!(out, "  {verdict}\n");
}

/// Writes rows as left-aligned columns, the first row as a header with a rule under it.
fn write_aligned(out: &mut String, table: &[Vec<String>]) {
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
}

/// One JSON document for a whole run: `{"results": [...], "scans": [...]}`.
pub fn render_json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("report values are always serialisable")
}

/// One line of a plot: a name, a colour and (x, fraction) points.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

const PALETTE: [&str; 5] = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

/// One colour per class (or per line), cycling after ten.
const CATEGORICAL: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

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

/// Paper Figure 4: universal CRR against ε, one line per property (e.g. a backdoored model beside
/// its clean twin). Every property must sweep the same ε values.
pub fn render_crr_comparison_svg(properties: &[(&str, Vec<&EpsResult>)]) -> String {
    let series: Vec<Series> = properties
        .iter()
        .enumerate()
        .map(|(k, (name, rows))| Series {
            name: name.to_string(),
            color: CATEGORICAL[k % CATEGORICAL.len()],
            points: rows
                .iter()
                .map(|r| (r.eps, fraction(r.universal_certified.unwrap_or(0), r.n)))
                .collect(),
        })
        .collect();
    let ticks = properties
        .first()
        .map(|(_, rows)| rows.iter().map(|r| (r.eps, r.eps_text.clone())).collect())
        .unwrap_or_default();
    line_plot_svg("universal CRR (certified) against ε", "ε", ticks, &series)
}

/// Paper Figure 6: certified UP-accuracy per class, one group of bars per scan (e.g. per poison
/// ratio), with the suspected target marked.
pub fn render_scan_svg(scans: &[&ClasswiseScan]) -> String {
    let classes: Vec<usize> = {
        let mut c: Vec<usize> = scans
            .iter()
            .flat_map(|s| s.classwise.keys().copied())
            .collect();
        c.sort();
        c.dedup();
        c
    };
    let group_w = 36.0_f64.max(6.0 * classes.len() as f64 + 16.0);
    let (left, right, top, bottom) = (60.0, 20.0, 50.0, 70.0);
    let (w, h) = (
        (left + right + group_w * scans.len() as f64).max(360.0),
        360.0,
    );
    let y = |frac: f64| top + (h - top - bottom) * (1.0 - frac);
    let bar_w = (group_w - 16.0) / classes.len().max(1) as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(svg, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let title = scans.first().map_or(String::new(), |s| {
        format!("certified UP-accuracy per class at ε = {}", s.eps_text)
    });
    let _ = writeln!(
        svg,
        r#"<text x="{left}" y="18">{}</text>"#,
        xml_escape(&title)
    );
    for (k, class) in classes.iter().enumerate() {
        let x = left + 28.0 * k as f64;
        let color = CATEGORICAL[k % CATEGORICAL.len()];
        let _ = writeln!(
            svg,
            r#"<rect x="{x}" y="28" width="10" height="10" fill="{color}"/><text x="{}" y="37">{class}</text>"#,
            x + 12.0
        );
    }
    for tick in 0..=5 {
        let f = tick as f64 / 5.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y0}" y2="{y0}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}%</text>"##,
            w - right,
            left - 6.0,
            y(f) + 4.0,
            tick * 20,
            y0 = y(f)
        );
    }
    for (g, scan) in scans.iter().enumerate() {
        let x0 = left + group_w * g as f64 + 8.0;
        for (k, class) in classes.iter().enumerate() {
            let frac = scan
                .classwise
                .get(class)
                .map_or(0.0, |c| fraction(c.certified, c.n));
            let _ = writeln!(
                svg,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
                x0 + bar_w * k as f64,
                y(frac),
                bar_w,
                y(0.0) - y(frac),
                CATEGORICAL[k % CATEGORICAL.len()]
            );
        }
        let networks = scan.networks.join("+");
        let label = match scan.suspected_target {
            Some(t) => format!("{networks} → {}", t.class),
            None => networks,
        };
        let (cx, cy) = (x0 + (group_w - 16.0) / 2.0, h - bottom + 14.0);
        let _ = writeln!(
            svg,
            r#"<text x="{cx:.1}" y="{cy:.1}" text-anchor="end" transform="rotate(-30 {cx:.1} {cy:.1})">{}</text>"#,
            xml_escape(&label)
        );
    }
    svg.push_str("</svg>\n");
    svg
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

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_of(counts: &[(usize, usize)]) -> ClasswiseScan {
        let classwise = counts
            .iter()
            .enumerate()
            .map(|(c, &(certified, n))| (c, ClassCount { n, certified }))
            .collect();
        ClasswiseScan::new(
            "p",
            vec!["net".into()],
            "noise",
            ScanInputs::Noise,
            0.1,
            "1/10",
            0.1,
            classwise,
        )
        .unwrap()
    }

    #[test]
    fn suspected_target_needs_a_positive_population_bound() {
        // t*(0.1, 100) ≈ 0.1147.
        let mut counts = vec![(0, 100); 10];
        counts[3] = (30, 100);
        counts[5] = (12, 100);
        let scan = scan_of(&counts);
        let target = scan.suspected_target.unwrap();
        assert_eq!(target.class, 3);
        assert!((target.score - (0.30 - 0.114726)).abs() < 1e-4);
        assert_eq!(target.threshold, 0.0);

        counts[3] = (11, 100); // 0.11 < t*: sampling explains it
        counts[5] = (0, 100);
        let scan = scan_of(&counts);
        assert_eq!(scan.suspected_target, None);
    }

    #[test]
    fn ensembles_average_rates_and_bound_with_the_input_count() {
        // Three networks on 100 shared inputs: 13% averaged, t*(0.1, 100) ≈ 0.1147.
        let count = ClassCount {
            n: 300,
            certified: 39,
        };
        let score = class_score(&count, 3, 0.1).unwrap().unwrap();
        assert!((score - (0.13 - 0.114726)).abs() < 1e-4);
        assert_eq!(
            class_score(&ClassCount { n: 0, certified: 0 }, 3, 0.1).unwrap(),
            None
        );
    }

    #[test]
    fn empty_classes_are_not_scored() {
        let mut counts = vec![(0, 50); 10];
        counts[0] = (0, 0);
        counts[4] = (45, 50);
        let scan = scan_of(&counts);
        assert_eq!(scan.suspected_target.unwrap().class, 4);
        assert!(render_json(&Report {
            results: vec![],
            scans: vec![scan]
        })
        .contains("\"suspected_target\""));
    }
}
