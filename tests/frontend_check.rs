//! Front-end checks that need no data files: stdlib architectures, imports through a
//! memory loader, several errors per file, constant evaluation.

use std::path::Path;
use upcc::semantics::{check_source, CheckedProgram, MemoryLoader};

fn check(files: &[(&str, &str)]) -> Result<CheckedProgram, Vec<(String, String)>> {
    let mut loader = MemoryLoader::default();
    for (p, t) in files {
        loader = loader.with(p, *t);
    }
    let (_, result) = check_source(Path::new(files[0].0), &loader);
    result.map_err(|d| {
        d.items
            .into_iter()
            .map(|d| (d.code.to_string(), d.message))
            .collect()
    })
}

fn codes(errors: &[(String, String)]) -> Vec<&str> {
    errors.iter().map(|(c, _)| c.as_str()).collect()
}

#[test]
fn stdlib_architectures_have_the_papers_sizes() {
    let spec = "use std::nets::*\n\
        network a = conv_small()\nnetwork b = conv_4layer()\nnetwork c = conv_big()\n\
        network d = resnet_2b()\nnetwork e = resnet_4b()\n";
    let p = check(&[("main.upc", spec)]).unwrap();
    let sizes: Vec<(usize, usize)> = p
        .networks
        .iter()
        .map(|n| (n.parameter_count(), n.relu_count()))
        .collect();
    // Parameter and ReLU counts from NOTES.md (checked in PyTorch).
    assert_eq!(
        sizes,
        vec![
            (89_606, 3_604),
            (166_406, 4_804),
            (1_974_762, 48_064),
            (112_006, 6_244),
            (123_734, 14_436)
        ]
    );
    assert!(p
        .networks
        .iter()
        .all(|n| n.num_classes == 10 && n.graph.is_none()));
    assert_eq!(p.networks[3].input_shape, vec![3, 32, 32]);
}

#[test]
fn resnet_tensor_names_follow_pytorch() {
    let p = check(&[(
        "main.upc",
        "use std::nets::resnet_2b\nnetwork n = resnet_2b()\n",
    )])
    .unwrap();
    let names: Vec<&str> = p.networks[0]
        .parameters
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(names.contains(&"layer1.0.shortcut.0.weight"), "{names:?}");
    assert!(names.contains(&"layer1.1.conv2.bias"));
    assert!(
        !names.iter().any(|n| n.starts_with("layer1.1.shortcut")),
        "identity shortcut has no weights"
    );
    let sc = p.networks[0]
        .parameters
        .iter()
        .find(|(n, _)| n == "layer1.0.shortcut.0.weight")
        .unwrap();
    assert_eq!(sc.1, vec![16, 8, 1, 1]);
}

#[test]
fn unnamed_layers_are_numbered_like_nn_sequential() {
    let spec =
        "block mlp() {\n input [4]\n linear(4, 8)\n relu\n linear(8, 3)\n}\nnetwork n = mlp()\n";
    let p = check(&[("m.upc", spec)]).unwrap();
    let names: Vec<&str> = p.networks[0]
        .parameters
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, vec!["0.weight", "0.bias", "2.weight", "2.bias"]);
}

#[test]
fn imports_resolve_relative_to_the_importing_file() {
    let p = check(&[
        (
            "dir/main.upc",
            "use \"lib/defs.upc\"\nperturbation p = universal linf eps e\n",
        ),
        (
            "dir/lib/defs.upc",
            "use \"more.upc\"::base\nconst e = base / 255\n",
        ),
        ("dir/lib/more.upc", "const base = 8\n"),
    ])
    .unwrap();
    let eps = &p.perturbations[0].eps;
    assert_eq!(
        format!("{eps:?}"),
        "[Uniform(Exact { num: 8, den: 255, value: 0.03137254901960784 })]"
    );
}

#[test]
fn import_cycles_are_reported() {
    let errors = check(&[
        ("a.upc", "use \"b.upc\"\nconst x = 1\n"),
        ("b.upc", "use \"c.upc\"\n"),
        ("c.upc", "use \"a.upc\"\n"),
    ])
    .unwrap_err();
    assert_eq!(codes(&errors), vec!["E0105"]);
}

#[test]
fn every_error_in_a_file_is_reported() {
    let spec = "const a = 1/0\n\
        perturbation p = universal linf eps -1\n\
        network n = nothing()\n\
        dataset d = noise(shape: [1, 2, 2], count: 0, seed: 1)\n";
    let errors = check(&[("m.upc", spec)]).unwrap_err();
    assert_eq!(codes(&errors), vec!["E0202", "E0205", "E0101", "E0204"]);
}

#[test]
fn eps_sweeps_and_per_channel_are_exact() {
    let spec = "perturbation s = universal linf eps [2/255, 0.5/255, 1e-3]\n\
        perturbation c = samplewise linf eps per_channel [1/255, 2/255, 3/255]\n";
    let p = check(&[("m.upc", spec)]).unwrap();
    let s: Vec<String> = p.perturbations[0]
        .eps
        .iter()
        .map(|e| match e {
            upcc::semantics::Epsilon::Uniform(x) => format!("{}/{}", x.num, x.den),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(s, vec!["2/255", "1/510", "1/1000"]);
    assert!(
        matches!(&p.perturbations[1].eps[0], upcc::semantics::Epsilon::PerChannel(v) if v.len() == 3)
    );
}

#[test]
fn noise_datasets_are_seeded_and_selected() {
    let spec = "dataset a = noise(shape: [1, 2, 2], count: 10, seed: 5) | sample 3 seed 2\n\
        dataset b = noise(shape: [1, 2, 2], count: 10, seed: 5) | sample 3 seed 2\n\
        dataset c = noise(shape: [1, 2, 2], count: 10, seed: 6) | range 2..4 | scale 1/2\n";
    let p = check(&[("m.upc", spec)]).unwrap();
    assert_eq!(p.datasets[0].data, p.datasets[1].data);
    assert_eq!(p.datasets[0].len(), 3);
    assert_eq!(p.datasets[2].len(), 2);
    assert!(p.datasets[2]
        .data
        .images
        .iter()
        .all(|x| (0.0..0.5).contains(x)));
    assert!(!p.datasets[0].labeled);
}

#[test]
fn property_options_have_typed_defaults() {
    use upcc::semantics::{Attack, BoundsOption, PropertyOptions, SolverKind};
    let d = PropertyOptions::default();
    assert_eq!(d.bounds, BoundsOption::Crown);
    assert_eq!(d.solver.kind, SolverKind::Microlp);
    assert_eq!(d.solver.time_limit.as_secs(), 60);
    assert!((d.xi - 0.1).abs() < 1e-12);
    let _ = Attack::Pgd;
}

#[test]
fn block_parameters_drive_shape_arithmetic() {
    let spec = "block b(w) {\n input [1, w, w]\n conv2d(1, 2, kernel: 3, stride: 2, padding: 1)\n flatten\n \
        fc = linear(2 * ((w + 2 - 3) / 2 + 1) * ((w + 2 - 3) / 2 + 1), 5)\n}\nnetwork n = b(9)\n";
    let p = check(&[("m.upc", spec)]).unwrap();
    assert_eq!(p.networks[0].layers[1].shape, vec![2, 5, 5]);
    assert_eq!(p.networks[0].num_classes, 5);
}
