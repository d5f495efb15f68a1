//! Sampling soundness on every shipped Conv-small model (`models/mnist/conv_small_*.safetensors`),
//! when present and decodable; otherwise the test prints why it skipped.

use ndarray::Array2;
use std::path::PathBuf;
use upcc::engine::cpu::margin_bounds_cached;
use upcc::engine::{forward, BoundCache, BoundMethod, DeltaBox, RowPrecision};
use upcc::formats::load_tensors;
use upcc::ir::build::{conv_small_from_tensors, Rng};

#[test]
fn shipped_models_bounds_hold_on_sampled_perturbations() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/mnist");
    let models: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|it| {
            it.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    name.starts_with("conv_small") && name.ends_with(".safetensors")
                })
                .collect()
        })
        .unwrap_or_default();
    if models.is_empty() {
        println!("SKIPPED: no models/mnist/conv_small_*.safetensors");
        return;
    }
    for path in models {
        let tensors = match load_tensors(&path) {
            Ok(t) => t,
            Err(e) => {
                println!("SKIPPED {path:?}: {}", e.message);
                continue;
            }
        };
        let graph =
            conv_small_from_tensors(&tensors).expect("shipped model has the Conv-small layout");
        let mut rng = Rng::new(17);
        let x = Array2::from_shape_fn((4, 784), |_| rng.uniform());
        let logits = forward(&graph, x.view()).unwrap();
        let labels: Vec<usize> = logits
            .rows()
            .into_iter()
            .map(|r| (0..10).fold(0, |b, j| if r[j] > r[b] { j } else { b }))
            .collect();
        let delta = DeltaBox::linf(784, 8.0 / 255.0);
        for (method, rows) in [
            (BoundMethod::Crown, RowPrecision::F64),
            (BoundMethod::Crown, RowPrecision::F32),
            (
                BoundMethod::AlphaCrown {
                    iterations: 5,
                    learning_rate: 0.1,
                },
                RowPrecision::F64,
            ),
        ] {
            let no_cache = (&BoundCache::disabled(), rows);
            let bounds =
                margin_bounds_cached(&graph, x.view(), &labels, &delta, &method, no_cache).unwrap();
            for (i, sb) in bounds.samples.iter().enumerate() {
                let deltas = Array2::from_shape_fn((500, 784), |(s, _)| {
                    let t = if s % 2 == 0 {
                        (rng.uniform() < 0.5) as u8 as f64
                    } else {
                        rng.uniform()
                    };
                    (2.0 * t - 1.0) * 8.0 / 255.0
                });
                let out = forward(&graph, (&deltas + &x.row(i)).view()).unwrap();
                let lin = deltas.dot(&sb.a.t());
                for (r, &j) in sb.others.iter().enumerate() {
                    for s in 0..deltas.nrows() {
                        let margin = out[[s, sb.label]] - out[[s, j]];
                        let tol = 1e-9 * (1.0 + margin.abs());
                        assert!(
                            margin >= lin[[s, r]] + sb.b[r] - tol,
                            "{path:?} sample {i} class {j}"
                        );
                        assert!(
                            margin >= sb.samplewise_lower[r] - tol,
                            "{path:?} sample {i} class {j}"
                        );
                    }
                }
            }
        }
        println!("checked {path:?}");
    }
}
