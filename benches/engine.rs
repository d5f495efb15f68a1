//! CROWN universal bounds on a Conv-small-shaped network (random He-scaled weights until the
//! trained models land), 100 MNIST-sized inputs, ε = 2/255 and 8/255.
//! Run: `cargo bench --bench engine` (optionally `-- <n>` samples).

use ndarray::Array2;
use std::sync::atomic::Ordering;
use std::time::Instant;
use upcc::engine::cpu::margin_bounds;
use upcc::engine::linop::GEMM_FLOPS;
use upcc::engine::{forward, BoundMethod, DeltaBox};
use upcc::ir::build::{conv_small, Rng};

/// CPU seconds (user + system) of this process so far, from /proc (None elsewhere). The machine
/// is shared, so CPU time is reported beside wall time.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100);
    let mut rng = Rng::new(2023);
    let graph = conv_small(&mut rng);
    let x = Array2::from_shape_fn((n, 784), |_| rng.uniform());
    let logits = forward(&graph, x.view()).unwrap();
    let labels: Vec<usize> = logits
        .rows()
        .into_iter()
        .map(|r| (0..10).fold(0, |b, j| if r[j] > r[b] { j } else { b }))
        .collect();
    println!("threads: {}", rayon::current_num_threads());
    kernel_rate(&graph);
    for eps in [2.0 / 255.0, 8.0 / 255.0] {
        for method in [
            BoundMethod::Crown,
            BoundMethod::AlphaCrown {
                iterations: 20,
                learning_rate: 0.1,
            },
        ] {
            let delta = DeltaBox::linf(784, eps);
            GEMM_FLOPS.store(0, Ordering::Relaxed);
            let start = Instant::now();
            let cpu_start = cpu_seconds();
            let bounds = margin_bounds(&graph, x.view(), &labels, &delta, &method).unwrap();
            let secs = start.elapsed().as_secs_f64();
            let cpu = cpu_seconds()
                .zip(cpu_start)
                .map_or(f64::NAN, |(b, a)| b - a);
            let flops = GEMM_FLOPS.load(Ordering::Relaxed) as f64;
            let certified = bounds
                .samples
                .iter()
                .filter(|s| s.samplewise_lower.iter().all(|&v| v > 0.0))
                .count();
            println!(
                "conv_small n={n} eps={:.4} {:?}: {secs:.3} s wall, {cpu:.2} s CPU, GEMM {:.2} GFLOP at {:.2} GFLOP/s, sample-wise certified {certified}",
                eps,
                method,
                flops / 1e9,
                flops / 1e9 / secs
            );
        }
    }
}

/// The main kernel alone: dense rows pulled back through conv2 (16→32, k4, s2), as in the
/// intermediate bounds of the fc1 neurons; single thread.
fn kernel_rate(graph: &upcc::ir::Graph) {
    let conv2 = &graph.nodes[3];
    let mut rng = Rng::new(5);
    let rows = Array2::from_shape_fn((200, conv2.numel()), |_| rng.range(-1.0, 1.0));
    GEMM_FLOPS.store(0, Ordering::Relaxed);
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    let reps = 20;
    for _ in 0..reps {
        std::hint::black_box(upcc::engine::linop::backward(graph, conv2, rows.clone()));
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_start)
        .map_or(f64::NAN, |(b, a)| b - a);
    let flops = GEMM_FLOPS.load(Ordering::Relaxed) as f64;
    println!(
        "kernel: conv2 transpose, 200 dense rows x {reps}: {secs:.3} s wall, {cpu:.2} s CPU, {:.2} GFLOP/s (wall), {:.2} GFLOP/s (CPU)",
        flops / 1e9 / secs,
        flops / 1e9 / cpu
    );
}
