//! Exact graph rewrites. Each pass computes the same function as its input graph (up to float
//! rounding), so bounds computed on the result are bounds of the original network. [`optimize`]
//! runs them all and validates after every pass.

use super::validate::ValidationError;
use super::{validate, Graph, NodeId, Op};
use ndarray::{Array1, Array2, Axis};

/// All passes in order: fold batchnorm, fold normalize, drop identity reshapes, fuse linear
/// chains, remove dead nodes.
pub fn optimize(graph: &Graph) -> Result<Graph, ValidationError> {
    let passes: [fn(&Graph) -> Graph; 5] = [
        fold_batchnorm,
        fold_normalize,
        drop_identity_reshapes,
        fuse_linear,
        remove_dead,
    ];
    let mut g = graph.clone();
    validate(&g)?;
    for pass in passes {
        g = pass(&g);
        validate(&g)?;
    }
    Ok(g)
}

/// Points every use of `from` (and the output) at `to`.
fn redirect(graph: &mut Graph, from: NodeId, to: NodeId) {
    for node in &mut graph.nodes {
        for i in &mut node.inputs {
            if *i == from {
                *i = to;
            }
        }
    }
    if graph.output == from {
        graph.output = to;
    }
}

/// Keeps the input and every node the output depends on, renumbering in order.
pub fn remove_dead(graph: &Graph) -> Graph {
    let n = graph.nodes.len();
    let mut live = vec![false; n];
    live[0] = true;
    live[graph.output.index()] = true;
    for k in (0..n).rev() {
        if live[k] {
            for i in &graph.nodes[k].inputs {
                live[i.index()] = true;
            }
        }
    }
    let mut new_id = vec![NodeId(0); n];
    let mut nodes = Vec::new();
    for k in 0..n {
        if live[k] {
            new_id[k] = NodeId(nodes.len() as u32);
            let mut node = graph.nodes[k].clone();
            node.inputs = node.inputs.iter().map(|i| new_id[i.index()]).collect();
            nodes.push(node);
        }
    }
    Graph {
        nodes,
        output: new_id[graph.output.index()],
    }
}

/// `ChannelAffine` (inference batchnorm) directly after a conv or linear with no other consumer
/// is folded into that layer's weights and bias.
pub fn fold_batchnorm(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    let uses = graph.consumer_counts();
    for k in 0..g.nodes.len() {
        let Op::ChannelAffine { scale, shift } = g.nodes[k].op.clone() else {
            continue;
        };
        let p = g.nodes[k].inputs[0];
        if uses[p.index()] != 1 {
            continue;
        }
        let folded = match &g.nodes[p.index()].op {
            Op::Linear { weight, bias } => Op::Linear {
                weight: weight * &scale.view().insert_axis(Axis(1)),
                bias: bias * &scale + &shift,
            },
            Op::Conv2d {
                weight,
                bias,
                stride,
                padding,
            } => {
                let mut w = weight.clone();
                for (co, mut wc) in w.axis_iter_mut(Axis(0)).enumerate() {
                    wc *= scale[co];
                }
                Op::Conv2d {
                    weight: w,
                    bias: bias * &scale + &shift,
                    stride: *stride,
                    padding: *padding,
                }
            }
            _ => continue,
        };
        let producer = g.nodes[p.index()].clone();
        let node = &mut g.nodes[k];
        node.op = folded;
        node.inputs = producer.inputs.clone();
        node.name = producer.name;
        node.origin = producer.origin.or(node.origin);
        // The producer is now dead; `remove_dead` drops it.
    }
    remove_dead(&g)
}

