//! ONNX decoding and import: outputs of the imported IR match onnxruntime goldens
//! (tools/data/make_onnx_fixtures.py), unsupported models list every bad node, bad bytes never panic.

use std::path::{Path, PathBuf};
use upcc::formats::onnx::load_model;
use upcc::formats::{load_dataset, load_tensors, DatasetSource, FormatErrorKind, PixelLayout};
use upcc::ir::from_onnx::{import, ImportError};
use upcc::ir::{Graph, Op};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/formats")
        .join(name)
}

fn shared(rel: &str) -> Option<PathBuf> {
    ["../shared", "../../shared"]
        .iter()
        .map(|base| Path::new(env!("CARGO_MANIFEST_DIR")).join(base).join(rel))
        .find(|p| p.exists())
}

fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// Concrete forward pass of the IR (test oracle only; the real evaluator lives in the engine).
fn forward(graph: &Graph, input: &[f64]) -> Vec<f64> {
    let mut values: Vec<Vec<f64>> = Vec::new();
    for node in &graph.nodes {
        let x = |i: usize| &values[node.inputs[i].index()];
        let in_shape = |i: usize| &graph.nodes[node.inputs[i].index()].shape;
        let out = match &node.op {
            Op::Input => input.to_vec(),
            Op::Linear { weight, bias } => (0..weight.nrows())
                .map(|r| {
                    bias[r]
                        + weight
                            .row(r)
                            .iter()
                            .zip(x(0))
                            .map(|(w, v)| w * v)
                            .sum::<f64>()
                })
                .collect(),
            Op::Conv2d {
                weight,
                bias,
                stride,
                padding,
            } => {
                let (h, w) = (in_shape(0)[1] as isize, in_shape(0)[2] as isize);
                let (o, c, kh, kw) = weight.dim();
                let (oh, ow) = (node.shape[1], node.shape[2]);
                let mut out = vec![0.0; o * oh * ow];
                for oc in 0..o {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let mut acc = bias[oc];
                            for ic in 0..c {
                                for ky in 0..kh {
                                    for kx in 0..kw {
                                        let iy =
                                            (y * stride[0] + ky) as isize - padding[0] as isize;
                                        let ix =
                                            (xx * stride[1] + kx) as isize - padding[1] as isize;
                                        if iy >= 0 && iy < h && ix >= 0 && ix < w {
                                            acc += weight[[oc, ic, ky, kx]]
                                                * x(0)
                                                    [(ic as isize * h * w + iy * w + ix) as usize];
                                        }
                                    }
                                }
                            }
                            out[(oc * oh + y) * ow + xx] = acc;
                        }
                    }
                }
                out
            }
            Op::ChannelAffine { scale, shift } => {
                let slab = x(0).len() / scale.len();
                x(0).iter()
                    .enumerate()
                    .map(|(i, v)| v * scale[i / slab] + shift[i / slab])
                    .collect()
            }
            Op::Add => x(0).iter().zip(x(1)).map(|(a, b)| a + b).collect(),
            Op::Reshape => x(0).clone(),
            Op::Relu => x(0).iter().map(|v| v.max(0.0)).collect(),
            Op::AvgPool {
                kernel,
                stride,
                padding,
            } => {
                assert_eq!(*padding, [0, 0], "oracle handles unpadded pooling only");
                let (h, w) = (in_shape(0)[1], in_shape(0)[2]);
                let (c, oh, ow) = (node.shape[0], node.shape[1], node.shape[2]);
                let mut out = vec![0.0; c * oh * ow];
                for ch in 0..c {
                    for y in 0..oh {
                        for xx in 0..ow {
                            let mut acc = 0.0;
                            for ky in 0..kernel[0] {
                                for kx in 0..kernel[1] {
                                    acc += x(0)
                                        [(ch * h + y * stride[0] + ky) * w + xx * stride[1] + kx];
                                }
                            }
                            out[(ch * oh + y) * ow + xx] = acc / (kernel[0] * kernel[1]) as f64;
                        }
                    }
                }
                out
            }
            Op::MaxPool { .. } => panic!("no maxpool in the fixtures"),
        };
        assert_eq!(out.len(), node.numel(), "node {}", node.name);
        values.push(out);
    }
    values[graph.output.index()].clone()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "got {got:?}\nwant {want:?}"
        );
    }
}

fn assert_topological(graph: &Graph) {
    assert!(matches!(graph.nodes[0].op, Op::Input));
    for (k, node) in graph.nodes.iter().enumerate() {
        assert!(
            node.inputs.iter().all(|i| i.index() < k),
            "node {} is out of order",
            node.name
        );
        assert!(k == 0 || !matches!(node.op, Op::Input));
    }
}

