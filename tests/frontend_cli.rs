//! The `upcc` binary: exit codes, JSON diagnostics, `explain`.

use std::process::Command;

fn upcc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_upcc"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_exit_codes() {
    let (ok, _, err) = upcc(&["check", "tests/ui/modules/tiny.upc"]);
    assert_eq!(ok, 0, "{err}");
    let (bad, _, err) = upcc(&[
        "check",
        "--color",
        "never",
        "tests/ui/linear_size_mismatch.upc",
    ]);
    assert_eq!(bad, 1);
    assert!(err.contains("[E0211] Error"), "{err}");
    assert!(!err.contains('\u{1b}'), "no colour when piped");
    let (missing, _, _) = upcc(&["check", "tests/ui/does_not_exist.upc"]);
    assert_eq!(missing, 2);
    let (usage, _, _) = upcc(&["check"]);
    assert_eq!(usage, 2);
}

#[test]
fn json_diagnostics_carry_lsp_ranges() {
    let (code, out, _) = upcc(&[
        "check",
        "--message-format",
        "json",
        "tests/ui/negative_eps.upc",
    ]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["code"], "E0205");
    let label = &v["labels"][0];
    assert_eq!(label["file"], "tests/ui/negative_eps.upc");
    // `-4/255` starts at byte (and UTF-16 column) 44 of line 0.
    assert_eq!(label["range"]["start"]["line"], 0);
    assert_eq!(label["range"]["start"]["character"], 44);
    assert_eq!(
        label["byte_end"].as_u64().unwrap() - label["byte_start"].as_u64().unwrap(),
        6
    );
}

#[test]
fn explain_known_and_unknown_codes() {
    let (code, out, _) = upcc(&["explain", "E0211"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("E0211: linear size mismatch"));
    let (code, _, _) = upcc(&["explain", "E9999"]);
    assert_eq!(code, 2);
}
