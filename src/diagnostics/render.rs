//! Renderers: ariadne for terminals, JSON for editors.

use super::{Diagnostic, Severity};
use crate::source::SourceMap;
use ariadne::{Config, IndexType, Label, Report, ReportKind};
use serde::Serialize;

/// Renders diagnostics for a terminal. With `color == false` the output is plain text (stable
/// for snapshots). Trailing whitespace is stripped from every line.
pub fn render_ariadne(sources: &SourceMap, diags: &[Diagnostic], color: bool) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&render_one(sources, d, color));
    }
    out
}

fn render_one(sources: &SourceMap, d: &Diagnostic, color: bool) -> String {
    let kind = match d.severity {
        Severity::Error => ReportKind::Error,
        Severity::Warning => ReportKind::Warning,
        Severity::Note => ReportKind::Advice,
    };
    let Some(first) = d.labels.iter().find(|l| l.primary).or(d.labels.first()) else {
        // No location: a one-line message in rustc style.
        let word = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        };
        let mut s = format!("{word}[{}]: {}\n", d.code, d.message);
        for n in &d.notes {
            s.push_str(&format!("  = note: {n}\n"));
        }
        if let Some(h) = &d.help {
            s.push_str(&format!("  = help: {h}\n"));
        }
        return s;
    };
    let span_of = |l: &super::Label| {
        let text = &sources.get(l.span.source).text;
        let end = l.span.end.min(text.len());
        let start = l.span.start.min(end);
        (sources.get(l.span.source).name.clone(), start..end)
    };
    let mut report = Report::build(kind, span_of(first))
        .with_config(
            Config::default()
                .with_index_type(IndexType::Byte)
                .with_color(color),
        )
        .with_code(d.code)
        .with_message(&d.message);
    for (order, l) in d.labels.iter().enumerate() {
        let mut label = Label::new(span_of(l))
            .with_message(&l.message)
            .with_order(order as i32);
        if color {
            label = label.with_color(if l.primary {
                ariadne::Color::Red
            } else {
                ariadne::Color::Blue
            });
        }
        report = report.with_label(label);
    }
    for n in &d.notes {
        report = report.with_note(n);
    }
    if let Some(h) = &d.help {
        report = report.with_help(h);
    }
    let mut files: Vec<(String, String)> = Vec::new();
    for l in &d.labels {
        let f = sources.get(l.span.source);
        if !files.iter().any(|(n, _)| *n == f.name) {
            files.push((f.name.clone(), f.text.clone()));
        }
    }
    let mut buf = Vec::new();
    if report
        .finish()
        .write(ariadne::sources(files), &mut buf)
        .is_err()
    {
        return format!("error[{}]: {}\n", d.code, d.message);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut s: String = text
        .lines()
        .map(|l| l.trim_end())
        .collect::<Vec<_>>()
        .join("\n");
    s.push('\n');
    s
}

#[derive(Serialize)]
struct JsonPosition {
    line: u32,
    character: u32,
}

#[derive(Serialize)]
struct JsonRange {
    start: JsonPosition,
    end: JsonPosition,
}

#[derive(Serialize)]
struct JsonLabel {
    file: String,
    byte_start: usize,
    byte_end: usize,
    /// LSP range: zero-based lines, UTF-16 characters.
    range: JsonRange,
    message: String,
    primary: bool,
}

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    severity: Severity,
    code: &'a str,
    message: &'a str,
    labels: Vec<JsonLabel>,
    notes: &'a [String],
    help: Option<&'a str>,
}

/// One JSON object per diagnostic, one per line (the `--message-format json` output).
pub fn render_json(sources: &SourceMap, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        let labels = d
            .labels
            .iter()
            .map(|l| {
                let (sl, sc) = sources.lsp_position(l.span.source, l.span.start);
                let (el, ec) = sources.lsp_position(l.span.source, l.span.end);
                JsonLabel {
                    file: sources.get(l.span.source).name.clone(),
                    byte_start: l.span.start,
                    byte_end: l.span.end,
                    range: JsonRange {
                        start: JsonPosition {
                            line: sl,
                            character: sc,
                        },
                        end: JsonPosition {
                            line: el,
                            character: ec,
                        },
                    },
                    message: l.message.clone(),
                    primary: l.primary,
                }
            })
            .collect();
        let j = JsonDiagnostic {
            severity: d.severity,
            code: d.code,
            message: &d.message,
            labels,
            notes: &d.notes,
            help: d.help.as_deref(),
        };
        out.push_str(&serde_json::to_string(&j).unwrap_or_default());
        out.push('\n');
    }
    out
}
