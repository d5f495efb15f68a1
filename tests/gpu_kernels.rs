//! The emitted CUDA kernels, compiled for the host through `host_shim.h` with the `cc` crate's
//! compiler, must reproduce the CPU engine (the oracle) to 1e-5 relative: on random networks of
//! every op, with memory budgets small enough to force chunking, and on shipped models with real
//! digits (issue 9 §3). The same driver code runs them as on a GPU; only the device differs.

use ndarray::Array2;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use upcc::engine::cpu::margin_bounds;
use upcc::engine::gpu::{
    codegen, margin_bounds_on, DeviceBuffer, KernelDevice, KernelEngine, KernelSource, LaunchArgs,
    HOST_SHIM,
};
use upcc::engine::{BoundCache, BoundMethod, DeltaBox, EngineError, MarginBounds};
use upcc::ir::build::{random_cnn, random_mlp, random_resnet, Rng};
use upcc::ir::Graph;
use upcc::semantics::check_file;

type RawKernel = unsafe extern "C" fn(
    *mut f64,
    *mut f64,
    *mut f64,
    *mut f64,
    *mut f64,
    *mut f64,
    *mut f64,
    *mut f64,
    *const i64,
    i64,
    i64,
);
type HostLaunch = unsafe extern "C" fn(RawKernel, *const *mut f64, *const i64, i64, i64);

enum Storage {
    Real(Vec<f64>),
    Index(Vec<i64>),
}

/// Runs emitted kernels on the CPU: each module is compiled to a shared library and loaded.
struct HostDevice {
    dir: PathBuf,
    budget: usize,
    modules: Vec<(libloading::Library, HashMap<String, RawKernel>, HostLaunch)>,
    slots: Vec<Option<Storage>>,
    launches: usize,
}

static MODULES: AtomicUsize = AtomicUsize::new(0);

impl HostDevice {
    fn new(budget: usize) -> Self {
        let dir = std::env::temp_dir().join(format!("upcc-host-kernels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        HostDevice {
            dir,
            budget,
            modules: Vec::new(),
            slots: Vec::new(),
            launches: 0,
        }
    }

    fn put(&mut self, s: Storage) -> DeviceBuffer {
        let (addr, len) = match &s {
            Storage::Real(v) => (v.as_ptr() as u64, v.len()),
            Storage::Index(v) => (v.as_ptr() as u64, v.len()),
        };
        self.slots.push(Some(s));
        DeviceBuffer {
            addr,
            len,
            slot: self.slots.len() - 1,
        }
    }
}

/// Builds `source` (with the shim) into a shared library with the compiler `cc` picks.
fn compile_host(dir: &Path, source: &str) -> PathBuf {
    let n = MODULES.fetch_add(1, Ordering::Relaxed);
    std::fs::write(dir.join("upcc_host_shim.h"), HOST_SHIM).unwrap();
    let cpp = dir.join(format!("module_{n}.cpp"));
    std::fs::write(&cpp, format!("#include \"upcc_host_shim.h\"\n{source}")).unwrap();
    let lib = dir.join(format!("module_{n}.so"));
    let target = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let compiler = cc::Build::new()
        .cpp(true)
        .opt_level(2)
        .host(&target)
        .target(&target)
        .cargo_metadata(false)
        .get_compiler();
    let status = compiler
        .to_command()
        .args(["-shared", "-fPIC", "-w", "-o"])
        .arg(&lib)
        .arg(&cpp)
        .status()
        .expect("the C++ compiler runs");
    assert!(status.success(), "emitted kernels do not compile as C++");
    lib
}

impl KernelDevice for HostDevice {
    fn describe(&self) -> String {
        "host (emitted kernels as C++)".into()
    }

    fn memory_budget(&self) -> usize {
        self.budget
    }

    fn load(&mut self, source: &KernelSource) -> Result<usize, EngineError> {
        let path = compile_host(&self.dir, &source.source);
        // SAFETY: the library is ours, built just now from the emitted source and the shim.
        unsafe {
            let lib = libloading::Library::new(&path).unwrap();
            let mut kernels = HashMap::new();
            for name in &source.kernels {
                let f: libloading::Symbol<RawKernel> = lib.get(name.as_bytes()).unwrap();
                kernels.insert(name.clone(), *f);
            }
            let launch: libloading::Symbol<HostLaunch> = lib.get(b"upcc_host_launch").unwrap();
            let launch = *launch;
            self.modules.push((lib, kernels, launch));
        }
        Ok(self.modules.len() - 1)
    }

    fn alloc(&mut self, len: usize) -> Result<DeviceBuffer, EngineError> {
        Ok(self.put(Storage::Real(vec![0.0; len])))
    }

    fn upload(&mut self, data: &[f64]) -> Result<DeviceBuffer, EngineError> {
        Ok(self.put(Storage::Real(data.to_vec())))
    }

    fn upload_index(&mut self, data: &[i64]) -> Result<DeviceBuffer, EngineError> {
        Ok(self.put(Storage::Index(data.to_vec())))
    }

