//! MILP benchmark: solve seconds and node counts of the universal certification MILP.
//!
//! `cargo bench --bench milp` runs random but realistic instances (n = 100, d = 784, 9 pairs
//! per sample; coefficients share per-class directions as CROWN bounds of one network do;
//! biases set so presolve leaves about 100 binaries).
//! `cargo bench --bench milp -- --bounds FILE.json [--eps E]` solves a bounds file instead:
//! `{"eps": E, "samples": [{"label": y, "others": [..], "a": [[..d..], ..], "b": [..]}]}`
//! (a uniform ℓ∞ box of radius eps). `--time-limit S` caps each solve (default 20 s);
//! `--n N --d D` resize the random instances; `--export DIR` writes each presolved model as
//! `.lp` and `.mps`; `--compare-presolve` also solves without presolve.

use std::time::Duration;

use ndarray::{Array1, Array2};
use upcc::engine::{DeltaBox, MarginBounds, SampleBounds};
use upcc::milp::{
    certify_universal, write_lp, write_mps, Microlp, MilpBackend, MilpOptions, UniversalMilp,
};

/// `--backend highs` (needs `--features highs`) or the default microlp.
fn backend() -> Box<dyn MilpBackend> {
    #[cfg(feature = "highs")]
    if std::env::args().any(|a| a == "highs") {
        return Box::new(upcc::milp::Highs);
    }
    Box::new(Microlp)
}

struct Rng(u64);
impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }
}

/// `(label, other classes, a, b)` of one sample.
type RawSample = (usize, Vec<usize>, Array2<f64>, Array1<f64>);

fn build(samples: Vec<RawSample>, bx: &DeltaBox) -> MarginBounds {
    let samples = samples
        .into_iter()
        .map(|(label, others, a, b)| {
            let lower = Array1::from_iter((0..b.len()).map(|r| {
                b[r] + a
                    .row(r)
                    .iter()
                    .zip(&bx.lo)
                    .zip(&bx.hi)
                    .map(|((&x, &l), &h)| (x * l).min(x * h))
                    .sum::<f64>()
            }));
            SampleBounds {
                label,
                others,
                a,
                b,
                samplewise_lower: lower,
            }
        })
        .collect();
    MarginBounds { samples }
}

/// 100 samples over 10 classes; about 65 certified for every δ, 10 broken, 25 undecided
/// with 3 breakable pairs each.
fn random_instance(seed: u64, eps: f64, n: usize, d: usize) -> (MarginBounds, DeltaBox) {
    let k = 10;
    let mut rng = Rng(seed);
    let class_dir: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..d).map(|_| 0.02 * rng.normal()).collect())
        .collect();
    let bx = DeltaBox::linf(d, eps);
    let mut samples = Vec::new();
    for i in 0..n {
        let label = i % k;
        let others: Vec<usize> = (0..k).filter(|&j| j != label).collect();
        let a = Array2::from_shape_fn((k - 1, d), |(r, c)| {
            class_dir[label][c] - class_dir[others[r]][c] + 0.01 * rng.normal()
        });
        let reach: Vec<f64> = (0..k - 1)
            .map(|r| eps * a.row(r).map(|x| x.abs()).sum())
            .collect();
        let kind = rng.uniform();
        let b = Array1::from_iter((0..k - 1).map(|r| {
            let u = rng.uniform();
            if kind < 0.65 || r >= 3 {
                reach[r] * (1.05 + u) // never breaks
            } else if kind < 0.75 && r == 0 {
                -reach[r] * (1.05 + u) // always breaks
            } else {
                reach[r] * (0.1 + 0.8 * u) // breaks for some δ
            }
        }));
        samples.push((label, others, a, b));
    }
    (build(samples, &bx), bx)
}

