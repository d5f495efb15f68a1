//! Agreement with auto_LiRPA 0.3 CROWN (`method='backward'`) golden files, when present.
//!
//! Format of `tests/golden/<name>.npz` (written by a hand-run script in `tools/`): `x` [n, d]
//! exact inputs, `labels` [n], `eps` scalar, `lower` [n, 9] sample-wise lower bounds of the
//! margins y−j for the 9 classes j ≠ y ascending, `A` [n, 9, d] coefficients with respect to
//! the input (= with respect to δ), `bias` [n, 9] so that margin ≥ A·δ + bias (the bound at
//! δ = 0). Next to it, `<name>.weights` holds the weight file path (relative to the repository
//! root) on its first line and the architecture (`conv_small`) on its second.
//! The test skips, printing why, when no golden file or no decoder is available.

use ndarray::Array2;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use upcc::engine::cpu::margin_bounds;
use upcc::engine::{BoundMethod, DeltaBox};
use upcc::formats::{load_tensors, TensorData};
use upcc::ir::build::conv_small_from_tensors;

fn tensor<'a>(t: &'a BTreeMap<String, TensorData>, key: &str) -> Option<&'a TensorData> {
    t.get(key).or_else(|| t.get(&format!("{key}.npy")))
}

fn close(ours: f64, theirs: f64, scale: f64) -> bool {
    (ours - theirs).abs() <= 1e-4 * (scale + theirs.abs())
}

fn check_golden(path: &Path, root: &Path) -> Result<(), String> {
    let golden = load_tensors(path).map_err(|e| format!("cannot decode: {}", e.message))?;
    let sidecar = std::fs::read_to_string(path.with_extension("weights"))
        .map_err(|e| format!("no .weights sidecar: {e}"))?;
    let mut lines = sidecar.lines();
    let weights_path = root.join(lines.next().unwrap_or("").trim());
    let arch = lines.next().unwrap_or("conv_small").trim();
    let weights =
        load_tensors(&weights_path).map_err(|e| format!("cannot load weights: {}", e.message))?;
    let graph = match arch {
        "conv_small" => conv_small_from_tensors(&weights).ok_or("weights do not fit conv_small")?,
        other => return Err(format!("architecture `{other}` not wired into this test")),
    };
    let get = |k: &str| tensor(&golden, k).ok_or(format!("missing key `{k}`"));
    let x = get("x")?;
    let (n, d) = (x.shape[0], x.shape[1]);
    let x = Array2::from_shape_vec((n, d), x.data.clone()).map_err(|e| e.to_string())?;
    let labels: Vec<usize> = get("labels")?.data.iter().map(|&v| v as usize).collect();
    let eps = get("eps")?.data[0];
    let (lower, a, bias) = (get("lower")?, get("A")?, get("bias")?);
    let ours = margin_bounds(
        &graph,
        x.view(),
        &labels,
        &DeltaBox::linf(d, eps),
        &BoundMethod::Crown,
    )
    .map_err(|e| e.to_string())?;
    for (i, s) in ours.samples.iter().enumerate() {
        for r in 0..s.others.len() {
            let scale = 1.0 + s.a.row(r).iter().map(|v| v.abs()).sum::<f64>() * eps;
            let k = i * s.others.len() + r;
            assert!(
                close(s.samplewise_lower[r], lower.data[k], scale),
                "{path:?} sample {i} row {r}: lower {} vs {}",
                s.samplewise_lower[r],
                lower.data[k]
            );
            assert!(
                close(s.b[r], bias.data[k], scale),
                "{path:?} sample {i} row {r}: bias {} vs {}",
                s.b[r],
                bias.data[k]
            );
            let amax = s.a.row(r).iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for c in 0..d {
                let theirs = a.data[k * d + c];
                assert!(
                    close(s.a[[r, c]], theirs, amax),
                    "{path:?} sample {i} row {r} coef {c}: {} vs {theirs}",
                    s.a[[r, c]]
                );
            }
        }
    }
    Ok(())
}

#[test]
fn matches_auto_lirpa_golden_files() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let files: Vec<PathBuf> = std::fs::read_dir(root.join("tests/golden"))
        .map(|it| {
            it.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "npz"))
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        println!("SKIPPED: no tests/golden/*.npz golden files yet");
        return;
    }
    for f in files {
        match check_golden(&f, &root) {
            Ok(()) => println!("checked {f:?}"),
            Err(why) => println!("SKIPPED {f:?}: {why}"),
        }
    }
}
