//! IR validator (see the invariants in the module doc of [`crate::ir`]).

use super::{Graph, Node, Op};

/// A broken IR invariant: always a bug in lowering or in a pass.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationError {
    pub node: String,
    pub message: String,
}

/// Output spatial size of a window op (conv/pool); `None` when the window does not fit.
pub fn window_out(size: usize, kernel: usize, stride: usize, pad: usize) -> Option<usize> {
    if kernel == 0 || stride == 0 || size + 2 * pad < kernel {
        return None;
    }
    Some((size + 2 * pad - kernel) / stride + 1)
}

pub fn validate(graph: &Graph) -> Result<(), ValidationError> {
    if graph.nodes.is_empty() {
        return Err(err("<graph>", "graph has no nodes"));
    }
    if graph.output.index() >= graph.nodes.len() {
        return Err(err("<graph>", "output node does not exist"));
    }
    let mut names = std::collections::HashSet::new();
    for (k, node) in graph.nodes.iter().enumerate() {
        if !names.insert(node.name.as_str()) {
            return Err(err(&node.name, "duplicate node name"));
        }
        if node.shape.is_empty() || node.shape.contains(&0) {
            return Err(err(&node.name, format!("invalid shape {:?}", node.shape)));
        }
        if (k == 0) != matches!(node.op, Op::Input) {
            return Err(err(&node.name, "node 0 must be the only input node"));
        }
        for input in &node.inputs {
            if input.index() >= k {
                return Err(err(
                    &node.name,
                    "inputs must precede the node (topological order)",
                ));
            }
        }
        check_node(graph, node).map_err(|m| err(&node.name, m))?;
    }
    Ok(())
}

fn err(node: &str, message: impl Into<String>) -> ValidationError {
    ValidationError {
        node: node.to_string(),
        message: message.into(),
    }
}

fn all_finite<'a>(values: impl IntoIterator<Item = &'a f64>) -> bool {
    values.into_iter().all(|v| v.is_finite())
}

fn check_node(graph: &Graph, node: &Node) -> Result<(), String> {
    let arity = match node.op {
        Op::Input => 0,
        Op::Add => 2,
        _ => 1,
    };
    if node.inputs.len() != arity {
        return Err(format!(
            "{} expects {arity} input(s), has {}",
            node.op.kind(),
            node.inputs.len()
        ));
    }
    let in_shape: &[usize] = node
        .inputs
        .first()
        .map(|&i| graph.node(i).shape.as_slice())
        .unwrap_or(&[]);
    let in_numel: usize = in_shape.iter().product();
    let expect = |want: &[usize]| -> Result<(), String> {
        if node.shape.as_slice() == want {
            Ok(())
        } else {
            Err(format!(
                "shape {:?} does not match the computed {:?}",
                node.shape, want
            ))
        }
    };
    match &node.op {
        Op::Input => Ok(()),
        Op::Linear { weight, bias } => {
            let (out, inp) = weight.dim();
            if in_shape != [inp] {
                return Err(format!(
                    "linear expects input shape [{inp}], got {in_shape:?}"
                ));
            }
            if bias.len() != out {
                return Err("linear bias length differs from output size".into());
            }
            if !all_finite(weight.iter().chain(bias.iter())) {
                return Err("non-finite parameter".into());
            }
            expect(&[out])
        }
        Op::Conv2d {
            weight,
            bias,
            stride,
            padding,
        } => {
            let (cout, cin, kh, kw) = weight.dim();
            if in_shape.len() != 3 || in_shape[0] != cin {
                return Err(format!(
                    "conv2d expects input [{cin}, H, W], got {in_shape:?}"
                ));
            }
            if bias.len() != cout {
                return Err("conv2d bias length differs from output channels".into());
            }
            if !all_finite(weight.iter().chain(bias.iter())) {
                return Err("non-finite parameter".into());
            }
            let ho = window_out(in_shape[1], kh, stride[0], padding[0]);
            let wo = window_out(in_shape[2], kw, stride[1], padding[1]);
            match (ho, wo) {
                (Some(ho), Some(wo)) => expect(&[cout, ho, wo]),
                _ => Err("conv2d kernel does not fit the input (or zero stride)".into()),
            }
        }
        Op::ChannelAffine { scale, shift } => {
            if scale.len() != in_shape[0] || shift.len() != in_shape[0] {
                return Err("channel_affine parameter length differs from channel count".into());
            }
            if !all_finite(scale.iter().chain(shift.iter())) {
                return Err("non-finite parameter".into());
            }
            expect(in_shape)
        }
        Op::Add => {
            let other = &graph.node(node.inputs[1]).shape;
            if in_shape != other.as_slice() {
                return Err(format!(
                    "add of different shapes {in_shape:?} and {other:?}"
                ));
            }
            expect(in_shape)
        }
        Op::Reshape => {
            if node.numel() != in_numel {
                return Err(format!(
                    "reshape changes the element count {in_numel} -> {}",
                    node.numel()
                ));
            }
            Ok(())
        }
        Op::AvgPool {
            kernel,
            stride,
            padding,
        }
        | Op::MaxPool {
            kernel,
            stride,
            padding,
        } => {
            if in_shape.len() != 3 {
                return Err(format!("pooling expects input [C, H, W], got {in_shape:?}"));
            }
            let ho = window_out(in_shape[1], kernel[0], stride[0], padding[0]);
            let wo = window_out(in_shape[2], kernel[1], stride[1], padding[1]);
            match (ho, wo) {
                (Some(ho), Some(wo)) => expect(&[in_shape[0], ho, wo]),
                _ => Err("pooling window does not fit the input (or zero stride)".into()),
            }
        }
        Op::Relu => expect(in_shape),
    }
}
