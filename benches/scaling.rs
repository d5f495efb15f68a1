//! Scaling benchmark (issue 8): the whole `upcc verify` pipeline (clean pass, CROWN bounds, MILP,
//! replay) on the paper's five architectures, for n ∈ {10, 100, 1000} and the examples' ε. Each
//! configuration runs in a fresh child process, so its peak RSS is its own. With `--reference
//! PYTHON` the paper's pipeline (tools/reference/run_reference.py: auto_LiRPA CROWN + HiGHS) runs
//! on the same model and samples right after upcc, in the same run, for a side-by-side table.
//!
//! cargo bench --bench scaling -- [--models conv_small_natural,resnet_2b] [--n 10,100]
//!     [--reference .venv-lirpa/bin/python] [--reference-max-n 100] [--solver microlp|highs]
//!     [--time-limit 60] [--timeout 900] [--device cpu|cuda|auto]
//!
//! `--device` picks the bound engine of every upcc run (`cuda` needs `--features cuda` and a GPU).
//!
//! Writes `target/bench-scaling/results.json`, `table.md`, `scaling_n.svg` and `scaling_eps.svg`, and
//! prints the table. `--replot results.json` redraws the plots from a saved run.

use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use upcc::attacks::AttackOptions;
use upcc::driver::process::{cpu_seconds, peak_rss_mb};
use upcc::driver::verify::{verify, VerifyOptions};
use upcc::engine::gpu::{BoundEngine, DeviceChoice};
use upcc::engine::linop::GEMM_FLOPS;
use upcc::engine::BoundCache;
use upcc::semantics::check_file;

/// A model of the grid: where its weights and data live and the examples' radii.
struct Model {
    name: &'static str,
    arch: &'static str,
    /// Relative to the repository (`models/...`) or to `../shared` (`external/...`).
    weights: &'static str,
    cifar: bool,
    eps: &'static [&'static str],
    /// auto_LiRPA batch size for the reference (Conv-big needs ~2.3 GB per sample there).
    reference_batch: usize,
}

const MODELS: &[Model] = &[
    Model {
        name: "conv_small_natural",
        arch: "conv_small",
        weights: "models/mnist/conv_small_natural.safetensors",
        cifar: false,
        eps: &["4/255", "6/255", "8/255"],
        reference_batch: 100,
    },
    Model {
        name: "conv_small_pgd32",
        arch: "conv_small",
        weights: "models/mnist/conv_small_pgd32.safetensors",
        cifar: false,
        eps: &["16/255", "32/255"],
        reference_batch: 100,
    },
    Model {
        name: "conv_4layer_natural",
        arch: "conv_4layer",
        weights: "models/mnist/conv_4layer_natural.safetensors",
        cifar: false,
        eps: &["4/255", "6/255", "8/255"],
        reference_batch: 100,
    },
    Model {
        name: "conv_4layer_pgd32",
        arch: "conv_4layer",
        weights: "models/mnist/conv_4layer_pgd32.safetensors",
        cifar: false,
        eps: &["16/255", "32/255"],
        reference_batch: 100,
    },
    Model {
        name: "conv_big_natural",
        arch: "conv_big",
        weights: "models/mnist/conv_big_natural.safetensors",
        cifar: false,
        eps: &["4/255", "6/255", "8/255"],
        reference_batch: 1,
    },
    Model {
        name: "conv_big_pgd32",
        arch: "conv_big",
        weights: "models/mnist/conv_big_pgd32.safetensors",
        cifar: false,
        eps: &["16/255", "32/255"],
        reference_batch: 1,
    },
    Model {
        name: "resnet_2b",
        arch: "resnet_2b",
        weights: "external/vnncomp2021/cifar10_resnet/onnx/resnet_2b.onnx",
        cifar: true,
        eps: &["1/255", "3/255"],
        reference_batch: 10,
    },
    Model {
        name: "resnet_4b",
        arch: "resnet_4b",
        weights: "external/vnncomp2021/cifar10_resnet/onnx/resnet_4b.onnx",
        cifar: true,
        eps: &["1/255", "3/255"],
        reference_batch: 10,
    },
];