fn read_bounds(path: &str, eps_override: Option<f64>) -> Result<(MarginBounds, DeltaBox), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let eps = eps_override
        .or_else(|| v["eps"].as_f64())
        .ok_or("no eps in file or on the command line")?;
    let list = v["samples"].as_array().ok_or("no samples array")?;
    let mut d = None;
    let mut samples = Vec::new();
    for s in list {
        let label = s["label"].as_u64().ok_or("bad label")? as usize;
        let others: Vec<usize> = s["others"]
            .as_array()
            .ok_or("bad others")?
            .iter()
            .map(|x| x.as_u64().map(|x| x as usize))
            .collect::<Option<_>>()
            .ok_or("bad others")?;
        let rows: Vec<Vec<f64>> = s["a"]
            .as_array()
            .ok_or("bad a")?
            .iter()
            .map(|r| {
                r.as_array()
                    .map(|r| r.iter().filter_map(|x| x.as_f64()).collect())
            })
            .collect::<Option<_>>()
            .ok_or("bad a")?;
        let dim = rows.first().map_or(0, |r| r.len());
        if *d.get_or_insert(dim) != dim || rows.iter().any(|r| r.len() != dim) {
            return Err("rows of a differ in length".into());
        }
        let a =
            Array2::from_shape_vec((rows.len(), dim), rows.concat()).map_err(|e| e.to_string())?;
        let b: Vec<f64> = s["b"]
            .as_array()
            .ok_or("bad b")?
            .iter()
            .filter_map(|x| x.as_f64())
            .collect();
        samples.push((label, others, a, Array1::from(b)));
    }
    let bx = DeltaBox::linf(d.unwrap_or(0), eps);
    Ok((build(samples, &bx), bx))
}

fn run(name: &str, bounds: &MarginBounds, bx: &DeltaBox, time_limit: Duration) {
    let args: Vec<String> = std::env::args().collect();
    if let Some(dir) = args
        .iter()
        .position(|a| a == "--export")
        .and_then(|i| args.get(i + 1))
    {
        export(name, bounds, bx, dir);
    }
    for no_presolve in [false, true] {
        let opts = MilpOptions {
            time_limit: Some(time_limit),
            no_presolve,
            ..MilpOptions::default()
        };
        match certify_universal(bounds, bx, backend().as_ref(), &opts) {
            Ok(o) => {
                let s = &o.stats;
                println!(
                    "{name} {} presolve={} certified={} samplewise={} status={:?} dual={:.3} incumbent={:?} \
                     at_best_delta={:?} nodes={} seconds={:.3} rows {}->{} binaries {}->{} nonzeros {}->{}",
                    o.backend,
                    !no_presolve,
                    o.certified,
                    s.fixed_certified,
                    o.status,
                    o.dual_bound,
                    o.incumbent_value,
                    o.certified_at_best_delta,
                    o.nodes,
                    o.seconds,
                    s.rows_before,
                    s.rows_after,
                    s.binaries_before,
                    s.binaries_after,
                    s.nonzeros_before,
                    s.nonzeros_after
                );
            }
            Err(e) => println!("{name} presolve={}: error: {e}", !no_presolve),
        }
        if std::env::args().all(|a| a != "--compare-presolve") {
            break;
        }
    }
}

/// Writes the presolved model as `.lp` and `.mps` under `dir` for other solvers.
fn export(name: &str, bounds: &MarginBounds, bx: &DeltaBox, dir: &str) {
    let stem: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let result = UniversalMilp::lower(bounds, bx, true).and_then(|milp| {
        let comment = milp.export_comment();
        let path = format!("{dir}/{stem}");
        let file = |ext: &str| {
            std::fs::File::create(format!("{path}.{ext}"))
                .map(std::io::BufWriter::new)
                .map_err(|e| upcc::milp::MilpError::Io(e.to_string()))
        };
        write_lp(&milp.model, &comment, &mut file("lp")?)?;
        write_mps(&milp.model, &comment, &mut file("mps")?)?;
        println!(
            "{name}: wrote {path}.lp/.mps (fixed certified {})",
            milp.fixed_certified
        );
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("{name}: export failed: {e}");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let time_limit = Duration::from_secs_f64(
        value("--time-limit")
            .and_then(|s| s.parse().ok())
            .unwrap_or(20.0),
    );
    let eps = value("--eps").and_then(|s| s.parse().ok());
    if let Some(path) = value("--bounds") {
        match read_bounds(path, eps) {
            Ok((bounds, bx)) => run(path, &bounds, &bx, time_limit),
            Err(e) => {
                eprintln!("error: {e}");
                std::process::exit(2);
            }
        }
        return;
    }
    let n = value("--n").and_then(|s| s.parse().ok()).unwrap_or(100);
    let d = value("--d").and_then(|s| s.parse().ok()).unwrap_or(784);
    let seeds: u64 = value("--instances")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    for seed in 0..seeds {
        let (bounds, bx) = random_instance(seed, eps.unwrap_or(6.0 / 255.0), n, d);
        run(&format!("random seed={seed}"), &bounds, &bx, time_limit);
    }
}
