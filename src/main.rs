//! The `upcc` command line.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use upcc::diagnostics::{codes, render_ariadne, render_json, Diagnostic};
use upcc::driver::command::{run_verify, OutputFormat, VerifyArgs};
use upcc::engine::gpu::DeviceChoice;
use upcc::engine::RowPrecision;
use upcc::semantics;
use upcc::source::SourceMap;

/// mimalloc keeps freed pages for reuse (see `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "upcc",
    version,
    about = "Certify neural networks against universal perturbations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum MessageFormat {
    Human,
    Json,
}

#[derive(clap::Args)]
struct OutputArgs {
    /// Colour in diagnostics (auto: only when stderr is a terminal).
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    /// `json`: one JSON object per diagnostic on stdout, for editors.
    #[arg(long, value_enum, default_value_t = MessageFormat::Human)]
    message_format: MessageFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, resolve and shape-check a spec, bind weights and data; no bounds are computed.
    Check {
        spec: PathBuf,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Theorem 2: t*(ξ, n) for several n, and the population bound CRR − t* for a given CRR.
    Population {
        /// ξ: the bound holds with probability 1 − ξ.
        #[arg(long, default_value_t = 0.1)]
        xi: f64,
        /// Sample counts, comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = vec![10usize, 30, 100, 300, 1000, 3000, 10000])]
        n: Vec<usize>,
        /// A certified robust rate in [0, 1] to turn into population bounds.
        #[arg(long)]
        crr: Option<f64>,
    },
    /// Language server over stdio (diagnostics, hover, definition, symbols, completion).
    Lsp,
    /// Print the long explanation of a diagnostic code, e.g. `upcc explain E0211`.
    Explain { code: String },
    /// Certify every property: bounds, MILP, attacks, population bound; print a report.
    Verify {
        spec: PathBuf,
        /// `json`: one JSON report on stdout.
        #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
        format: ReportFormat,
        /// Also write the JSON, sweep plots (SVG) and perturbations (.npy, .png) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not read or write the on-disk bound cache.
        #[arg(long)]
        no_cache: bool,
        /// Where bounds are computed: `cuda` fails (exit 2) without a CUDA device, `auto` falls
        /// back to the CPU.
        #[arg(long, value_enum, default_value_t = Device::Cpu)]
        device: Device,
        /// Scalar of the CPU engine's rows for conv layers' intermediate bounds: `f32` runs
        /// 1.3–1.8× as fast on Conv-big, its rounding charged to the bounds (sound, slightly
        /// looser); `f64` is CROWN as auto_LiRPA computes it.
        #[arg(long, value_enum, default_value_t = Rows::F64)]
        rows: Rows,
        /// Threads for bounds, attacks and replay (one sample per thread); default: one per
        /// core, or `RAYON_NUM_THREADS`.
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
        threads: Option<u16>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Device {
    Cpu,
    Cuda,
    Auto,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Rows {
    F64,
    F32,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum ReportFormat {
    Table,
    Json,
}

/// Exit codes: 0 ok, 1 errors reported, 2 usage or IO failure.
fn main() -> ExitCode {
    upcc::driver::process::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Check { spec, output } => check(&spec, &output),
        Command::Verify {
            spec,
            format,
            out,
            no_cache,
            device,
            rows,
            threads,
            output,
        } => {
            if let Some(n) = threads {
                // The global pool is built here first, so this cannot fail.
                let _ = rayon::ThreadPoolBuilder::new()
                    .num_threads(usize::from(n))
                    .build_global();
            }
            let args = VerifyArgs {
                spec,
                format: match format {
                    ReportFormat::Table => OutputFormat::Human,
                    ReportFormat::Json => OutputFormat::Json,
                },
                json_diagnostics: output.message_format == MessageFormat::Json,
                color: use_color(output.color),
                out_dir: out,
                no_cache,
                progress: std::io::stderr().is_terminal(),
                device: match device {
                    Device::Cpu => DeviceChoice::Cpu,
                    Device::Cuda => DeviceChoice::Cuda,
                    Device::Auto => DeviceChoice::Auto,
                },
                rows: match rows {
                    Rows::F64 => RowPrecision::F64,
                    Rows::F32 => RowPrecision::F32,
                },
            };
            ExitCode::from(run_verify(&args))
        }
        Command::Population { xi, n, crr } => population(xi, &n, crr),
        Command::Lsp => match upcc::lsp::run_stdio() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: language server: {e}");
                ExitCode::from(2)
            }
        },
        Command::Explain { code } => match codes::explain(&code) {
            Some(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            None => {
                eprintln!("error: no diagnostic code `{code}` (codes look like E0211)");
                ExitCode::from(2)
            }
        },
    }
}

fn population(xi: f64, sizes: &[usize], crr: Option<f64>) -> ExitCode {
    if let Some(rate) = crr.filter(|r| !(0.0..=1.0).contains(r)) {
        eprintln!("error: --crr {rate} is not in [0, 1]");
        return ExitCode::from(2);
    }
    println!(
        "{:>8}  {:>10}{}",
        "n",
        "t*(ξ, n)",
        if crr.is_some() {
            "  ARP ≥ CRR − t*"
        } else {
            ""
        }
    );
    for &n in sizes {
        match upcc::population::t_star(xi, n) {
            Ok(t) => match crr {
                Some(rate) => println!("{n:>8}  {t:>10.6}  {:>15.4}", (rate - t).max(0.0)),
                None => println!("{n:>8}  {t:>10.6}"),
            },
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    ExitCode::SUCCESS
}

fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal(),
    }
}

fn emit(sources: &SourceMap, diags: &[Diagnostic], output: &OutputArgs) {
    if diags.is_empty() {
        return;
    }
    match output.message_format {
        MessageFormat::Json => print!("{}", render_json(sources, diags)),
        MessageFormat::Human => {
            eprint!(
                "{}",
                render_ariadne(sources, diags, use_color(output.color))
            );
        }
    }
}

fn check(spec: &std::path::Path, output: &OutputArgs) -> ExitCode {
    if !spec.is_file() {
        eprintln!("error: cannot read `{}`: no such file", spec.display());
        return ExitCode::from(2);
    }
    let (sources, result) = semantics::check_file(spec);
    match result {
        Ok(program) => {
            emit(&sources, &program.warnings, output);
            if output.message_format == MessageFormat::Human {
                eprintln!(
                    "checked `{}`: {} network(s), {} dataset(s), {} perturbation(s), {} propert{}",
                    spec.display(),
                    program.networks.len(),
                    program.datasets.len(),
                    program.perturbations.len(),
                    program.properties.len(),
                    if program.properties.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    }
                );
            }
            ExitCode::SUCCESS
        }
        Err(diags) => {
            emit(&sources, &diags.items, output);
            ExitCode::from(1)
        }
    }
}
