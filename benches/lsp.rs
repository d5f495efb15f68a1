//! LSP benchmark: one re-check of a generated file of a few hundred lines (parse, name and
//! import resolution, shape inference of every network, diagnostics conversion), as the server
//! does after each edit. Target: ≤ 50 ms.
//!
//! `cargo bench --bench lsp` (optional argument: repetitions, default 30).

use std::path::PathBuf;
use std::time::Instant;
use upcc::lsp::text::apply_edit;
use upcc::lsp::Document;
use upcc::semantics::MemoryLoader;

/// `blocks` small MLP/conv blocks of ~12 lines each, a network per block, and networks built
/// from every stdlib architecture.
fn generate(blocks: usize) -> String {
    let mut out = String::from("use std::nets::*\n\nconst width = 64\n\n");
    for i in 0..blocks {
        out.push_str(&format!(
            "// block {i}\nblock b{i}(w) {{\n    input [1, 28, 28]\n    conv1 = conv2d(1, 8, kernel: 3, stride: 2, padding: 1)\n    relu1 = relu\n    conv2 = conv2d(8, 16, kernel: 3, stride: 2, padding: 1)\n    relu2 = relu\n    flat = flatten\n    fc1 = linear(784, w)\n    relu3 = relu\n    fc2 = linear(w, 10)\n}}\n\nnetwork n{i} = b{i}(width)\n\n"
        ));
    }
    for (i, arch) in ["conv_small", "conv_4layer", "conv_big"].iter().enumerate() {
        out.push_str(&format!("network std{i} = {arch}()\n"));
    }
    out
}

fn main() {
    let reps: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(30);
    let text = generate(20);
    let lines = text.lines().count();
    let path = PathBuf::from("/bench/spec.upc");
    let loader = MemoryLoader::default();
    let mut doc = Document::new(path, text);
    doc.analyze(&loader);
    assert!(doc.diagnostics.is_empty(), "{:?}", doc.diagnostics);

    let mut times = Vec::with_capacity(reps);
    for i in 0..reps {
        // An edit that keeps the file valid: change a constant, then re-check.
        apply_edit(
            &mut doc.text,
            (2, 14),
            (2, 16),
            if i % 2 == 0 { "32" } else { "64" },
        );
        let start = Instant::now();
        doc.analyze(&loader);
        times.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(doc.diagnostics.is_empty(), "{:?}", doc.diagnostics);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "re-check of {lines} lines, {} networks: median {:.2} ms, min {:.2} ms, max {:.2} ms ({reps} runs)",
        20 + 3,
        times[reps / 2],
        times[0],
        times[reps - 1]
    );
}