    fn download(&mut self, buffer: &DeviceBuffer) -> Result<Vec<f64>, EngineError> {
        match &self.slots[buffer.slot] {
            Some(Storage::Real(v)) => Ok(v.clone()),
            _ => Err(EngineError::Device("not an f64 buffer".into())),
        }
    }

    fn free(&mut self, buffer: DeviceBuffer) {
        assert!(
            self.slots[buffer.slot].take().is_some(),
            "buffer freed twice"
        );
    }

    fn launch(&mut self, module: usize, kernel: &str, args: LaunchArgs) -> Result<(), EngineError> {
        let (_, kernels, launch) = &self.modules[module];
        let f = *kernels
            .get(kernel)
            .ok_or_else(|| EngineError::Device(format!("no kernel `{kernel}`")))?;
        let pointers: Vec<*mut f64> = args.pointers.iter().map(|&p| p as *mut f64).collect();
        self.launches += 1;
        // SAFETY: the engine passes live buffers sized for the kernel's ABI.
        unsafe {
            launch(
                f,
                pointers.as_ptr(),
                args.idx as *const i64,
                args.cols,
                args.total,
            )
        };
        Ok(())
    }
}

fn close(ours: f64, oracle: f64, scale: f64) -> bool {
    (ours - oracle).abs() <= 1e-5 * (oracle.abs().max(ours.abs()) + 1e-6 * scale)
}

/// Every a, b and sample-wise bound of `kernels` within 1e-5 relative of the CPU oracle.
fn assert_agree(kernels: &MarginBounds, cpu: &MarginBounds, what: &str) {
    assert_eq!(kernels.samples.len(), cpu.samples.len());
    for (i, (k, c)) in kernels.samples.iter().zip(&cpu.samples).enumerate() {
        assert_eq!(k.others, c.others);
        let scale = c.a.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (x, y) in k.a.iter().zip(c.a.iter()) {
            assert!(close(*x, *y, scale), "{what}: sample {i}: a {x} vs {y}");
        }
        for (x, y) in k.b.iter().zip(c.b.iter()) {
            assert!(close(*x, *y, scale), "{what}: sample {i}: b {x} vs {y}");
        }
        for (x, y) in k.samplewise_lower.iter().zip(c.samplewise_lower.iter()) {
            assert!(close(*x, *y, scale), "{what}: sample {i}: lower {x} vs {y}");
        }
    }
}

fn check_network(graph: &Graph, x: &Array2<f64>, eps: f64, budget: usize, what: &str) {
    let labels = upcc::attacks::predicted_classes(graph, x.view()).unwrap();
    let delta = DeltaBox::linf(x.ncols(), eps);
    let mut engine = KernelEngine::new(HostDevice::new(budget));
    let cache = BoundCache::disabled();
    for method in [
        BoundMethod::Ibp,
        BoundMethod::Crown,
        BoundMethod::AlphaCrown {
            iterations: 3,
            learning_rate: 0.1,
        },
    ] {
        let cpu = margin_bounds(graph, x.view(), &labels, &delta, &method).unwrap();
        let ours = margin_bounds_on(
            &mut engine,
            graph,
            x.view(),
            &labels,
            &delta,
            &method,
            &cache,
        )
        .unwrap();
        assert_agree(&ours, &cpu, &format!("{what} {method:?}"));
    }
    assert!(engine.device.launches > 0);
}

#[test]
fn emitted_kernels_match_the_cpu_engine_on_random_networks() {
    let mut rng = Rng::new(41);
    let mlp = random_mlp(&mut rng, 6, &[9, 7], 4);
    let cnn = random_cnn(&mut rng, [2, 8, 8], 3, 5);
    let resnet = random_resnet(&mut rng, [3, 8, 8], 4, 3);
    for (graph, eps, name) in [
        (&mlp, 0.2, "mlp"),
        (&cnn, 0.05, "cnn"),
        (&resnet, 0.03, "resnet"),
    ] {
        let d: usize = graph.input_shape().iter().product();
        let x = Array2::from_shape_fn((5, d), |_| rng.uniform());
        // Roomy: one chunk. Tight: a few samples and rows per launch batch.
        check_network(graph, &x, eps, 1 << 28, &format!("{name} (one chunk)"));
        check_network(graph, &x, eps, 20_000, &format!("{name} (chunked)"));
    }
}

/// A network and the first `n` samples of a dataset through the front end.
fn from_spec(name: &str, spec: &str, n: usize) -> Option<(Graph, Array2<f64>)> {
    let dir = std::env::temp_dir().join(format!("upcc-gpu-kernels-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.upc"));
    std::fs::write(&path, spec).unwrap();
    let (_, checked) = check_file(&path);
    let program = match checked {
        Ok(p) => p,
        Err(d) => {
            println!("SKIPPED {name}: {:?}", d.items.first().map(|i| &i.message));
            return None;
        }
    };
    let graph = program.networks[0].graph.clone()?;
    let data = &program.datasets[0].data;
    let d: usize = data.shape.iter().product();
    let x = Array2::from_shape_vec((n, d), data.images[..n * d].to_vec()).unwrap();
    Some((graph, x))
}

#[test]
fn emitted_kernels_match_the_cpu_engine_on_shipped_models_and_real_digits() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for model in ["conv_small_pgd32", "conv_4layer_natural"] {
        let arch = if model.starts_with("conv_small") {
            "conv_small"
        } else {
            "conv_4layer"
        };
        let spec = format!(
            "use std::nets::{arch}\nnetwork net = {arch}() weights \"{}\"\n\
             dataset digits = npz(\"{}\") | scale 1/255\n",
            root.join(format!("models/mnist/{model}.safetensors"))
                .display(),
            root.join("data/mnist/heldout.npz").display()
        );
        let Some((graph, x)) = from_spec(model, &spec, 3) else {
            continue;
        };
        check_network(&graph, &x, 6.0 / 255.0, 1 << 27, model);
    }
}

