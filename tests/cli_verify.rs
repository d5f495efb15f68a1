//! End-to-end `upcc verify` on a shipped model and real digits: JSON keys, exit codes, artifacts,
//! and the invariants every report must satisfy.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn upcc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_upcc"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write_spec(dir: &Path, body: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("spec.upc");
    std::fs::write(&path, body).unwrap();
    path
}

fn temp_dir(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("upcc-cli-{name}-{}", std::process::id()))
}

fn natural_spec(n: usize, eps: &str, extra: &str) -> String {
    let root = root();
    format!(
        r#"use std::nets::conv_small
network net = conv_small() weights "{}/models/mnist/conv_small_natural.safetensors"
dataset test = npz("{}/data/mnist/heldout.npz") | scale 1/255 | first {n}
perturbation up = universal linf eps [{eps}]
property robust = certify accuracy of net on test under up {{
    bounds: crown, compare: samplewise{extra}
}}
"#,
        root.display(),
        root.display()
    )
}

/// Per result row of a JSON report: universal and sample-wise certified counts, and the window
/// rows' scalar.
fn certified_counts(o: &std::process::Output) -> impl Iterator<Item = (usize, usize, String)> {
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["results"].as_array().unwrap().clone();
    results.into_iter().map(|r| {
        (
            usize_of(&r, "universal_certified"),
            usize_of(&r, "samplewise_certified"),
            r["window_rows"].as_str().unwrap().to_string(),
        )
    })
}

/// `upcc verify --no-cache --format json <extra> <spec>`.
fn verify_json(spec: &Path, extra: &[&str]) -> std::process::Output {
    upcc()
        .args(["verify", "--no-cache", "--format", "json"])
        .args(extra)
        .arg(spec)
        .output()
        .unwrap()
}

