//! Front-end tests that read real weight, data and model files (fixtures in tests/ui/fixtures,
//! made by make_fixtures.py; the VNN-COMP ResNets and ERAN CSVs under `../shared`, or
//! `$UPCC_SHARED`, skipped with a note when absent).

use std::path::{Path, PathBuf};
use upcc::diagnostics::render_ariadne;
use upcc::ir::Op;
use upcc::semantics::{check_file, CheckedProgram, Epsilon, PropertyKind, Selection};

/// Writes `text` as a spec inside tests/ui (so fixture paths resolve) and checks it.
fn check_spec(name: &str, text: &str) -> CheckedProgram {
    let dir = std::env::temp_dir().join(format!("upcc_frontend_files_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let text = text.replace("$UI", fixtures.to_str().unwrap());
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let (sources, result) = check_file(&path);
    match result {
        Ok(p) => p,
        Err(d) => panic!("{}", render_ariadne(&sources, &d.items, false)),
    }
}

fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("UPCC_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("external").is_dir() {
        Some(dir)
    } else {
        eprintln!("note: {} not found; skipping", dir.display());
        None
    }
}

/// The value make_fixtures.py stores at flat index `i` (rounded to f32).
fn fixture_value(i: usize) -> f64 {
    ((((i * 7919) % 101) as f64 - 50.0) / 1000.0) as f32 as f64
}

const TINY_PROGRAM: &str = r#"
use "$UI/modules/tiny.upc"
network net = tiny() weights "$UI/fixtures/tiny.safetensors"
dataset digits = npz("$UI/fixtures/digits.npz") | range 1..4
perturbation up = universal linf eps [1/255, 2/255]
property r = certify accuracy of net on digits under up { bounds: ibp, attacks: [pgd] }
property s = certify classwise accuracy of net on digits under up
"#;

#[test]
fn weights_bind_by_layer_name() {
    let p = check_spec("tiny.upc", TINY_PROGRAM);
    let g = p.networks[0].graph.as_ref().expect("weights were given");
    let kinds: Vec<&str> = g.nodes.iter().map(|n| n.op.kind()).collect();
    assert_eq!(kinds, vec!["input", "conv2d", "relu", "reshape", "linear"]);
    let Op::Conv2d {
        weight,
        bias,
        stride,
        ..
    } = &g.nodes[1].op
    else {
        panic!("not a conv")
    };
    assert_eq!(weight.shape(), &[2, 1, 7, 7]);
    assert_eq!(*stride, [7, 7]);
    assert_eq!(weight[[1, 0, 0, 3]], fixture_value(49 + 3));
    assert_eq!(bias[1], fixture_value(1));
    let Op::Linear { weight, .. } = &g.nodes[4].op else {
        panic!("not linear")
    };
    assert_eq!(weight[[2, 5]], fixture_value(2 * 32 + 5));
    assert_eq!(g.output_shape(), &[3]);
    assert!(g.nodes[1].origin.is_some(), "nodes keep their source spans");
}

#[test]
fn datasets_are_selected_scaled_and_checked_against_the_network() {
    let p = check_spec("tiny2.upc", TINY_PROGRAM);
    let d = &p.datasets[0];
    assert_eq!(d.selection, Selection::Range(1, 4));
    assert_eq!(d.data.labels, vec![2, 1, 0]);
    assert_eq!(d.data.shape, vec![1, 28, 28]);
    // Sample 1's first pixel is byte 784 % 256 = 16, scaled by 1/255.
    assert_eq!(d.data.images[0], 16.0 / 255.0);
    assert_eq!(p.properties.len(), 2);
    assert_eq!(p.properties[1].kind, PropertyKind::Classwise);
    assert!(
        matches!(&p.perturbations[0].eps[1], Epsilon::Uniform(e) if e.num == 2 && e.den == 255)
    );
}

#[test]
fn checked_program_summary_snapshot() {
    let p = check_spec("tiny3.upc", TINY_PROGRAM);
    let mut s = String::new();
    for n in &p.networks {
        s += &format!(
            "network {} input {:?} classes {} params {}\n",
            n.name,
            n.input_shape,
            n.num_classes,
            n.parameter_count()
        );
        for l in &n.layers {
            s += &format!("  {} {} {:?}\n", l.name, l.kind, l.shape);
        }
    }
    for d in &p.datasets {
        s += &format!(
            "dataset {} n {} scale {} {:?} labeled {}\n",
            d.name,
            d.len(),
            d.scale,
            d.selection,
            d.labeled
        );
    }
    for e in &p.perturbations {
        s += &format!("perturbation {} {:?} {:?}\n", e.name, e.kind, e.eps);
    }
    for q in &p.properties {
        s += &format!(
            "property {} {:?} nets {:?} data {} pert {} {:?}\n",
            q.name, q.kind, q.networks, q.dataset, q.perturbation, q.options
        );
    }
    insta::assert_snapshot!(s);
}

#[test]
fn vnncomp_resnets_import_from_onnx_and_match_the_stdlib() {
    let Some(shared) = shared() else { return };
    let onnx = shared.join("external/vnncomp2021/cifar10_resnet/onnx");
    let spec = format!(
        "use std::nets::{{resnet_2b, resnet_4b}}\n\
         network a = onnx(\"{0}/resnet_2b.onnx\")\n\
         network b = resnet_2b() weights \"{0}/resnet_2b.onnx\"\n\
         network c = onnx(\"{0}/resnet_4b.onnx\")\n\
         network d = resnet_4b() weights \"{0}/resnet_4b.onnx\"\n",
        onnx.display()
    );
    let p = check_spec("resnets.upc", &spec);
    let counts: Vec<(usize, usize, usize)> = p
        .networks
        .iter()
        .map(|n| (n.parameter_count(), n.relu_count(), n.num_classes))
        .collect();
    assert_eq!(counts[0], (112_006, 6_244, 10));
    assert_eq!(counts[1], counts[0]);
    assert_eq!(counts[2], (123_734, 14_436, 10));
    assert_eq!(counts[3], counts[2]);
}

#[test]
fn eran_csv_files_load() {
    let Some(shared) = shared() else { return };
    let eran = shared.join("external/eran");
    let spec = format!(
        "dataset m = csv(\"{0}/mnist_test.csv\", shape: [1, 28, 28]) | first 5\n\
         dataset c = csv(\"{0}/cifar10_test.csv\", shape: [3, 32, 32], layout: hwc) | sample 4 seed 3\n",
        eran.display()
    );
    let p = check_spec("eran.upc", &spec);
    assert_eq!((p.datasets[0].len(), p.datasets[1].len()), (5, 4));
    assert!(p
        .datasets
        .iter()
        .all(|d| d.data.images.iter().all(|x| (0.0..=1.0).contains(x))));
}

#[test]
fn quickstart_checks_once_its_model_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !root
        .join("models/mnist/conv_small_pgd32.safetensors")
        .is_file()
    {
        eprintln!("note: models/mnist/conv_small_pgd32.safetensors not found; skipping");
        return;
    }
    let (sources, result) = check_file(&root.join("examples/quickstart.upc"));
    let p = result.unwrap_or_else(|d| panic!("{}", render_ariadne(&sources, &d.items, false)));
    assert_eq!(p.datasets[0].len(), 100);
    assert_eq!(p.perturbations[0].eps.len(), 4);
}