/// CROWN alone (the slow models), host kernels against the CPU engine; prints the host time.
fn crown_agrees(graph: &Graph, x: &Array2<f64>, eps: f64, budget: usize, what: &str) {
    let labels = upcc::attacks::predicted_classes(graph, x.view()).unwrap();
    let delta = DeltaBox::linf(x.ncols(), eps);
    let mut engine = KernelEngine::new(HostDevice::new(budget));
    let start = std::time::Instant::now();
    let ours = margin_bounds_on(
        &mut engine,
        graph,
        x.view(),
        &labels,
        &delta,
        &BoundMethod::Crown,
        &BoundCache::disabled(),
    )
    .unwrap();
    println!(
        "{what}: host kernels {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let cpu = margin_bounds(graph, x.view(), &labels, &delta, &BoundMethod::Crown).unwrap();
    assert_agree(&ours, &cpu, what);
}

#[test]
fn emitted_kernels_match_the_cpu_engine_on_resnet_2b() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shared = root.join("../shared/external");
    if !shared.is_dir() {
        println!("SKIPPED: ../shared/external is absent");
        return;
    }
    let spec = format!(
        "use std::nets::resnet_2b\nnetwork net = resnet_2b() weights \"{}\"\n\
         dataset cifar = csv(\"{}\", shape: [3, 32, 32], layout: hwc)\n",
        shared
            .join("vnncomp2021/cifar10_resnet/onnx/resnet_2b.onnx")
            .display(),
        shared.join("eran/cifar10_test.csv").display()
    );
    let Some((graph, x)) = from_spec("resnet_2b", &spec, 1) else {
        return;
    };
    crown_agrees(&graph, &x, 1.0 / 255.0, 1 << 28, "resnet_2b");
}

/// The kernel engine fills and reuses the same intermediate-bound cache as the CPU engine.
#[test]
fn kernel_engine_shares_the_bound_cache() {
    let mut rng = Rng::new(5);
    let graph = random_cnn(&mut rng, [1, 6, 6], 2, 3);
    let x = Array2::from_shape_fn((4, 36), |_| rng.uniform());
    let labels = upcc::attacks::predicted_classes(&graph, x.view()).unwrap();
    let delta = DeltaBox::linf(36, 0.05);
    let cache = BoundCache::in_memory();
    let mut engine = KernelEngine::new(HostDevice::new(1 << 26));
    let first = margin_bounds_on(
        &mut engine,
        &graph,
        x.view(),
        &labels,
        &delta,
        &BoundMethod::Crown,
        &cache,
    )
    .unwrap();
    assert_eq!(cache.stats().computed, 4);
    let again = margin_bounds_on(
        &mut engine,
        &graph,
        x.view(),
        &labels,
        &delta,
        &BoundMethod::Crown,
        &cache,
    )
    .unwrap();
    assert_eq!(cache.stats().computed, 4);
    assert_eq!(cache.stats().memory_hits, 4);
    assert_eq!(first, again);
}

/// What the code generator emits for a tiny network with every op kind.
#[test]
fn emitted_source_snapshot() {
    let mut rng = Rng::new(3);
    let cnn = random_cnn(&mut rng, [1, 5, 5], 2, 3);
    let resnet = random_resnet(&mut rng, [1, 4, 4], 2, 2);
    let emitted = codegen::emit(&cnn);
    insta::assert_snapshot!("emitted_cnn", emitted.source);
    let emitted = codegen::emit(&resnet);
    insta::assert_snapshot!("emitted_resnet_kernel_names", emitted.kernels.join("\n"));
}

/// Conv-big (natural, 2 digits, 4/255) through the host-compiled kernels against the CPU engine;
/// slow (about 90 s in release), so run by hand:
/// `cargo test --release --test gpu_kernels conv_big -- --ignored --nocapture`.
#[test]
#[ignore]
fn emitted_kernels_match_the_cpu_engine_on_conv_big() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = format!(
        "use std::nets::conv_big\nnetwork net = conv_big() weights \"{}\"\n\
         dataset digits = npz(\"{}\") | scale 1/255\n",
        root.join("models/mnist/conv_big_natural.safetensors")
            .display(),
        root.join("data/mnist/heldout.npz").display()
    );
    let Some((graph, x)) = from_spec("conv_big", &spec, 2) else {
        return;
    };
    crown_agrees(&graph, &x, 4.0 / 255.0, 1 << 30, "conv_big");
}