fn usize_of(v: &Value, key: &str) -> usize {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` missing in {v}")) as usize
}

#[test]
fn verify_json_report_satisfies_every_invariant() {
    let dir = temp_dir("json");
    let spec = write_spec(
        &dir,
        &natural_spec(
            30,
            "4/255, 8/255",
            ", attacks: [pgd, df_uap, samplewise_pgd]",
        ),
    );
    let out_dir = dir.join("out");
    let output = upcc()
        .args(["verify", "--format", "json", "--no-cache", "--out"])
        .arg(&out_dir)
        .arg(&spec)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    let report: Value =
        serde_json::from_slice(&output.stdout).expect("stdout is one JSON document");
    let rows = report["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let mut previous_universal = usize::MAX;
    for row in rows {
        for key in [
            "property",
            "network",
            "dataset",
            "eps",
            "n",
            "clean_correct",
            "samplewise_certified",
            "universal_certified",
            "milp_status",
            "universal_upper",
            "population_lower_bound",
            "xi",
            "seconds",
            "attack_correct",
        ] {
            assert!(!row[key].is_null(), "missing `{key}` in {row}");
        }
        let n = usize_of(row, "n");
        let clean = usize_of(row, "clean_correct");
        let samplewise = usize_of(row, "samplewise_certified");
        let universal = usize_of(row, "universal_certified");
        let upper = usize_of(row, "universal_upper");
        assert_eq!(n, 30);
        assert!(samplewise <= universal, "{row}");
        assert!(universal <= upper && upper <= n, "{row}");
        assert!(universal <= clean, "{row}");
        for (name, correct) in row["attack_correct"].as_object().unwrap() {
            let correct = correct.as_u64().unwrap() as usize;
            if name == "samplewise_pgd" {
                assert!(samplewise <= correct, "{row}");
            } else {
                assert!(universal <= correct, "{row}");
            }
        }
        assert!(row["population_lower_bound"].as_f64().unwrap() < universal as f64 / n as f64);
        assert!(
            universal <= previous_universal,
            "certified count grew with ε"
        );
        previous_universal = universal;
    }
    for file in [
        "report.json",
        "robust_sweep.svg",
        "robust_eps8_255_delta.npy",
        "robust_eps8_255_delta.png",
        "robust_eps4_255_pgd.npy",
        "robust_eps4_255_df_uap.png",
    ] {
        assert!(out_dir.join(file).is_file(), "--out did not write {file}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_table_names_every_column() {
    let dir = temp_dir("table");
    let spec = write_spec(&dir, &natural_spec(10, "2/255", ""));
    let output = upcc()
        .args(["verify", "--no-cache"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let table = String::from_utf8(output.stdout).unwrap();
    for column in [
        "eps",
        "clean",
        "sample-wise",
        "universal",
        "milp",
        "replayed δ",
        "population",
    ] {
        assert!(table.contains(column), "table lacks `{column}`:\n{table}");
    }
    assert!(table.contains("2/255"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn verify_exit_codes() {
    let missing = upcc()
        .args(["verify", "/no/such/spec.upc"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));

    let dir = temp_dir("bad");
    let spec = write_spec(&dir, "network net = conv_small( weights\n");
    let bad = upcc()
        .args(["verify", "--color", "never"])
        .arg(&spec)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("error"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn population_command_prints_theorem_2_bounds() {
    let output = upcc()
        .args([
            "population",
            "--xi",
            "0.1",
            "--n",
            "100,1000",
            "--crr",
            "0.9",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    for n in [100usize, 1000] {
        let t = upcc::population::t_star(0.1, n).unwrap();
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&n.to_string()))
            .unwrap();
        let values: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        assert!((values[0] - t).abs() < 1e-6, "{line}");
        assert!((values[1] - (0.9 - t)).abs() < 1e-4, "{line}");
    }
    let bad = upcc()
        .args(["population", "--crr", "1.5"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// Without a usable CUDA device (this build or machine), `--device cuda` names the cause and
/// exits 2, and `--device auto` runs on the CPU with a note and the same report as `--device cpu`.
#[test]
fn device_cuda_without_a_gpu_is_refused_and_auto_falls_back() {
    let dir = temp_dir("device");
    let spec = write_spec(&dir, &natural_spec(5, "2/255", ""));
    let cuda = verify_json(&spec, &["--device", "cuda"]);
    if cuda.status.success() {
        println!("SKIPPED: a CUDA device is present here");
        return;
    }
    assert_eq!(cuda.status.code(), Some(2));
    let err = String::from_utf8_lossy(&cuda.stderr);
    assert!(
        err.contains("CUDA") && err.contains("--device cuda"),
        "{err}"
    );
    assert!(cuda.stdout.is_empty());
    let run = |device: &str| verify_json(&spec, &["--device", device]);
    let (auto, cpu) = (run("auto"), run("cpu"));
    assert!(auto.status.success() && cpu.status.success());
    assert!(String::from_utf8_lossy(&auto.stderr).contains("using the CPU engine"));
    let counts = |o| {
        certified_counts(o)
            .map(|(u, s, _)| (u, s))
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&auto), counts(&cpu));
}

/// `--rows f32` (window rows in single precision, their rounding charged to the bounds) certifies
/// the same digits as the default `f64` here and says so in the report; an unknown scalar is a
/// usage error.
#[test]
fn rows_f32_certifies_what_f64_does() {
    let dir = temp_dir("rows");
    let spec = write_spec(&dir, &natural_spec(30, "2/255, 4/255", ""));
    let run = |rows: &str| verify_json(&spec, &["--rows", rows]);
    let counts = |o: &std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        certified_counts(o).collect::<Vec<_>>()
    };
    let (f64_rows, f32_rows) = (counts(&run("f64")), counts(&run("f32")));
    assert_eq!(f64_rows.len(), 2);
    assert!(
        f64_rows.iter().any(|r| r.0 > 0),
        "nothing certified: {f64_rows:?}"
    );
    for (a, b) in f64_rows.iter().zip(&f32_rows) {
        assert_eq!((a.0, a.1, a.2.as_str()), (b.0, b.1, "f64"));
        assert_eq!(b.2, "f32");
    }
    assert_eq!(run("f16").status.code(), Some(2));
}

/// `--threads` sizes the worker pool, which the report names; the certified counts do not depend
/// on it (each sample's bounds are computed by one thread, in a fixed order). Zero threads is a
/// usage error.
#[test]
fn threads_flag_sizes_the_pool_and_keeps_the_counts() {
    let dir = temp_dir("threads");
    let spec = write_spec(&dir, &natural_spec(20, "2/255, 4/255", ""));
    let run = |threads: &str| verify_json(&spec, &["--threads", threads]);
    let report = |o: &std::process::Output| -> Vec<(usize, usize, usize)> {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    usize_of(r, "universal_certified"),
                    usize_of(r, "samplewise_certified"),
                    usize_of(r, "threads"),
                )
            })
            .collect()
    };
    let (one, three) = (report(&run("1")), report(&run("3")));
    assert_eq!(one.len(), 2);
    for (a, b) in one.iter().zip(&three) {
        assert_eq!((a.0, a.1, a.2, b.2), (b.0, b.1, 1, 3));
    }
    assert_eq!(run("0").status.code(), Some(2));
}

/// Every SIMD level of the CPU engine's row loops (`$UPCC_SIMD` caps the CPU's widest) gives
/// bit-identical intermediate bounds: the on-disk cache entries of runs at each level are equal
/// byte for byte, and the reports name their level.
#[test]
fn simd_levels_give_bit_identical_bounds() {
    let dir = temp_dir("simd");
    let spec = write_spec(&dir, &natural_spec(12, "2/255, 6/255", ""));
    let run = |level: &str| -> (String, Vec<(String, Vec<u8>)>) {
        let cache = dir.join(format!("cache-{level}"));
        let output = upcc()
            .args(["verify", "--format", "json"])
            .arg(&spec)
            .env("UPCC_CACHE_DIR", &cache)
            .env("UPCC_SIMD", level)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let v: Value = serde_json::from_slice(&output.stdout).unwrap();
        let named = v["results"][0]["simd"].as_str().unwrap().to_string();
        let mut entries: Vec<(String, Vec<u8>)> = walk_files(&cache)
            .into_iter()
            .map(|p| {
                let name = p.strip_prefix(&cache).unwrap().display().to_string();
                (name, std::fs::read(&p).unwrap())
            })
            .collect();
        entries.sort();
        (named, entries)
    };
    let (portable_name, portable) = run("portable");
    assert_eq!(portable_name, "portable");
    assert!(!portable.is_empty(), "no cache entries written");
    for level in ["avx2", "avx512"] {
        let (name, entries) = run(level);
        assert!(
            name == "portable" || name == "avx2" || name == level,
            "{name}"
        );
        assert_eq!(entries.len(), portable.len());
        for ((a_name, a), (b_name, b)) in portable.iter().zip(&entries) {
            assert_eq!(a_name, b_name);
            assert!(a == b, "{a_name} differs at {name}");
        }
    }
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}
