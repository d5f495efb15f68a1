//! CUDA kernel engine against the CPU engine, in one run (issue 9 §4).
//!
//!   cargo bench --features cuda --bench kernels -- [--shared DIR] [--out DIR] [--cpu-threads 2]
//!
//! 1. Equivalence: CROWN and IBP bounds from the GPU match the CPU engine to 1e-5 relative on
//!    random networks, the shipped MNIST models (real digits) and ResNet-2B/4B (`--shared`).
//! 2. Throughput: Conv-big (natural, ε = 4/255) and ResNet-4B (ε = 1/255) CROWN universal bounds
//!    for n = 100 and 1000 on the GPU, and the CPU engine with `--cpu-threads` threads on the
//!    first `--cpu-n` samples. ResNet-4B's n = 1000 repeats the 100 CIFAR images ten times.
//!
//! Writes `kernels.json` and `kernels.md` to `--out` (default `target/bench-kernels`). Exits 1 if
//! any bound disagrees. Without the `cuda` feature it only says so.

#[cfg(not(feature = "cuda-backend"))]
fn main() {
    println!("kernels bench: built without the `cuda` feature; nothing to run");
}

#[cfg(feature = "cuda-backend")]
fn main() {
    cuda_bench::main();
}

#[cfg(feature = "cuda-backend")]
mod cuda_bench {
    use ndarray::Array2;
    use serde_json::json;
    use std::path::{Path, PathBuf};
    use std::time::Instant;
    use upcc::engine::cpu::margin_bounds;
    use upcc::engine::gpu::cuda::CudaDevice;
    use upcc::engine::gpu::{margin_bounds_on, KernelDevice, KernelEngine};
    use upcc::engine::{BoundCache, BoundMethod, DeltaBox, MarginBounds};
    use upcc::ir::build::{random_cnn, random_mlp, random_resnet, Rng};
    use upcc::ir::Graph;
    use upcc::semantics::check_file;

    /// Name, network, inputs, labels, ε.
    type Case = (String, Graph, Array2<f64>, Vec<usize>, f64);

    struct Args {
        shared: PathBuf,
        out: PathBuf,
        cpu_threads: usize,
        cpu_n: usize,
        sizes: Vec<usize>,
        /// Skip a size whose time, projected from the last, exceeds this.
        max_seconds: f64,
        /// Only the throughput workload with this name.
        only: Option<String>,
        checks: bool,
    }

    fn args() -> Args {
        let mut a = Args {
            shared: PathBuf::from("../shared/external"),
            out: PathBuf::from("target/bench-kernels"),
            cpu_threads: 2,
            cpu_n: 10,
            sizes: vec![100, 1000],
            max_seconds: 300.0,
            only: None,
            checks: true,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let mut value = || it.next().expect("flag value");
            match flag.as_str() {
                "--shared" => a.shared = value().into(),
                "--out" => a.out = value().into(),
                "--cpu-threads" => a.cpu_threads = value().parse().expect("number"),
                "--cpu-n" => a.cpu_n = value().parse().expect("number"),
                "--n" => {
                    a.sizes = value()
                        .split(',')
                        .map(|v| v.parse().expect("number"))
                        .collect()
                }
                "--max-seconds" => a.max_seconds = value().parse().expect("number"),
                "--only" => a.only = Some(value()),
                "--no-checks" => a.checks = false,
                "--bench" => {}
                other => panic!("unknown flag {other}"),
            }
        }
        a
    }

