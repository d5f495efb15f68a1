//! Engine speed on the trained models: CROWN universal bounds for 100 held-out MNIST digits on
//! Conv-small (ε = 2, 4, 6, 8/255), and 100 steps of batched forward + VJP (one attack's queries)
//! through `GraphClassifier`; CROWN on Conv-big (ε = 2, 8/255, built by the front end from
//! `std::nets::conv_big`) and on ResNet-2B/4B (CIFAR-10, ε = 2/255). Absent models and data are
//! skipped with a message.
//! Run: `cargo bench --bench engine` (optionally `-- <n> [<filter>] [--eps=2,8] [--rows=f32]`: n
//! samples, only the models whose name contains the filter, Conv-big's radii in 1/255, and the
//! window rows' scalar). It first prints the SIMD level in use and one core's FMA peak and
//! row-kernel rate at each level (`$UPCC_SIMD` caps the level; see `engine::linop::simd_level`).

use ndarray::{Array1, Array2};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;
use upcc::attacks::{run_attack, AttackKind, AttackOptions, Classifier};
use upcc::driver::process::{cpu_seconds, peak_rss_mb};
use upcc::driver::verify::GraphClassifier;
use upcc::engine::cpu::margin_bounds_cached;
use upcc::engine::linop::{probe, simd_level, SimdLevel, GEMM_FLOPS};
use upcc::engine::{BoundCache, BoundMethod, DeltaBox, RowPrecision};
use upcc::formats::dataset::{load_dataset, DatasetSource, PixelLayout};
use upcc::formats::load_tensors;
use upcc::formats::onnx::load_model;
use upcc::ir::build::conv_small_from_tensors;
use upcc::ir::from_onnx::import;
use upcc::ir::Graph;
use upcc::semantics::check_file;

