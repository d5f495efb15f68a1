//! Every diagnostic code used anywhere in the sources has an explanation for `upcc explain`.

use std::path::Path;
use upcc::diagnostics::codes::explain;

fn collect_codes(dir: &Path, codes: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_codes(&path, codes);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("codes.rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let bytes = text.as_bytes();
            for (i, _) in text.match_indices("\"E0") {
                let code = &text[i + 1..(i + 6).min(text.len())];
                if code.len() == 5
                    && code[1..].bytes().all(|b| b.is_ascii_digit())
                    && bytes.get(i + 6) == Some(&b'"')
                {
                    codes.push((code.to_string(), path.display().to_string()));
                }
            }
        }
    }
}

#[test]
fn every_code_in_the_sources_is_explained() {
    let mut codes = Vec::new();
    collect_codes(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut codes,
    );
    assert!(codes.len() > 40, "found only {} codes", codes.len());
    let missing: Vec<_> = codes.iter().filter(|(c, _)| explain(c).is_none()).collect();
    assert!(
        missing.is_empty(),
        "codes without an explanation: {missing:?}"
    );
}
