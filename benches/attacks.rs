//! Attack speed: one attack of 100 steps on 100 samples of a Conv-small-sized dense ReLU network
//! (784 → 256 → 100 → 10, about 228k multiply-adds per sample against Conv-small's 330k).
//! Run with `cargo bench --bench attacks`; prints the median of 3 runs per attack.

use std::time::Instant;

use ndarray::Array2;
use upcc::attacks::testing::{self_labels, Mlp};
use upcc::attacks::{run_attack, AttackKind, AttackOptions, SplitMix64};
use upcc::engine::DeltaBox;

fn main() {
    let (n, d) = (100, 784);
    let model = Mlp::random(&[d, 256, 100, 10], 1).expect("layer sizes chain");
    let mut rng = SplitMix64::new(2);
    let x = Array2::from_shape_fn((n, d), |_| rng.uniform(0.0, 1.0));
    let y = self_labels(&model, x.view());
    let bx = DeltaBox::linf(d, 8.0 / 255.0);
    let opts = AttackOptions::default();
    println!("attack          steps  n    median_s  correct/{n}");
    for kind in AttackKind::ALL {
        let mut times = Vec::new();
        let mut correct = 0;
        for _ in 0..3 {
            let t = Instant::now();
            let r = run_attack(kind, &model, x.view(), &y, &bx, &opts).expect("attack runs");
            times.push(t.elapsed().as_secs_f64());
            correct = r.correct();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{:<15} {:<6} {:<4} {:<9.3} {correct}",
            kind.name(),
            opts.steps,
            n,
            times[1]
        );
    }
}
