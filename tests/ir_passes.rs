//! IR validation and the exact passes: every pass keeps the forward function (1e-5 relative on
//! random inputs), re-validates, and actually performs its rewrite.

use ndarray::{arr1, Array1, Array2, Array4};
use proptest::prelude::*;
use upcc::engine::forward;
use upcc::ir::build::{random_cnn, random_mlp, random_resnet, GraphBuilder, Rng};
use upcc::ir::passes::{
    drop_identity_reshapes, fold_batchnorm, fold_normalize, fuse_linear, optimize, remove_dead,
};
use upcc::ir::{dump, validate, Graph, NodeId, Op};

fn assert_equivalent(a: &Graph, b: &Graph, seed: u64) {
    validate(b).unwrap();
    let d: usize = a.input_shape().iter().product();
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((16, d), |_| rng.range(-1.0, 2.0));
    let ya = forward(a, x.view()).unwrap();
    let yb = forward(b, x.view()).unwrap();
    for (u, v) in ya.iter().zip(yb.iter()) {
        assert!((u - v).abs() <= 1e-5 * (1.0 + u.abs()), "{u} vs {v}");
    }
}

fn count(graph: &Graph, kind: &str) -> usize {
    graph.nodes.iter().filter(|n| n.op.kind() == kind).count()
}

#[test]
fn batchnorm_folds_but_normalize_stays_before_padded_conv() {
    let mut rng = Rng::new(1);
    let graph = random_cnn(&mut rng, [2, 7, 7], 3, 4);
    assert_eq!(count(&graph, "channel_affine"), 2);
    let folded = fold_batchnorm(&graph);
    assert_equivalent(&graph, &folded, 1);
    assert_eq!(count(&folded, "channel_affine"), 1);
    // The remaining normalize feeds a conv with padding 1: folding it would not be exact.
    let again = fold_normalize(&folded);
    assert_eq!(count(&again, "channel_affine"), 1);
    assert_equivalent(&graph, &optimize(&graph).unwrap(), 2);
}

#[test]
fn normalize_folds_into_unpadded_conv_and_through_flatten() {
    let mut rng = Rng::new(2);
    let mut b = GraphBuilder::new(&[2, 6, 6]);
    let x = b.random_channel_affine(&mut rng, GraphBuilder::INPUT);
    let x = b.random_conv(&mut rng, x, 3, 3, 1, 0);
    let x = b.relu(x);
    let x = b.random_channel_affine(&mut rng, x);
    let x = b.flatten(x);
    let x = b.random_linear(&mut rng, x, 5);
    let graph = b.finish(x);
    validate(&graph).unwrap();
    let folded = fold_normalize(&graph);
    assert_eq!(count(&folded, "channel_affine"), 0);
    assert_equivalent(&graph, &folded, 3);
}

#[test]
fn batchnorm_with_two_consumers_is_not_folded() {
    let mut rng = Rng::new(3);
    let mut b = GraphBuilder::new(&[4]);
    let h = b.random_linear(&mut rng, GraphBuilder::INPUT, 4);
    let bn = b.random_channel_affine(&mut rng, h);
    let s = b.add(bn, h);
    let graph = b.finish(s);
    let folded = fold_batchnorm(&graph);
    assert_eq!(count(&folded, "channel_affine"), 1);
    assert_equivalent(&graph, &folded, 4);
}

#[test]
fn linear_chains_fuse_only_when_smaller() {
    let mut rng = Rng::new(4);
    let mut b = GraphBuilder::new(&[20]);
    let h = b.random_linear(&mut rng, GraphBuilder::INPUT, 30);
    let h = b.random_linear(&mut rng, h, 5);
    let wide = b.finish(h);
    let fused = fuse_linear(&wide);
    assert_eq!(count(&fused, "linear"), 1);
    assert_equivalent(&wide, &fused, 5);

    let mut b = GraphBuilder::new(&[20]);
    let h = b.random_linear(&mut rng, GraphBuilder::INPUT, 2);
    let h = b.random_linear(&mut rng, h, 20);
    let bottleneck = b.finish(h);
    assert_eq!(count(&fuse_linear(&bottleneck), "linear"), 2);
}

