//! Stable text dump of a graph, for snapshots and debugging.

use super::{Graph, Op};
use std::fmt::Write;

/// One line per node: `%id name = op(inputs) shape [params]`; parameters are summarised by
/// their shapes and sums so that dumps stay short and stable.
pub fn dump(graph: &Graph) -> String {
    let mut out = String::new();
    for (k, node) in graph.nodes.iter().enumerate() {
        let inputs: Vec<String> = node.inputs.iter().map(|i| format!("%{}", i.0)).collect();
        let params = match &node.op {
            Op::Linear { weight, bias } => format!(
                " w{:?} sum={:.6} b_sum={:.6}",
                weight.dim(),
                weight.sum(),
                bias.sum()
            ),
            Op::Conv2d {
                weight,
                bias,
                stride,
                padding,
            } => format!(
                " w{:?} stride={stride:?} pad={padding:?} sum={:.6} b_sum={:.6}",
                weight.dim(),
                weight.sum(),
                bias.sum()
            ),
            Op::ChannelAffine { scale, shift } => {
                format!(" scale_sum={:.6} shift_sum={:.6}", scale.sum(), shift.sum())
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
            } => format!(" k={kernel:?} stride={stride:?} pad={padding:?}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "%{k} {} = {}({}) {:?}{params}",
            node.name,
            node.op.kind(),
            inputs.join(", "),
            node.shape
        );
    }
    let _ = writeln!(out, "output %{}", graph.output.0);
    out
}
