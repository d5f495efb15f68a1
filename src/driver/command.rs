//! The `upcc verify` command: check, certify, report, write artifacts. Returns the exit code.

use super::artifacts::{write_delta_png, write_npy};
use super::report::{
    render_crr_comparison_svg, render_json, render_population_svg, render_scan_svg,
    render_sweep_svg, render_table, ClasswiseScan, EpsResult,
};
use super::verify::{verify, VerifyOptions, VerifyRun};
use crate::attacks::AttackOptions;
use crate::diagnostics::{render_ariadne, Diagnostic};
use crate::engine::gpu::{BoundEngine, DeviceChoice};
use crate::engine::{BoundCache, RowPrecision};
use crate::semantics;
use crate::source::SourceMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Human,
    Json,
}

pub struct VerifyArgs {
    pub spec: PathBuf,
    pub format: OutputFormat,
    /// Diagnostics as JSON (for editors) instead of ariadne.
    pub json_diagnostics: bool,
    pub color: bool,
    pub out_dir: Option<PathBuf>,
    pub no_cache: bool,
    pub progress: bool,
    /// Where the bounds are computed.
    pub device: DeviceChoice,
    /// The scalar of the CPU engine's window rows.
    pub rows: RowPrecision,
}

/// Exit codes: 0 every property ran, 1 diagnostics, 2 usage or IO failure.
pub fn run_verify(args: &VerifyArgs) -> u8 {
    if !args.spec.is_file() {
        eprintln!(
            "error: cannot read spec `{}`: no such file",
            args.spec.display()
        );
        return 2;
    }
    let (sources, checked) = semantics::check_file(&args.spec);
    let program = match checked {
        Ok(program) => {
            emit_diagnostics(&sources, &program.warnings, args);
            program
        }
        Err(diags) => {
            emit_diagnostics(&sources, &diags.items, args);
            return 1;
        }
    };
    let engine = match BoundEngine::open(args.device) {
        Ok((engine, note)) => {
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            engine
        }
        Err(why) => {
            eprintln!("error: --device cuda: {why}");
            return 2;
        }
    };
    if args.progress && args.device != DeviceChoice::Cpu {
        eprintln!("bounds on: {}", engine.describe());
    }
    let cache = if args.no_cache {
        BoundCache::in_memory()
    } else {
        BoundCache::on_disk(cache_dir())
    };
    let options = VerifyOptions {
        cache,
        rows: args.rows,
        engine,
        progress: args.progress,
        attack: AttackOptions::default(),
    };
    let run = match verify(&program, &options) {
        Ok(run) => run,
        Err(diags) => {
            emit_diagnostics(&sources, &diags, args);
            return 1;
        }
    };
    let json = render_json(&run.report);
    match args.format {
        OutputFormat::Human => print!("{}", render_table(&run.report)),
        OutputFormat::Json => println!("{json}"),
    }
    if let Some(dir) = &args.out_dir {
        if let Err(e) = write_outputs(dir, &run, &json) {
            eprintln!("error: cannot write to `{}`: {e}", dir.display());
            return 2;
        }
    }
    0
}

fn emit_diagnostics(sources: &SourceMap, diags: &[Diagnostic], args: &VerifyArgs) {
    if diags.is_empty() {
        return;
    }
    let text = if args.json_diagnostics {
        crate::diagnostics::render_json(sources, diags)
    } else {
        render_ariadne(sources, diags, args.color)
    };
    let _ = writeln!(std::io::stderr(), "{}", text.trim_end());
}

/// `$UPCC_CACHE_DIR`, else `$XDG_CACHE_HOME/upcc`, else `~/.cache/upcc`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("UPCC_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("upcc");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".cache").join("upcc"),
        None => std::env::temp_dir().join("upcc-cache"),
    }
}