/// `ChannelAffine` (normalize) whose only consumer is a linear layer (directly or through one
/// reshape) or a conv without zero padding is folded into that consumer. A padded conv is left
/// alone: its zero padding would become `shift` after folding, which is not exact.
pub fn fold_normalize(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    let uses = graph.consumer_counts();
    let mut single_consumer = vec![None; g.nodes.len()];
    for (c, node) in g.nodes.iter().enumerate() {
        for i in &node.inputs {
            if uses[i.index()] == 1 && *i != g.output {
                single_consumer[i.index()] = Some(c);
            }
        }
    }
    for k in 0..g.nodes.len() {
        let Op::ChannelAffine { scale, shift } = g.nodes[k].op.clone() else {
            continue;
        };
        let Some(mut c) = single_consumer[k] else {
            continue;
        };
        let channels = scale.len();
        let plane = g.nodes[k].numel() / channels;
        // Through one reshape: the consumer sees element i of channel i / plane.
        let via_reshape = matches!(g.nodes[c].op, Op::Reshape);
        if via_reshape {
            match single_consumer[c] {
                Some(next) if matches!(g.nodes[next].op, Op::Linear { .. }) => c = next,
                _ => continue,
            }
        }
        let folded = match &g.nodes[c].op {
            Op::Linear { weight, bias } => {
                let per_elem =
                    |v: &Array1<f64>| Array1::from_shape_fn(weight.ncols(), |i| v[i / plane]);
                let (s, t) = (per_elem(&scale), per_elem(&shift));
                Op::Linear {
                    weight: weight * &s.view().insert_axis(Axis(0)),
                    bias: bias + &weight.dot(&t),
                }
            }
            Op::Conv2d {
                weight,
                bias,
                stride,
                padding,
            } if *padding == [0, 0] && !via_reshape => {
                let mut w = weight.clone();
                let mut b = bias.clone();
                for co in 0..w.dim().0 {
                    for ci in 0..channels {
                        let mut taps = w.index_axis_mut(Axis(0), co);
                        let mut tap = taps.index_axis_mut(Axis(0), ci);
                        b[co] += tap.sum() * shift[ci];
                        tap *= scale[ci];
                    }
                }
                Op::Conv2d {
                    weight: w,
                    bias: b,
                    stride: *stride,
                    padding: *padding,
                }
            }
            _ => continue,
        };
        let source = g.nodes[k].inputs[0];
        g.nodes[c].op = folded;
        if via_reshape {
            let reshape = single_consumer[k].expect("checked above");
            g.nodes[reshape].inputs = vec![source];
        } else {
            g.nodes[c].inputs = vec![source];
        }
    }
    remove_dead(&g)
}

/// Reshapes to the same shape are dropped; a reshape of a reshape reads the original.
pub fn drop_identity_reshapes(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    for k in 1..g.nodes.len() {
        if !matches!(g.nodes[k].op, Op::Reshape) {
            continue;
        }
        let mut src = g.nodes[k].inputs[0];
        while matches!(g.nodes[src.index()].op, Op::Reshape) {
            src = g.nodes[src.index()].inputs[0];
        }
        g.nodes[k].inputs = vec![src];
        if g.nodes[src.index()].shape == g.nodes[k].shape {
            redirect(&mut g, NodeId(k as u32), src);
        }
    }
    remove_dead(&g)
}

/// `linear ∘ linear` (the first with no other consumer) becomes one linear layer when the
/// product has fewer weights than the pair.
pub fn fuse_linear(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    let uses = graph.consumer_counts();
    for k in 0..g.nodes.len() {
        let Op::Linear {
            weight: w2,
            bias: b2,
        } = g.nodes[k].op.clone()
        else {
            continue;
        };
        let p = g.nodes[k].inputs[0];
        if uses[p.index()] != 1 {
            continue;
        }
        let Op::Linear {
            weight: w1,
            bias: b1,
        } = g.nodes[p.index()].op.clone()
        else {
            continue;
        };
        let (out, mid, inp) = (w2.nrows(), w1.nrows(), w1.ncols());
        if out * inp > out * mid + mid * inp {
            continue;
        }
        let weight: Array2<f64> = w2.dot(&w1);
        let bias = w2.dot(&b1) + &b2;
        let inputs = g.nodes[p.index()].inputs.clone();
        let node = &mut g.nodes[k];
        node.op = Op::Linear { weight, bias };
        node.inputs = inputs;
    }
    remove_dead(&g)
}
