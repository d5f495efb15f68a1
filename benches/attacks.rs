//! Attack speed: one attack of 100 steps on 100 samples of a Conv-small-sized dense ReLU network
//! (784 → 256 → 100 → 10, about 228k multiply-adds per sample against Conv-small's 330k).
//! Run with `cargo bench --bench attacks`; prints the median of 3 runs per attack, beside the time
//! of the classifier alone answering 100 steps' queries: separate forward and VJP (the VJP runs its
//! own forward), and fused (`logits_and_input_gradient`, what the attacks call: the attacks' floor).

use std::time::Instant;

use ndarray::Array2;
use upcc::attacks::testing::{self_labels, Mlp};
use upcc::attacks::{run_attack, AttackKind, AttackOptions, Classifier, SplitMix64};
use upcc::engine::DeltaBox;

fn main() {
    let (n, d) = (100, 784);
    let model = Mlp::random(&[d, 256, 100, 10], 1).expect("layer sizes chain");
    let mut rng = SplitMix64::new(2);
    let x = Array2::from_shape_fn((n, d), |_| rng.uniform(0.0, 1.0));
    let y = self_labels(&model, x.view());
    let bx = DeltaBox::linf(d, 8.0 / 255.0);
    let opts = AttackOptions::default();
    let grad_logits = Array2::from_elem((n, 10), 0.1);
    let separate = median_secs(|| {
        for _ in 0..opts.steps {
            let z = model.logits(x.view());
            let g = model.input_gradient(x.view(), grad_logits.view());
            std::hint::black_box((z, g));
        }
    });
    let fused = median_secs(|| {
        for _ in 0..opts.steps {
            let zg = model.logits_and_input_gradient(x.view(), &mut |_| grad_logits.clone());
            std::hint::black_box(zg);
        }
    });
    println!("attack          steps  n    median_s  correct/{n}");
    let row = |name: &str, secs: f64| println!("{name:<15} {:<6} {n:<4} {secs:<9.3} -", opts.steps);
    row("(fwd, vjp)", separate);
    row("(fused)", fused);
    for kind in AttackKind::ALL {
        let mut correct = 0;
        let secs = median_secs(|| {
            let r = run_attack(kind, &model, x.view(), &y, &bx, &opts).expect("attack runs");
            correct = r.correct();
        });
        println!(
            "{:<15} {:<6} {:<4} {:<9.3} {correct}",
            kind.name(),
            opts.steps,
            n,
            secs
        );
    }
    // Sample-wise PGD pays for a targeted run per class on every sample it has not yet fooled, so
    // its cost grows with the number of robust samples: time it where few samples fall.
    let small = DeltaBox::linf(d, 0.2 / 255.0);
    let mut correct = 0;
    let secs = median_secs(|| {
        let kind = AttackKind::SamplewisePgd;
        let r = run_attack(kind, &model, x.view(), &y, &small, &opts).expect("attack runs");
        correct = r.correct();
    });
    let name = "samplewise_pgd";
    println!(
        "{name:<15} {:<6} {n:<4} {secs:<9.3} {correct}  (eps 0.2/255)",
        opts.steps
    );
}

fn median_secs(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[1]
}
