//! Every shipped model, at the examples' ε values, under every attack: certified numbers never
//! exceed what an attack leaves correct (issue 6 §4). `verify` refuses such a result itself
//! (E0505); this test also re-checks the reported numbers.
//!
//! Conv-big runs on 5 digits (its bounds are slow); `UPCC_CONV_BIG_N` asks for more.

use std::path::{Path, PathBuf};
use upcc::attacks::AttackOptions;
use upcc::driver::verify::{verify, VerifyOptions};
use upcc::engine::BoundCache;
use upcc::semantics::check_file;

/// (architecture, model) of every model in `models/mnist/<subdir>`; the model is its path
/// under `models/mnist` without the extension.
fn models(subdir: &str, arch_filter: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models/mnist")
        .join(subdir);
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.path().file_stem()?.to_str()?.to_string();
            let path = dir.join(format!("{name}.safetensors"));
            path.is_file().then_some(name)
        })
        .filter_map(|name| {
            let arch = ["conv_small", "conv_4layer", "conv_big"]
                .into_iter()
                .find(|a| name.starts_with(a))?;
            let model = Path::new(subdir).join(&name).to_str()?.to_string();
            arch_filter(arch).then(|| (arch.to_string(), model))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The examples' radii: Table 1 for natural models, Tables 2 and 4 for the trained defenses,
/// examples/backdoor_scan.upc for the backdoored ones.
fn radii(model: &str) -> &'static str {
    if model.contains("pgd16_badnets") {
        "16/255"
    } else if model.starts_with("backdoor/") {
        "2/255, 5/255"
    } else if model.ends_with("natural") {
        "4/255, 8/255"
    } else if model.ends_with("pgd32") {
        "16/255, 32/255"
    } else {
        "16/255, 80/255"
    }
}

fn validate(arch: &str, model: &str, n: usize) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let spec = format!(
        "use std::nets::{arch}\n\
         network net = {arch}() weights \"{root}/models/mnist/{model}.safetensors\"\n\
         dataset digits = npz(\"{root}/data/mnist/heldout.npz\") | scale 1/255 | first {n}\n\
         perturbation up = universal linf eps [{eps}]\n\
         property attacked = certify accuracy of net on digits under up {{\n\
             compare: samplewise, attacks: [pgd, df_uap, cos_uap, adv_uap, samplewise_pgd]\n\
         }}\n",
        root = root.display(),
        eps = radii(model)
    );
    let dir = std::env::temp_dir().join(format!(
        "upcc-attack-validation-{}-{model}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spec.upc");
    std::fs::write(&path, spec).unwrap();
    let (_, checked) = check_file(&path);
    let program = checked.unwrap_or_else(|d| panic!("{model}: spec does not check: {:?}", d.items));
    let options = VerifyOptions {
        engine: upcc::engine::gpu::BoundEngine::Cpu,
        cache: BoundCache::in_memory(),
        rows: upcc::engine::RowPrecision::F64,
        progress: false,
        attack: AttackOptions::default(),
    };
    let run = verify(&program, &options).unwrap_or_else(|d| panic!("{model}: {:?}", d));
    for row in &run.report.results {
        let universal = row.universal_certified.expect("universal property");
        assert!(
            row.samplewise_certified <= universal,
            "{model} {}",
            row.eps_text
        );
        assert!(
            universal <= row.universal_upper.unwrap(),
            "{model} {}",
            row.eps_text
        );
        assert_eq!(row.attack_correct.len(), 5, "{model}: every attack ran");
        for (attack, &correct) in &row.attack_correct {
            let certified = if attack == "samplewise_pgd" {
                row.samplewise_certified
            } else {
                universal
            };
            assert!(
                certified <= correct,
                "{model} {} {attack}: certified {certified} > {correct}",
                row.eps_text
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn certificates_hold_against_every_attack_on_conv_small_and_conv_4layer() {
    let models = models("", |arch| arch != "conv_big");
    assert!(
        models.len() >= 10,
        "expected the shipped model zoo, found {models:?}"
    );
    for (arch, model) in models {
        validate(&arch, &model, 20);
    }
}

/// Conv-big's CROWN bounds cost ~5 s per digit and ε, so it gets 5 digits here; more with
/// `UPCC_CONV_BIG_N=20 cargo test --release --test attack_validation conv_big`.
#[test]
fn certificates_hold_against_every_attack_on_conv_big() {
    let n = std::env::var("UPCC_CONV_BIG_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let models = models("", |arch| arch == "conv_big");
    assert_eq!(models.len(), 2, "conv_big natural and PGD-32: {models:?}");
    for (arch, model) in models {
        validate(&arch, &model, n);
    }
}

#[test]
fn certificates_hold_against_every_attack_on_the_backdoored_models() {
    let models = models("backdoor", |_| true);
    assert!(
        models.len() >= 17,
        "expected the backdoor models, found {models:?}"
    );
    for (arch, model) in models {
        validate(&arch, &model, 10);
    }
}
