//! UI tests: every `tests/ui/*.upc` is checked and its rendered diagnostics (colour off) are
//! compared with `tests/ui/NAME.stderr`. `UPDATE_UI=1 cargo test --test ui` rewrites them.
//! In an expected file, `[..]` matches any text within a line.

use std::path::{Path, PathBuf};
use upcc::diagnostics::render_ariadne;
use upcc::semantics::check_file;

fn render(path: &Path) -> String {
    let (sources, result) = check_file(path);
    match result {
        Ok(p) => render_ariadne(&sources, &p.warnings, false),
        Err(d) => render_ariadne(&sources, &d.items, false),
    }
}

/// Line-by-line match where `[..]` in an expected line matches any text.
fn matches(expected: &str, actual: &str) -> bool {
    let e: Vec<&str> = expected.lines().collect();
    let a: Vec<&str> = actual.lines().collect();
    e.len() == a.len() && e.iter().zip(&a).all(|(e, a)| line_matches(e, a))
}

fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("[..]").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let Some(mut rest) = actual.strip_prefix(parts[0]) else {
        return false;
    };
    for (i, p) in parts[1..].iter().enumerate() {
        if i == parts.len() - 2 {
            return rest.ends_with(p);
        }
        match rest.find(p) {
            Some(k) => rest = &rest[k + p.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn ui() {
    let dir = PathBuf::from("tests/ui");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "upc"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "expected at least 40 UI cases, found {}",
        cases.len()
    );
    let update = std::env::var_os("UPDATE_UI").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_stem().unwrap().to_string_lossy().to_string();
        let actual = render(case);
        let expected_path = case.with_extension("stderr");
        if update {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if !matches(&expected, &actual) {
            failures.push(format!(
                "--- {name}: expected\n{expected}\n--- {name}: actual\n{actual}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} UI case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_case_reports_an_error() {
    for entry in std::fs::read_dir("tests/ui").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "upc") {
            let (_, result) = check_file(&path);
            assert!(
                result.is_err(),
                "{} should not check cleanly",
                path.display()
            );
        }
    }
}

#[test]
fn wildcard_lines() {
    assert!(line_matches("a [..] c", "a bbb c"));
    assert!(!line_matches("a [..] c", "a bbb d"));
    assert!(line_matches("x", "x"));
    assert!(!matches("x\ny", "x"));
}