/// The `upcc` binary's allocator, so the timings are the binary's (the system allocator
/// page-faults the engine's large temporaries anew on every step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    upcc::driver::process::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(100);
    // `cargo bench` passes `--bench`; any other non-number argument filters the models.
    let filter = args
        .iter()
        .find(|a| a.parse::<usize>().is_err() && !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    let selected = |name: &str| name.contains(&filter);
    let conv_big_radii: Vec<f64> = args
        .iter()
        .find_map(|a| a.strip_prefix("--eps="))
        .map(|list| list.split(',').filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_else(|| vec![2.0, 8.0]);
    let rows = if args.iter().any(|a| a == "--rows=f32") {
        RowPrecision::F32
    } else {
        RowPrecision::F64
    };
    println!("threads: {}", rayon::current_num_threads());
    print_peaks();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = match load_dataset(&DatasetSource::Npz(root.join("data/mnist/heldout.npz"))) {
        Ok(d) => d,
        Err(e) => {
            println!("SKIPPED: held-out MNIST digits: {}", e.message);
            return;
        }
    };
    // The .npz stores raw 0–255 pixels; the models take [0, 1].
    let max = data.images.iter().cloned().fold(0.0, f64::max);
    let data = if max > 1.0 {
        data.scale(1.0 / 255.0)
    } else {
        data
    };
    let n = n.min(data.len());
    let d = data.sample_len();
    let x = Array2::from_shape_vec((n, d), data.images[..n * d].to_vec()).expect("n × d");
    for name in ["conv_small_natural", "conv_small_pgd32"] {
        if !selected(name) {
            continue;
        }
        let path = root.join(format!("models/mnist/{name}.safetensors"));
        let graph = match load_tensors(&path).map(|t| conv_small_from_tensors(&t)) {
            Ok(Some(g)) => g,
            Ok(None) => {
                println!("SKIPPED {name}: not the Conv-small layout");
                continue;
            }
            Err(e) => {
                println!("SKIPPED {name}: {}", e.message);
                continue;
            }
        };
        radii_run(name, &graph, &x, &[2.0, 4.0, 6.0, 8.0], rows);
        attack_run(name, &graph, &x, &data.labels[..n]);
    }
    for name in ["conv_big_natural", "conv_big_pgd32"] {
        if !selected(name) {
            continue;
        }
        let Some(graph) = conv_big(root, name) else {
            continue;
        };
        radii_run(name, &graph, &x, &conv_big_radii, rows);
    }
    resnets(root, n, &selected, rows);
}

/// Conv-big with the weights of `models/mnist/<name>.safetensors`, built by the front end.
fn conv_big(root: &Path, name: &str) -> Option<Graph> {
    let weights = root.join(format!("models/mnist/{name}.safetensors"));
    if !weights.is_file() {
        println!("SKIPPED {name}: no {}", weights.display());
        return None;
    }
    let dir = std::env::temp_dir().join(format!("upcc-bench-engine-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let spec = dir.join(format!("{name}.upc"));
    let text = format!(
        "use std::nets::conv_big\nnetwork net = conv_big() weights \"{}\"\n",
        weights.display()
    );
    std::fs::write(&spec, text).ok()?;
    let (_, checked) = check_file(&spec);
    let _ = std::fs::remove_dir_all(&dir);
    match checked {
        Ok(program) => program.networks[0].graph.clone(),
        Err(d) => {
            println!("SKIPPED {name}: spec does not check: {:?}", d.items);
            None
        }
    }
}

/// ResNet-2B/4B (VNN-COMP 2021 ONNX) on ERAN's CIFAR-10 test CSV. The normalisation is not in
/// the ONNX: inputs are normalised here and the box is ε/std per channel, the same set as
/// prepending the normalisation to the network.
fn resnets(root: &Path, n: usize, selected: &dyn Fn(&str) -> bool, rows: RowPrecision) {
    let Some(shared) = ["../shared/external", "../../shared/external"]
        .iter()
        .map(|rel| root.join(rel))
        .find(|p| p.exists())
    else {
        println!("SKIPPED resnets: no ../shared/external");
        return;
    };
    let csv = shared.join("eran/cifar10_test.csv");
    let source = DatasetSource::Csv {
        path: csv,
        shape: vec![3, 32, 32],
        layout: PixelLayout::Hwc,
    };
    let data = match load_dataset(&source) {
        Ok(d) => d.scale(1.0 / 255.0),
        Err(e) => {
            println!("SKIPPED resnets: {}", e.message);
            return;
        }
    };
    let (mean, std) = ([0.4914, 0.4822, 0.4465], [0.2471, 0.2435, 0.2616]);
    let n = n.min(data.len());
    let d = data.sample_len();
    let x = Array2::from_shape_fn((n, d), |(i, k)| {
        (data.image(i)[k] - mean[k / 1024]) / std[k / 1024]
    });
    for name in ["resnet_2b", "resnet_4b"] {
        if !selected(name) {
            continue;
        }
        let path = shared.join(format!("vnncomp2021/cifar10_resnet/onnx/{name}.onnx"));
        let graph = match load_model(&path).map(|m| import(&m)) {
            Ok(Ok(g)) => g,
            Ok(Err(e)) => {
                println!("SKIPPED {name}: {e}");
                continue;
            }
            Err(e) => {
                println!("SKIPPED {name}: {}", e.message);
                continue;
            }
        };
        let labels = upcc::attacks::predicted_classes(&graph, x.view()).unwrap();
        let eps = 2.0 / 255.0;
        let delta = DeltaBox {
            lo: Array1::from_shape_fn(d, |k| -eps / std[k / 1024]),
            hi: Array1::from_shape_fn(d, |k| eps / std[k / 1024]),
        };
        let eps = "2/255 (per-channel /std)";
        bound_run(name, &graph, (&x, &labels), eps, &delta, rows);
    }
}

/// [`bound_run`] at each radius `k/255` of `radii`, labels the predicted classes.
fn radii_run(name: &str, graph: &Graph, x: &Array2<f64>, radii: &[f64], rows: RowPrecision) {
    let labels = upcc::attacks::predicted_classes(graph, x.view()).unwrap();
    for &k in radii {
        let delta = DeltaBox::linf(x.ncols(), k / 255.0);
        bound_run(name, graph, (x, &labels), &format!("{k}/255"), &delta, rows);
    }
}

fn bound_run(
    name: &str,
    graph: &Graph,
    (x, labels): (&Array2<f64>, &[usize]),
    eps: &str,
    delta: &DeltaBox,
    rows: RowPrecision,
) {
    let method = &BoundMethod::Crown;
    GEMM_FLOPS.store(0, Ordering::Relaxed);
    let cpu_start = cpu_seconds();
    let start = Instant::now();
    let no_cache = (&BoundCache::disabled(), rows);
    let bounds =
        margin_bounds_cached(graph, x.view(), labels, delta, method, no_cache).expect("bounds");
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
    let mean_lower: f64 = bounds
        .samples
        .iter()
        .map(|s| s.samplewise_lower.sum())
        .sum::<f64>()
        / bounds.samples.len().max(1) as f64;
    println!(
        "{name} n={} eps={eps} {method:?} rows {}: {secs:.3} s wall, {cpu:.2} s CPU, GEMM {:.2} GFLOP ({:.2} GFLOP/s wall), peak RSS {:.0} MB, sample-wise certified {certified}, mean Σ lower {mean_lower:.6}",
        x.nrows(),
        rows.name(),
        flops / 1e9,
        flops / 1e9 / secs,
        peak_rss_mb().unwrap_or(f64::NAN)
    );
}

/// One attack's classifier queries (100 fused forward + VJP steps), then a universal PGD run.
fn attack_run(name: &str, graph: &Graph, x: &Array2<f64>, labels: &[usize]) {
    let classifier = GraphClassifier { graph };
    let opts = AttackOptions::default();
    let k = classifier.num_classes();
    let grad_logits = Array2::from_elem((x.nrows(), k), 0.1);
    let start = Instant::now();
    for _ in 0..opts.steps {
        std::hint::black_box(
            classifier.logits_and_input_gradient(x.view(), &mut |_| grad_logits.clone()),
        );
    }
    let fused = start.elapsed().as_secs_f64();
    let bx = DeltaBox::linf(x.ncols(), 8.0 / 255.0);
    let start = Instant::now();
    let result = run_attack(AttackKind::Pgd, &classifier, x.view(), labels, &bx, &opts)
        .expect("attack runs");
    let pgd = start.elapsed().as_secs_f64();
    println!(
        "{name} n={}: {} fused forward+VJP steps {fused:.3} s; universal PGD ({} steps, eps 8/255) {pgd:.3} s, {} correct; peak RSS {:.0} MB",
        x.nrows(),
        opts.steps,
        opts.steps,
        result.correct(),
        peak_rss_mb().unwrap_or(f64::NAN)
    );
}

/// The SIMD level in use, one core's FMA peak at each level and the row kernel's rate on a
/// typical Conv-big shape (operands in cache), in f64 / f32 GFLOP/s.
fn print_peaks() {
    let show = |v: Option<f64>| v.map_or("-".to_string(), |g| format!("{g:.0}"));
    println!("simd level: {}", simd_level().name());
    let shape = (224, 64, 272);
    for level in [SimdLevel::Avx2, SimdLevel::Avx512] {
        println!(
            "  {}: one core's FMA peak {} / {} GFLOP/s (f64 / f32); row kernel on {}×{}×{}: {} / {}",
            level.name(),
            show(probe::fma_peak(level, RowPrecision::F64, 0.2)),
            show(probe::fma_peak(level, RowPrecision::F32, 0.2)),
            shape.0,
            shape.1,
            shape.2,
            show(probe::row_kernel(level, RowPrecision::F64, shape, 0.2)),
            show(probe::row_kernel(level, RowPrecision::F32, shape, 0.2)),
        );
    }
}