#[test]
fn every_supported_lowering_matches_onnxruntime() {
    let model = load_model(&fixture("ops.onnx")).unwrap();
    let graph = import(&model).unwrap_or_else(|e| panic!("{e}"));
    assert_topological(&graph);
    assert_eq!(graph.input_shape(), &[3, 12, 12]);
    assert_eq!(graph.output_shape(), &[5]);
    assert!(
        graph.nodes.iter().all(|n| n.name != "dead_branch"),
        "unreachable nodes are pruned"
    );
    let names: std::collections::BTreeSet<_> = graph.nodes.iter().map(|n| n.name.clone()).collect();
    assert_eq!(names.len(), graph.nodes.len(), "node names are unique");
    let golden = json("ops.json");
    for (input, output) in golden["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(golden["outputs"].as_array().unwrap())
    {
        assert_close(&forward(&graph, &floats(input)), &floats(output), 1e-4);
    }
}

#[test]
fn vnncomp_resnets_match_onnxruntime() {
    let Some(csv) = shared("external/eran/cifar10_test.csv") else {
        eprintln!("skipping: ../shared/external is absent");
        return;
    };
    let golden = json("resnets.json");
    let (mean, std) = (floats(&golden["mean"]), floats(&golden["std"]));
    let images = load_dataset(&DatasetSource::Csv {
        path: csv,
        shape: vec![3, 32, 32],
        layout: PixelLayout::Hwc,
    })
    .unwrap()
    .select_first(5)
    .unwrap()
    .scale(1.0 / 255.0);
    for (name, relus, params) in [("resnet_2b", 6244, 112_006), ("resnet_4b", 14_436, 123_734)] {
        let path = shared(&format!(
            "external/vnncomp2021/cifar10_resnet/onnx/{name}.onnx"
        ))
        .unwrap();
        let graph = import(&load_model(&path).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_topological(&graph);
        assert_eq!(graph.input_shape(), &[3, 32, 32]);
        assert_eq!(graph.output_shape(), &[10]);
        // Architecture facts from NOTES.md: ReLU and parameter counts.
        let relu_count: usize = graph
            .nodes
            .iter()
            .filter(|n| matches!(n.op, Op::Relu))
            .map(|n| n.numel())
            .sum();
        assert_eq!(relu_count, relus, "{name} ReLUs");
        let param_count: usize = graph
            .nodes
            .iter()
            .map(|n| match &n.op {
                Op::Linear { weight, bias } => weight.len() + bias.len(),
                Op::Conv2d { weight, bias, .. } => weight.len() + bias.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(param_count, params, "{name} parameters");
        assert_eq!(
            graph
                .nodes
                .iter()
                .filter(|n| matches!(n.op, Op::Add))
                .count(),
            if name == "resnet_2b" { 2 } else { 4 }
        );
        for (i, want) in golden[name].as_array().unwrap().iter().enumerate() {
            let normalised: Vec<f64> = images
                .image(i)
                .iter()
                .enumerate()
                .map(|(k, v)| (v - mean[k / 1024]) / std[k / 1024])
                .collect();
            assert_close(&forward(&graph, &normalised), &floats(want), 1e-4);
        }
    }
}

#[test]
fn resnet_initializers_load_as_weights() {
    let Some(path) = shared("external/vnncomp2021/cifar10_resnet/onnx/resnet_2b.onnx") else {
        eprintln!("skipping: ../shared/external is absent");
        return;
    };
    let tensors = load_tensors(&path).unwrap();
    assert_eq!(tensors.len(), 16);
    assert_eq!(tensors["conv1.weight"].shape, vec![8, 3, 3, 3]);
    assert_eq!(tensors["linear1.weight"].shape, vec![100, 1024]);
    assert_eq!(tensors["linear1.weight"].data.len(), 102_400);
}

#[test]
fn unsupported_model_lists_every_bad_node() {
    let model = load_model(&fixture("unsupported.onnx")).unwrap();
    match import(&model) {
        Err(ImportError::Unsupported(nodes)) => {
            let names: Vec<&str> = nodes.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, vec!["grouped", "sig", "soft"]);
            assert!(
                nodes[0].1.starts_with("Conv") && nodes[0].1.contains("group 2"),
                "{:?}",
                nodes[0]
            );
            assert_eq!(nodes[1].1, "Sigmoid");
            assert_eq!(nodes[2].1, "Softmax");
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn invalid_models_are_refused() {
    let nan = load_model(&fixture("nan_weight.onnx")).unwrap_err();
    assert_eq!(nan.kind, FormatErrorKind::NonFinite);
    assert!(nan.message.contains("'w'"), "{}", nan.message);
    assert_eq!(
        load_tensors(&fixture("nan_weight.onnx")).unwrap_err().kind,
        FormatErrorKind::NonFinite
    );
    for (file, needle) in [
        ("shape_mismatch.onnx", "expects 5"),
        ("div_zero.onnx", "division by zero"),
        ("dangling.onnx", "undefined tensor 'nowhere'"),
    ] {
        match import(&load_model(&fixture(file)).unwrap()) {
            Err(ImportError::Invalid(message)) => {
                assert!(message.contains(needle), "{file}: {message}")
            }
            other => panic!("{file}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn corrupt_onnx_files_are_errors() {
    let bytes = std::fs::read(fixture("ops.onnx")).unwrap();
    let dir = std::env::temp_dir().join(format!("upcc_formats_onnx_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cut.onnx");
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        match load_model(&path) {
            Err(e) => assert_eq!(e.kind, FormatErrorKind::Corrupt, "cut at {cut}: {e}"),
            // A cut on a field boundary may still decode; then import must fail or succeed cleanly.
            Ok(model) => {
                let _ = import(&model);
            }
        }
    }
    let missing = load_model(&dir.join("missing.onnx")).unwrap_err();
    assert_eq!(missing.kind, FormatErrorKind::Io);
    std::fs::remove_dir_all(&dir).unwrap();
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use upcc::formats::onnx::decode;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn mutated_onnx_never_panics(flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
            let mut bytes = std::fs::read(fixture("ops.onnx")).unwrap();
            for (index, value) in flips {
                let i = index.index(bytes.len());
                bytes[i] = value;
            }
            if let Ok(model) = decode(Path::new("mutated.onnx"), &bytes) {
                let _ = import(&model);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(model) = decode(Path::new("random.onnx"), &bytes) {
                let _ = import(&model);
            }
        }
    }
}