#[test]
fn identity_reshapes_and_dead_nodes_are_dropped() {
    let mut rng = Rng::new(5);
    let mut b = GraphBuilder::new(&[2, 3, 3]);
    let r1 = b.reshape(GraphBuilder::INPUT, vec![18]);
    let r2 = b.reshape(r1, vec![18]);
    let r3 = b.reshape(r2, vec![2, 9]);
    let flat = b.reshape(r3, vec![18]);
    let _dead = b.random_linear(&mut rng, flat, 3);
    let h = b.random_linear(&mut rng, flat, 4);
    let graph = b.finish(h);
    validate(&graph).unwrap();
    let cleaned = drop_identity_reshapes(&graph);
    assert_eq!(count(&cleaned, "reshape"), 1);
    assert_eq!(cleaned.nodes.len(), 3);
    assert_equivalent(&graph, &cleaned, 6);
    let pruned = remove_dead(&graph);
    assert_eq!(pruned.nodes.len(), graph.nodes.len() - 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn optimize_preserves_random_networks(seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        for graph in [
            random_mlp(&mut rng, 5, &[7, 6], 3),
            random_cnn(&mut rng, [2, 7, 7], 3, 4),
            random_resnet(&mut rng, [2, 6, 6], 3, 4),
        ] {
            let optimized = optimize(&graph).unwrap();
            assert_equivalent(&graph, &optimized, seed);
            prop_assert!(optimized.nodes.len() <= graph.nodes.len());
        }
    }
}

#[test]
fn optimized_dump_snapshot() {
    let mut b = GraphBuilder::new(&[1, 4, 4]);
    let w = Array4::from_shape_fn((2, 1, 2, 2), |(o, _, i, j)| (o + i + j) as f64 * 0.5 - 0.5);
    let c = b.conv(GraphBuilder::INPUT, w, arr1(&[0.1, -0.1]), 2, 0);
    let bn = b.channel_affine(c, arr1(&[2.0, 0.5]), arr1(&[0.0, 1.0]));
    let r = b.relu(bn);
    let f = b.flatten(r);
    let f2 = b.reshape(f, vec![8]);
    let l1 = b.linear(f2, Array2::from_elem((3, 8), 0.25), Array1::zeros(3));
    let l2 = b.linear(
        l1,
        Array2::eye(3).slice(ndarray::s![..2, ..]).to_owned(),
        arr1(&[1.0, 2.0]),
    );
    let graph = b.finish(l2);
    let optimized = optimize(&graph).unwrap();
    assert_equivalent(&graph, &optimized, 7);
    insta::assert_snapshot!(dump(&optimized));
}

// ---- validator ----

fn small() -> Graph {
    let mut rng = Rng::new(9);
    random_mlp(&mut rng, 3, &[4], 2)
}

#[test]
fn validator_accepts_builders_output() {
    let mut rng = Rng::new(10);
    validate(&small()).unwrap();
    validate(&random_cnn(&mut rng, [3, 8, 8], 4, 10)).unwrap();
    validate(&random_resnet(&mut rng, [3, 8, 8], 4, 10)).unwrap();
}

#[test]
fn validator_rejects_broken_graphs() {
    let mut g = small();
    g.nodes[1].shape = vec![5];
    assert!(validate(&g).is_err(), "wrong shape");

    let mut g = small();
    if let Op::Linear { weight, .. } = &mut g.nodes[1].op {
        weight[[0, 0]] = f64::NAN;
    }
    assert!(validate(&g).unwrap_err().message.contains("non-finite"));

    let mut g = small();
    g.nodes[1].inputs = vec![NodeId(2)];
    assert!(validate(&g).is_err(), "not topological");

    let mut g = small();
    g.output = NodeId(99);
    assert!(validate(&g).is_err(), "missing output");

    let mut g = small();
    g.nodes[2].name = g.nodes[1].name.clone();
    assert!(validate(&g).is_err(), "duplicate name");

    let mut g = small();
    g.nodes[2].op = Op::Input;
    g.nodes[2].inputs.clear();
    assert!(validate(&g).is_err(), "second input");

    let mut g = small();
    g.nodes[2].op = Op::Add;
    assert!(validate(&g).is_err(), "wrong arity");

    let mut b = GraphBuilder::new(&[1, 2, 2]);
    let c = b.conv(
        GraphBuilder::INPUT,
        Array4::zeros((1, 1, 3, 3)),
        arr1(&[0.0]),
        1,
        0,
    );
    assert!(validate(&b.finish(c)).is_err(), "kernel larger than input");
}

#[test]
fn conv_small_from_tensors_round_trips() {
    use std::collections::BTreeMap;
    use upcc::formats::TensorData;
    let mut rng = Rng::new(21);
    let graph = upcc::ir::build::conv_small(&mut rng);
    let mut tensors = BTreeMap::new();
    let names = ["conv1", "conv2", "fc1", "fc2"];
    let params = graph.nodes.iter().filter_map(|n| match &n.op {
        Op::Conv2d { weight, bias, .. } => Some((
            weight.shape().to_vec(),
            weight.iter().copied().collect::<Vec<_>>(),
            bias.to_vec(),
        )),
        Op::Linear { weight, bias } => Some((
            weight.shape().to_vec(),
            weight.iter().copied().collect(),
            bias.to_vec(),
        )),
        _ => None,
    });
    for (name, (shape, w, b)) in names.iter().zip(params) {
        tensors.insert(format!("{name}.weight"), TensorData { shape, data: w });
        tensors.insert(
            format!("{name}.bias"),
            TensorData {
                shape: vec![b.len()],
                data: b,
            },
        );
    }
    let rebuilt = upcc::ir::build::conv_small_from_tensors(&tensors).unwrap();
    assert_equivalent(&graph, &rebuilt, 22);
    tensors.remove("fc2.bias");
    assert!(upcc::ir::build::conv_small_from_tensors(&tensors).is_none());
}