const ERAN_CIFAR: &str = "external/eran/cifar10_test.csv";

/// The checkout: where the bench was built, else (a binary carried elsewhere) the current folder.
fn root() -> PathBuf {
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if built.join("models").is_dir() {
        built
    } else {
        std::env::current_dir().expect("a current folder")
    }
}

fn shared() -> PathBuf {
    std::env::var_os("UPCC_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("../shared"))
}

fn weights_path(model: &Model) -> PathBuf {
    if model.cifar {
        shared().join(model.weights)
    } else {
        root().join(model.weights)
    }
}

fn spec(model: &Model, n: usize, solver: &str, time_limit: u64) -> String {
    let dataset = if model.cifar {
        format!(
            "csv(\"{}\", shape: [3, 32, 32], layout: hwc)",
            shared().join(ERAN_CIFAR).display()
        )
    } else {
        format!(
            "npz(\"{}\") | scale 1/255",
            root().join("data/mnist/heldout.npz").display()
        )
    };
    format!(
        "use std::nets::{arch}\n\
         network net = {arch}() weights \"{weights}\"\n\
         dataset data = {dataset} | first {n}\n\
         perturbation up = universal linf eps [{eps}]\n\
         property p = certify accuracy of net on data under up {{\n\
             compare: samplewise, solver: {solver}(time_limit: {time_limit}s)\n\
         }}\n",
        arch = model.arch,
        weights = weights_path(model).display(),
        eps = model.eps.join(", "),
    )
}

/// One configuration, in this (child) process: prints one `RESULT {json}` line.
fn run_child(model: &Model, n: usize, solver: &str, time_limit: u64) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("upcc-bench-scaling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("spec.upc");
    std::fs::write(&path, spec(model, n, solver, time_limit)).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let (_, checked) = check_file(&path);
    let program = checked.map_err(|d| format!("{:?}", d.items))?;
    let check_seconds = start.elapsed().as_secs_f64();
    let device = match std::env::var("UPCC_BENCH_DEVICE").as_deref() {
        Ok("cuda") => DeviceChoice::Cuda,
        Ok("auto") => DeviceChoice::Auto,
        _ => DeviceChoice::Cpu,
    };
    let (engine, _) = BoundEngine::open(device)?;
    let device_name = engine.describe();
    let options = VerifyOptions {
        engine,
        cache: BoundCache::in_memory(),
        rows: upcc::engine::RowPrecision::F64,
        progress: false,
        attack: AttackOptions::default(),
    };
    GEMM_FLOPS.store(0, Ordering::Relaxed);
    let cpu_before = cpu_seconds().unwrap_or(0.0);
    let run = verify(&program, &options).map_err(|d| format!("{d:?}"))?;
    let cpu = cpu_seconds().unwrap_or(0.0) - cpu_before;
    let _ = std::fs::remove_dir_all(&dir);
    let gflop = GEMM_FLOPS.load(Ordering::Relaxed) as f64 / 1e9;
    let out = json!({
        "model": model.name,
        "n": n,
        "solver": solver,
        "device": device_name,
        "check_seconds": check_seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": peak_rss_mb(),
        "gemm_gflop": gflop,
        "rows": run.report.results,
    });
    println!("RESULT {out}");
    Ok(())
}

/// Runs `command`, killing it after `timeout`; returns its stdout, or why not.
fn run_with_timeout(mut command: Command, timeout: Duration) -> Result<String, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => {
                let text = reader.join().unwrap_or_default();
                return if status.success() {
                    Ok(text)
                } else {
                    Err(format!("exited with {status}"))
                };
            }
            None if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {} s", timeout.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn result_line(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|l| serde_json::from_str(l).ok())
}