fn file_stem(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_outputs(dir: &Path, run: &VerifyRun, json: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), json)?;
    let results = &run.report.results;
    let mut properties: Vec<&str> = Vec::new();
    for r in results.iter().filter(|r| r.class.is_none()) {
        if !properties.contains(&r.property.as_str()) {
            properties.push(&r.property);
        }
    }
    let sweeps: Vec<(&str, Vec<&EpsResult>)> = properties
        .iter()
        .map(|&p| (p, results.iter().filter(|r| r.property == p).collect()))
        .collect();
    for (property, rows) in &sweeps {
        if rows.len() > 1 {
            std::fs::write(
                dir.join(format!("{}_sweep.svg", file_stem(property))),
                render_sweep_svg(rows),
            )?;
        }
    }
    // Paper Figure 4: universal sweeps over the same ε values, side by side.
    let universal: Vec<(&str, Vec<&EpsResult>)> = sweeps
        .iter()
        .filter(|(_, rows)| rows.len() > 1 && rows.iter().all(|r| r.universal_certified.is_some()))
        .cloned()
        .collect();
    let eps_list =
        |rows: &[&EpsResult]| rows.iter().map(|r| r.eps_text.clone()).collect::<Vec<_>>();
    if universal.len() > 1
        && universal
            .iter()
            .all(|(_, rows)| eps_list(rows) == eps_list(&universal[0].1))
    {
        std::fs::write(
            dir.join("crr_comparison.svg"),
            render_crr_comparison_svg(&universal),
        )?;
    }
    // Paper Figure 6: the class-wise scans at each ε, side by side.
    let mut scan_eps: Vec<&str> = run
        .report
        .scans
        .iter()
        .map(|s| s.eps_text.as_str())
        .collect();
    scan_eps.sort();
    scan_eps.dedup();
    for eps in scan_eps {
        let scans: Vec<&ClasswiseScan> = run
            .report
            .scans
            .iter()
            .filter(|s| s.eps_text == eps)
            .collect();
        std::fs::write(
            dir.join(format!("scan_eps{}.svg", file_stem(eps))),
            render_scan_svg(&scans),
        )?;
    }
    // Paper Figure 2: rows with one network and ε but several sample counts.
    let mut groups: Vec<(&str, &str)> = results
        .iter()
        .map(|r| (r.network.as_str(), r.eps_text.as_str()))
        .collect();
    groups.sort();
    groups.dedup();
    for (network, eps) in groups {
        let rows: Vec<&EpsResult> = results
            .iter()
            .filter(|r| {
                r.class.is_none()
                    && r.network == network
                    && r.eps_text == eps
                    && r.universal_certified.is_some()
            })
            .collect();
        let mut sizes: Vec<usize> = rows.iter().map(|r| r.n).collect();
        sizes.sort();
        sizes.dedup();
        if sizes.len() > 1 {
            let name = format!(
                "population_{}_eps{}.svg",
                file_stem(network),
                file_stem(eps)
            );
            std::fs::write(dir.join(name), render_population_svg(&rows))?;
        }
    }
    for (k, row) in results.iter().enumerate() {
        if row.class.is_some() {
            continue; // a scan's per-class δ would only clutter the directory
        }
        let stem = format!(
            "{}_eps{}",
            file_stem(&row.property),
            file_stem(&row.eps_text)
        );
        if let Some((shape, delta)) = &run.deltas[k] {
            write_npy(&dir.join(format!("{stem}_delta.npy")), shape, delta)?;
            write_delta_png(
                &dir.join(format!("{stem}_delta.png")),
                shape,
                delta,
                row.eps,
                8,
            )?;
        }
        for (attack, delta) in &run.attack_deltas[k] {
            let shape = run.deltas[k]
                .as_ref()
                .map_or(vec![delta.len()], |(s, _)| s.clone());
            write_npy(&dir.join(format!("{stem}_{attack}.npy")), &shape, delta)?;
            write_delta_png(
                &dir.join(format!("{stem}_{attack}.png")),
                &shape,
                delta,
                row.eps,
                8,
            )?;
        }
    }
    Ok(())
}