    fn spec_graph(name: &str, spec: &str, n: usize) -> Option<(Graph, Array2<f64>, Vec<usize>)> {
        let dir = std::env::temp_dir().join(format!("upcc-bench-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join(format!("{name}.upc"));
        std::fs::write(&path, spec).ok()?;
        let program = match check_file(&path).1 {
            Ok(p) => p,
            Err(d) => {
                println!("skip {name}: {:?}", d.items.first().map(|i| &i.message));
                return None;
            }
        };
        let graph = program.networks[0].graph.clone()?;
        let data = &program.datasets[0].data;
        let d: usize = data.shape.iter().product();
        let have = data.labels.len();
        let x = Array2::from_shape_fn((n, d), |(i, k)| data.images[(i % have) * d + k]);
        let labels = (0..n).map(|i| data.labels[i % have]).collect();
        Some((graph, x, labels))
    }

    fn mnist(arch: &str, model: &str, n: usize) -> Option<(Graph, Array2<f64>, Vec<usize>)> {
        let spec = format!(
            "use std::nets::{arch}\nnetwork net = {arch}() weights \"{}\"\n\
             dataset digits = npz(\"{}\") | scale 1/255\n",
            abs(&format!("models/mnist/{model}.safetensors")).display(),
            abs("data/mnist/heldout.npz").display()
        );
        spec_graph(model, &spec, n)
    }

    fn resnet(shared: &Path, which: &str, n: usize) -> Option<(Graph, Array2<f64>, Vec<usize>)> {
        let onnx = shared.join(format!("vnncomp2021/cifar10_resnet/onnx/{which}.onnx"));
        let csv = shared.join("eran/cifar10_test.csv");
        if !onnx.is_file() || !csv.is_file() {
            println!("skip {which}: {} not found", onnx.display());
            return None;
        }
        let spec = format!(
            "use std::nets::{which}\nnetwork net = {which}() weights \"{}\"\n\
             dataset cifar = csv(\"{}\", shape: [3, 32, 32], layout: hwc)\n",
            std::fs::canonicalize(&onnx).ok()?.display(),
            std::fs::canonicalize(&csv).ok()?.display()
        );
        spec_graph(which, &spec, n)
    }

    fn abs(p: &str) -> PathBuf {
        std::env::current_dir().unwrap().join(p)
    }

    /// Largest relative difference between two sets of bounds.
    fn max_rel_diff(k: &MarginBounds, c: &MarginBounds) -> f64 {
        let mut worst = 0.0f64;
        for (k, c) in k.samples.iter().zip(&c.samples) {
            let scale = c.a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            let pairs =
                k.a.iter()
                    .zip(c.a.iter())
                    .chain(k.b.iter().zip(c.b.iter()))
                    .chain(k.samplewise_lower.iter().zip(c.samplewise_lower.iter()));
            for (x, y) in pairs {
                let diff = (x - y).abs() / (x.abs().max(y.abs()) + 1e-6 * scale);
                worst = worst.max(diff);
            }
        }
        worst
    }

    fn certified(b: &MarginBounds) -> usize {
        b.samples
            .iter()
            .filter(|s| s.samplewise_lower.iter().all(|&v| v > 0.0))
            .count()
    }

    pub fn main() {
        let args = args();
        std::fs::create_dir_all(&args.out).unwrap();
        let device = match CudaDevice::open() {
            Ok(d) => d,
            Err(e) => {
                println!("kernels bench: {e}");
                std::process::exit(2);
            }
        };
        let card = device.describe();
        println!("device: {card}");
        let mut engine = KernelEngine::new(device);
        let cache = BoundCache::disabled();
        let mut failures = 0;
        let mut checks = Vec::new();

        // 1. Equivalence.
        let mut rng = Rng::new(41);
        let mut cases: Vec<Case> = Vec::new();
        for (name, graph, eps) in [
            ("random_mlp", random_mlp(&mut rng, 20, &[30, 20], 5), 0.1),
            ("random_cnn", random_cnn(&mut rng, [2, 12, 12], 4, 5), 0.03),
            (
                "random_resnet",
                random_resnet(&mut rng, [3, 12, 12], 6, 4),
                0.02,
            ),
        ] {
            let d: usize = graph.input_shape().iter().product();
            let x = Array2::from_shape_fn((16, d), |_| rng.uniform());
            let labels = upcc::attacks::predicted_classes(&graph, x.view()).unwrap();
            cases.push((name.into(), graph, x, labels, eps));
        }
        for (arch, model, n, eps) in [
            ("conv_small", "conv_small_pgd32", 50, 6.0),
            ("conv_4layer", "conv_4layer_natural", 20, 4.0),
            ("conv_big", "conv_big_pgd32", 4, 16.0),
            ("conv_big", "conv_big_natural", 4, 4.0),
        ] {
            if let Some((g, x, y)) = mnist(arch, model, n) {
                cases.push((model.into(), g, x, y, eps / 255.0));
            }
        }
        for which in ["resnet_2b", "resnet_4b"] {
            if let Some((g, x, y)) = resnet(&args.shared, which, 4) {
                cases.push((which.into(), g, x, y, 1.0 / 255.0));
            }
        }
        if !args.checks {
            cases.clear();
        }
        for (name, graph, x, labels, eps) in &cases {
            let delta = DeltaBox::linf(x.ncols(), *eps);
            for method in [BoundMethod::Ibp, BoundMethod::Crown] {
                let cpu = margin_bounds(graph, x.view(), labels, &delta, &method).unwrap();
                let gpu = margin_bounds_on(
                    &mut engine,
                    graph,
                    x.view(),
                    labels,
                    &delta,
                    &method,
                    &cache,
                )
                .unwrap();
                let diff = max_rel_diff(&gpu, &cpu);
                let ok = diff <= 1e-5 && certified(&gpu) == certified(&cpu);
                failures += usize::from(!ok);
                println!(
                    "check {name} {method:?} n={}: max rel diff {diff:.2e}, certified gpu {} cpu {} {}",
                    x.nrows(),
                    certified(&gpu),
                    certified(&cpu),
                    if ok { "PASS" } else { "FAIL" }
                );
                checks.push(
                    json!({"model": name, "method": format!("{method:?}"), "n": x.nrows(),
                    "max_rel_diff": diff, "pass": ok}),
                );
            }
        }

        // 2. Throughput.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(args.cpu_threads)
            .build()
            .unwrap();
        let mut rows = Vec::new();
        let biggest = *args.sizes.iter().max().unwrap_or(&100);
        let workloads = [
            (
                "conv_big_natural",
                4.0,
                mnist("conv_big", "conv_big_natural", biggest),
            ),
            ("resnet_4b", 1.0, resnet(&args.shared, "resnet_4b", biggest)),
        ];
        for (name, eps, loaded) in workloads {
            if args.only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let Some((graph, x, labels)) = loaded else {
                continue;
            };
            let delta = DeltaBox::linf(x.ncols(), eps / 255.0);
            let m = args.cpu_n.min(x.nrows());
            let xc = x.slice(ndarray::s![..m, ..]).to_owned();
            let start = Instant::now();
            let cpu = pool
                .install(|| {
                    margin_bounds(&graph, xc.view(), &labels[..m], &delta, &BoundMethod::Crown)
                })
                .unwrap();
            let cpu_s = start.elapsed().as_secs_f64();
            let cpu_rate = m as f64 / cpu_s;
            println!(
                "{name}: CPU {} threads, n={m}: {cpu_s:.2} s ({cpu_rate:.3} samples/s)",
                args.cpu_threads
            );
            let mut last: Option<(usize, f64)> = None;
            for &n in &args.sizes {
                if let Some((prev_n, prev_s)) = last {
                    let projected = prev_s * n as f64 / prev_n as f64;
                    if projected > args.max_seconds {
                        println!("{name}: GPU n={n} skipped: projected {projected:.0} s");
                        continue;
                    }
                }
                let xs = x.slice(ndarray::s![..n, ..]).to_owned();
                let start = Instant::now();
                let gpu = margin_bounds_on(
                    &mut engine,
                    &graph,
                    xs.view(),
                    &labels[..n],
                    &delta,
                    &BoundMethod::Crown,
                    &cache,
                )
                .unwrap();
                let gpu_s = start.elapsed().as_secs_f64();
                let gpu_rate = n as f64 / gpu_s;
                last = Some((n, gpu_s));
                let head = MarginBounds {
                    samples: gpu.samples[..m.min(n)].to_vec(),
                };
                let diff = max_rel_diff(&head, &cpu);
                failures += usize::from(diff > 1e-5);
                println!(
                    "{name}: GPU n={n}: {gpu_s:.2} s ({gpu_rate:.1} samples/s), {:.1}x the CPU, \
                     sample-wise certified {}/{n}, first {m} agree to {diff:.1e}",
                    gpu_rate / cpu_rate,
                    certified(&gpu)
                );
                rows.push(json!({"model": name, "eps": format!("{eps}/255"), "n": n,
                    "gpu_seconds": gpu_s, "gpu_samples_per_s": gpu_rate,
                    "cpu_threads": args.cpu_threads, "cpu_n": m, "cpu_seconds": cpu_s,
                    "cpu_samples_per_s": cpu_rate, "speedup": gpu_rate / cpu_rate,
                    "samplewise_certified": certified(&gpu), "max_rel_diff_first": diff}));
            }
        }
        let report = json!({"device": card, "checks": checks, "throughput": rows,
            "failures": failures});
        std::fs::write(
            args.out.join("kernels.json"),
            serde_json::to_string_pretty(&report).unwrap(),
        )
        .unwrap();
        let mut md = format!(
            "Device: {card}\n\n| model | n | GPU s | GPU samples/s | CPU ({} threads) samples/s | speed-up |\n|---|---|---|---|---|---|\n",
            args.cpu_threads
        );
        for r in &rows {
            md.push_str(&format!(
                "| {} | {} | {:.2} | {:.1} | {:.3} | {:.0}× |\n",
                r["model"].as_str().unwrap(),
                r["n"],
                r["gpu_seconds"].as_f64().unwrap(),
                r["gpu_samples_per_s"].as_f64().unwrap(),
                r["cpu_samples_per_s"].as_f64().unwrap(),
                r["speedup"].as_f64().unwrap()
            ));
        }
        std::fs::write(args.out.join("kernels.md"), &md).unwrap();
        println!("{md}");
        if failures > 0 {
            println!("{failures} check(s) FAILED");
            std::process::exit(1);
        }
    }
}
