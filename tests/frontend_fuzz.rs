//! Property tests: random and mutated specs (and corrupted weight/data files) go through the
//! whole front end and both renderers. It must answer with diagnostics, never panic.

use proptest::prelude::*;
use std::path::{Path, PathBuf};
use upcc::diagnostics::{render_ariadne, render_json};
use upcc::semantics::{check_source, Loader};

/// Serves the spec under test from memory and every other file from disk.
struct RootFromMemory {
    root: PathBuf,
    text: String,
}

impl Loader for RootFromMemory {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if path == self.root {
            Ok(self.text.clone())
        } else {
            std::fs::read_to_string(path)
        }
    }
}

fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = ["examples", "tests/ui", "tests/ui/modules", "stdlib"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "upc"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

const TOKENS: &[&str] = &[
    "network",
    "block",
    "use",
    "std::nets::",
    "\"",
    "(",
    ")",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "=",
    "|",
    "/",
    "-",
    "..",
    "from",
    "if",
    "else",
    "input",
    "eps",
    "per_channel",
    "relu",
    "add",
    "linear(",
    "conv2d(",
    "0",
    "255",
    "99999999999999999999999",
    "1e40",
    "é",
    "ℓ∞",
    "\n",
    "//",
    "identity",
    "certify",
    "onnx(",
    "\"modules/tiny.upc\"",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, usize),
    Swap(usize, usize, usize),
}

/// The largest char boundary of `s` not above `i` (and not above its length).
fn floor(s: &str, i: usize) -> usize {
    let mut i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn mutate(text: &str, muts: &[Mutation]) -> String {
    let mut s = text.to_string();
    for m in muts {
        let at = |i: usize, s: &str| floor(s, i % (s.len() + 1));
        match *m {
            Mutation::Delete(a, n) => {
                let a = at(a, &s);
                let b = floor(&s, a + n % 12).max(a);
                s.replace_range(a..b, "");
            }
            Mutation::Insert(a, t) => {
                let a = at(a, &s);
                s.insert_str(a, TOKENS[t % TOKENS.len()]);
            }
            Mutation::Swap(a, b, n) => {
                let (a, b) = (at(a, &s), at(b, &s));
                let (a, b) = (a.min(b), a.max(b));
                let n = n % 8;
                let a_end = floor(&s, a + n).min(b);
                let b_end = floor(&s, b + n).max(b);
                let (x, y) = (s[a..a_end].to_string(), s[b..b_end].to_string());
                s = format!("{}{}{}{}{}", &s[..a], y, &s[a_end..b], x, &s[b_end..]);
            }
        }
    }
    s
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, t)| Mutation::Insert(a, t)),
        (any::<usize>(), any::<usize>(), any::<usize>())
            .prop_map(|(a, b, n)| Mutation::Swap(a, b, n)),
    ]
}

/// Runs the front end on `text` as if it were `tests/ui/fuzz.upc`; panics only on a real bug.
fn run(text: String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/fuzz_case.upc");
    let loader = RootFromMemory {
        root: root.clone(),
        text,
    };
    let (sources, result) = check_source(&root, &loader);
    let diags = match result {
        Ok(p) => p.warnings,
        Err(d) => {
            assert!(
                d.items.iter().any(|d| d.is_error()),
                "a failed check has an error"
            );
            d.items
        }
    };
    let _ = render_ariadne(&sources, &diags, false);
    let _ = render_ariadne(&sources, &diags, true);
    for line in render_json(&sources, &diags).lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("valid JSON");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn mutated_specs_never_panic(pick in any::<usize>(), muts in prop::collection::vec(mutation(), 1..6)) {
        let corpus = corpus();
        run(mutate(&corpus[pick % corpus.len()], &muts));
    }

    #[test]
    fn random_text_never_panics(text in "[ -~\n\u{e9}\u{221e}]{0,200}") {
        run(text);
    }

    #[test]
    fn random_token_soup_never_panics(toks in prop::collection::vec(0..TOKENS.len(), 0..40)) {
        run(toks.iter().map(|&t| TOKENS[t]).collect::<Vec<_>>().join(" "));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    /// Corrupted weight and data files give diagnostics too.
    #[test]
    fn corrupted_files_never_panic(which in 0..2usize, flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..8), cut in any::<usize>()) {
        let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
        let (name, spec) = [
            ("tiny.safetensors", "use \"MODS/tiny.upc\"\nnetwork n = tiny() weights \"FILE\"\n"),
            ("digits.npz", "dataset d = npz(\"FILE\") | first 2\n"),
        ][which];
        let mut bytes = std::fs::read(ui.join("fixtures").join(name)).unwrap();
        for (i, b) in flips {
            let i = i % bytes.len();
            bytes[i] ^= b;
        }
        if cut % 3 == 0 {
            bytes.truncate(cut % bytes.len());
        }
        let dir = std::env::temp_dir().join(format!("upcc_fuzz_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(name);
        std::fs::write(&file, &bytes).unwrap();
        let spec = spec.replace("FILE", file.to_str().unwrap()).replace("MODS", ui.join("modules").to_str().unwrap());
        run(spec);
    }
}