/// run_reference.py names the shared ResNets `shared:<path under external/>` (with `--shared`).
fn reference_model_arg(model: &Model) -> String {
    match model.weights.strip_prefix("external/") {
        Some(rel) if model.cifar => format!("shared:{rel}"),
        _ => weights_path(model).display().to_string(),
    }
}

/// The paper's pipeline on the same model and first-n samples: one JSON object per ε.
fn run_reference(
    python: &str,
    model: &Model,
    n: usize,
    time_limit: u64,
    timeout: Duration,
) -> Result<Vec<Value>, String> {
    let mut command = Command::new(python);
    command
        .arg(root().join("tools/reference/run_reference.py"))
        .arg("--model")
        .arg(reference_model_arg(model))
        .arg("--n")
        .arg(n.to_string())
        .arg("--threads")
        .arg(rayon::current_num_threads().to_string())
        .arg("--time-limit")
        .arg(time_limit.to_string())
        .arg("--batch")
        .arg(model.reference_batch.to_string())
        .arg("--eps")
        .args(model.eps);
    if model.cifar {
        command.arg("--shared").arg(shared());
    }
    let stdout = run_with_timeout(command, timeout)?;
    Ok(stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// The machine's peak f64 rate: cores × clock × FLOPs per cycle (2 FMA units × 4 lanes × 2 with
/// AVX2+FMA, 8 lanes with AVX-512), from /proc/cpuinfo.
fn machine_peak_gflops() -> Option<(f64, String)> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field = |key: &str| {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    let mhz: f64 = field("cpu MHz")?.parse().ok()?;
    let flags = field("flags").unwrap_or_default();
    let per_cycle = if flags.contains("avx512f") {
        32.0
    } else if flags.contains("avx2") && flags.contains("fma") {
        16.0
    } else {
        4.0
    };
    let cores = rayon::current_num_threads() as f64;
    let peak = cores * mhz / 1000.0 * per_cycle;
    let how = format!(
        "{} × {:.2} GHz × {per_cycle} f64 FLOP/cycle ({})",
        cores,
        mhz / 1000.0,
        field("model name").unwrap_or_default()
    );
    Some((peak, how))
}

struct Args {
    models: Vec<&'static Model>,
    ns: Vec<usize>,
    reference: Option<String>,
    /// The reference runs only up to this n (auto_LiRPA needs ~1.6 GB and ~75 s per 100 samples).
    reference_max_n: usize,
    solver: String,
    time_limit: u64,
    timeout: Duration,
    device: String,
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut args = Args {
        models: MODELS.iter().collect(),
        ns: vec![10, 100, 1000],
        reference: None,
        reference_max_n: 100,
        solver: "microlp".into(),
        time_limit: 60,
        timeout: Duration::from_secs(900),
        device: "cpu".into(),
    };
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--models" => {
                let names = value()?;
                args.models = names
                    .split(',')
                    .map(|name| {
                        MODELS
                            .iter()
                            .find(|m| m.name == name)
                            .ok_or(format!("unknown model `{name}`"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--n" => {
                args.ns = value()?
                    .split(',')
                    .map(|v| v.parse().map_err(|_| format!("bad n `{v}`")))
                    .collect::<Result<_, _>>()?
            }
            "--reference" => args.reference = Some(value()?),
            "--reference-max-n" => {
                args.reference_max_n = value()?.parse().map_err(|_| "bad --reference-max-n")?
            }
            "--solver" => args.solver = value()?,
            "--time-limit" => args.time_limit = value()?.parse().map_err(|_| "bad time limit")?,
            "--timeout" => {
                args.timeout =
                    Duration::from_secs(value()?.parse().map_err(|_| "bad timeout".to_string())?)
            }
            "--device" => args.device = value()?,
            "--bench" => {}
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

fn stage(row: &Value, name: &str) -> f64 {
    row["seconds"][name].as_f64().unwrap_or(0.0)
}

fn fmt_seconds(s: f64) -> String {
    if s < 10.0 {
        format!("{s:.2}")
    } else {
        format!("{s:.0}")
    }
}

/// The `upcc` binary's allocator, so the timings are the binary's (the system allocator
/// page-faults the engine's large temporaries anew on every step).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    upcc::driver::process::keep_freed_memory();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().map(String::as_str) == Some("--child") {
        let model = MODELS.iter().find(|m| m.name == argv[1]).expect("model");
        let n: usize = argv[2].parse().expect("n");
        let time_limit: u64 = argv[4].parse().expect("time limit");
        if let Err(e) = run_child(model, n, &argv[3], time_limit) {
            eprintln!("{}: {e}", model.name);
            std::process::exit(1);
        }
        return;
    }
    if argv.first().map(String::as_str) == Some("--replot") {
        let mut records = Vec::new();
        for file in &argv[1..] {
            let text = std::fs::read_to_string(file).expect("readable results.json");
            let list: Vec<Value> = serde_json::from_str(&text).expect("a results.json list");
            records.extend(list);
        }
        let out = root().join("target/bench-scaling");
        let _ = std::fs::create_dir_all(&out);
        let _ = std::fs::write(out.join("scaling_n.svg"), scaling_svg(&records));
        let _ = std::fs::write(out.join("scaling_eps.svg"), eps_svg(&records));
        println!("wrote plots of {} runs to {}", records.len(), out.display());
        return;
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let peak = machine_peak_gflops();
    let exe = std::env::current_exe().expect("own path");
    let mut records = Vec::new();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| model | n | ε | upcc sw / univ | MILP | upcc bounds s | upcc MILP s | upcc total s | peak RSS MB | MILP binaries before → after | B&B nodes | GEMM GFLOP/s | ref sw / univ | ref bounds s | ref MILP s | ref RSS MB | bounds ratio | total ratio |"
    );
    let _ = writeln!(table, "|{}", "---|".repeat(18));
    for model in &args.models {
        if !weights_path(model).is_file() {
            println!(
                "SKIPPED {}: {} is absent",
                model.name,
                weights_path(model).display()
            );
            continue;
        }
        for &n in &args.ns {
            if model.cifar && n > 100 {
                println!("SKIPPED {} n={n}: ERAN has 100 CIFAR-10 images", model.name);
                continue;
            }
            eprintln!("== {} n={n}", model.name);
            let mut command = Command::new(&exe);
            command.args([
                "--child",
                model.name,
                &n.to_string(),
                &args.solver,
                &args.time_limit.to_string(),
            ]);
            command.env("UPCC_BENCH_DEVICE", &args.device);
            let wall = Instant::now();
            let ours = run_with_timeout(command, args.timeout)
                .and_then(|out| result_line(&out).ok_or("no RESULT line".into()));
            let wall = wall.elapsed().as_secs_f64();
            let reference = args
                .reference
                .as_ref()
                .filter(|_| n <= args.reference_max_n)
                .map(|python| run_reference(python, model, n, args.time_limit, args.timeout));
            let ours = match ours {
                Ok(v) => {
                    // One line per configuration, so a run cut short still leaves its results.
                    println!("RECORD {v}");
                    v
                }
                Err(e) => {
                    let _ = writeln!(table, "| {} | {n} | all | {e} |", model.name);
                    records.push(json!({"model": model.name, "n": n, "error": e}));
                    continue;
                }
            };
            let rows = ours["rows"].as_array().cloned().unwrap_or_default();
            let bounds_total: f64 = rows.iter().map(|r| stage(r, "bounds")).sum();
            let gflops = ours["gemm_gflop"].as_f64().unwrap_or(0.0) / bounds_total.max(1e-9);
            for (k, row) in rows.iter().enumerate() {
                let eps = row["eps_text"].as_str().unwrap_or("?");
                let milp = &row["milp"];
                let ref_row = match &reference {
                    Some(Ok(list)) => list.iter().find(|r| r["eps"] == eps).cloned(),
                    _ => None,
                };
                let (bounds, milp_s) = (stage(row, "bounds"), stage(row, "milp"));
                let total = row_seconds(row);
                let mut cells = vec![
                    model.name.to_string(),
                    n.to_string(),
                    eps.to_string(),
                    format!(
                        "{} / {}",
                        row["samplewise_certified"], row["universal_certified"]
                    ),
                    row["milp_status"].as_str().unwrap_or("-").to_string(),
                    fmt_seconds(bounds),
                    fmt_seconds(milp_s),
                    fmt_seconds(total),
                    if k == 0 {
                        format!("{:.0}", ours["peak_rss_mb"].as_f64().unwrap_or(0.0))
                    } else {
                        "″".into()
                    },
                    format!(
                        "{} → {}",
                        milp["presolve"]["binaries_before"], milp["presolve"]["binaries_after"]
                    ),
                    milp["nodes"].to_string(),
                    if k == 0 {
                        format!("{gflops:.1}")
                    } else {
                        "″".into()
                    },
                ];
                match &ref_row {
                    Some(r) => {
                        let (rb, rm) = (
                            r["seconds"]["bounds"].as_f64().unwrap_or(0.0),
                            r["seconds"]["milp"].as_f64().unwrap_or(0.0),
                        );
                        cells.extend([
                            format!(
                                "{} / {}",
                                r["samplewise_certified"], r["universal_certified"]
                            ),
                            fmt_seconds(rb),
                            fmt_seconds(rm),
                            format!("{:.0}", r["peak_rss_mb"].as_f64().unwrap_or(0.0)),
                            format!("{:.1}×", rb / bounds.max(1e-9)),
                            format!("{:.1}×", (rb + rm) / total.max(1e-9)),
                        ]);
                    }
                    None => {
                        let why = match &reference {
                            Some(Err(e)) => e.clone(),
                            _ => "-".into(),
                        };
                        cells.extend([
                            why,
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                            "-".into(),
                        ]);
                    }
                }
                let _ = writeln!(table, "| {} |", cells.join(" | "));
            }
            records.push(json!({
                "model": model.name,
                "n": n,
                "wall_seconds": wall,
                "upcc": ours,
                "reference": match &reference {
                    Some(Ok(list)) => Value::from(list.clone()),
                    Some(Err(e)) => Value::from(e.clone()),
                    None => Value::Null,
                },
            }));
        }
    }
    let mut header = String::new();
    let _ = writeln!(
        header,
        "threads: {}, solver: {}, MILP time limit: {} s",
        rayon::current_num_threads(),
        args.solver,
        args.time_limit
    );
    if let Some((gflops, how)) = &peak {
        let _ = writeln!(header, "machine peak: {gflops:.0} GFLOP/s f64 = {how}");
    }
    println!("{header}\n{table}");
    let out = root().join("target/bench-scaling");
    let _ = std::fs::create_dir_all(&out);
    let _ = std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&records).unwrap_or_default(),
    );
    let _ = std::fs::write(out.join("table.md"), format!("{header}\n{table}"));
    let _ = std::fs::write(out.join("scaling_n.svg"), scaling_svg(&records));
    let _ = std::fs::write(out.join("scaling_eps.svg"), eps_svg(&records));
    println!("wrote {}", out.display());
}

/// Row seconds summed over stages.
fn row_seconds(row: &Value) -> f64 {
    row["seconds"]
        .as_object()
        .map(|m| m.values().filter_map(Value::as_f64).sum())
        .unwrap_or(0.0)
}

/// Total upcc seconds (all ε) against n, one line per model.
fn scaling_svg(records: &[Value]) -> String {
    let mut lines: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in records {
        let Some(rows) = r["upcc"]["rows"].as_array() else {
            continue;
        };
        let total: f64 = rows.iter().map(row_seconds).sum();
        let name = r["model"].as_str().unwrap_or("?").to_string();
        let n = r["n"].as_f64().unwrap_or(1.0);
        match lines.iter_mut().find(|(m, _)| *m == name) {
            Some((_, pts)) => pts.push((n, total)),
            None => lines.push((name, vec![(n, total)])),
        }
    }
    let ticks = [10.0, 100.0, 1000.0].map(|n: f64| (n.log10(), format!("n = {n}")));
    let lines: Vec<(String, Vec<(f64, f64)>)> = lines
        .into_iter()
        .map(|(name, pts)| (name, pts.into_iter().map(|(n, s)| (n.log10(), s)).collect()))
        .collect();
    log_seconds_svg("upcc seconds (all ε) against n, log-log", &ticks, &lines)
}

/// A plotted line: its name and (x, seconds) points.
type Line = (String, Vec<(f64, f64)>);

/// Seconds per ε (all stages) at each model's largest n, one line per model.
fn eps_svg(records: &[Value]) -> String {
    // Per model: the n of its line, and the line.
    let mut lines: Vec<(f64, Line)> = Vec::new();
    for r in records {
        let Some(rows) = r["upcc"]["rows"].as_array() else {
            continue;
        };
        let name = r["model"].as_str().unwrap_or("?").to_string();
        let n = r["n"].as_f64().unwrap_or(0.0);
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .map(|row| (row["eps"].as_f64().unwrap_or(0.0) * 255.0, row_seconds(row)))
            .collect();
        let line = (format!("{name} (n = {n})"), pts);
        match lines
            .iter_mut()
            .find(|(_, (m, _))| m.starts_with(&format!("{name} ")))
        {
            Some(entry) if entry.0 < n => *entry = (n, line),
            Some(_) => {}
            None => lines.push((n, line)),
        }
    }
    let ticks: Vec<(f64, String)> = [1.0, 4.0, 8.0, 16.0, 32.0]
        .map(|e: f64| (e, format!("{e}/255")))
        .to_vec();
    let lines: Vec<Line> = lines.into_iter().map(|(_, line)| line).collect();
    log_seconds_svg("upcc seconds per ε at the largest n", &ticks, &lines)
}

/// A line plot with seconds on a log y axis; x positions are the tick values' scale.
fn log_seconds_svg(title: &str, x_ticks: &[(f64, String)], lines: &[Line]) -> String {
    let (w, h, left, right, top, bottom) = (640.0, 400.0, 60.0, 230.0, 30.0, 50.0);
    let ly = |v: f64| v.max(1e-3).log10();
    let all: Vec<f64> = lines
        .iter()
        .flat_map(|(_, p)| p.iter().map(|q| ly(q.1)))
        .collect();
    let y0 = all
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .floor()
        .min(-1.0);
    let y1 = all
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max)
        .ceil()
        .max(y0 + 1.0);
    let x0 = x_ticks.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let x1 = x_ticks
        .iter()
        .map(|t| t.0)
        .fold(f64::NEG_INFINITY, f64::max)
        .max(x0 + 1.0);
    let x = |v: f64| left + (w - left - right) * (v - x0) / (x1 - x0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - (ly(v) - y0) / (y1 - y0));
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    ];
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12"><rect width="{w}" height="{h}" fill="white"/><text x="{left}" y="18">{title}</text>"#
    );
    for e in (y0 as i32)..=(y1 as i32) {
        let v = 10f64.powi(e);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{yy}" y2="{yy}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{v} s</text>"##,
            w - right,
            left - 6.0,
            y(v) + 4.0,
            yy = y(v)
        );
    }
    for (v, label) in x_ticks {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle">{label}</text>"#,
            x(*v),
            h - bottom + 18.0
        );
    }
    for (k, (name, pts)) in lines.iter().enumerate() {
        let c = colors[k % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(v, s)| format!("{:.1},{:.1}", x(*v), y(*s)))
            .collect();
        let legend_y = top + 16.0 * k as f64;
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/><line x1="{}" x2="{}" y1="{legend_y}" y2="{legend_y}" stroke="{c}" stroke-width="2"/><text x="{}" y="{}">{name}</text>"#,
            path.join(" "),
            w - right + 10.0,
            w - right + 30.0,
            w - right + 34.0,
            legend_y + 4.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}
