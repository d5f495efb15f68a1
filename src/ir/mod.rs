//! The bound-propagation IR.
//!
//! # Specification
//! A [`Graph`] is an arena of [`Node`]s addressed by [`NodeId`] handles. Invariants, checked by
//! [`validate()`] after lowering and after every pass:
//! - Nodes are stored in topological order: every input of node `k` has an id `< k`.
//! - Node 0 is the only [`Op::Input`]; `graph.output` names the logits node.
//! - Every node carries its per-sample shape (no batch dimension): `[C, H, W]` for images,
//!   `[N]` for vectors. Tensors are row-major (C, H, W).
//! - Each op's input count, parameter shapes and output shape agree (see [`Op`]).
//! - Every parameter is finite.
//!
//! Semantics are real arithmetic over the stored `f64` parameters (converted exactly from the
//! `f32` weight files). The perturbation enters at the input node; x + δ is never clipped.

pub mod build;
pub mod dump;
pub mod from_onnx;
pub mod passes;
pub mod validate;

pub use dump::dump;
pub use validate::validate;

use crate::source::Span;
use ndarray::{Array1, Array2, Array4};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl NodeId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// The network input; shape is the input shape.
    Input,
    /// `y = W x + b`, W is `[out, in]`; input shape `[in]`.
    Linear {
        weight: Array2<f64>,
        bias: Array1<f64>,
    },
    /// 2-D cross-correlation with zero padding; W is `[out, in, kh, kw]`; input `[in, H, W]`.
    Conv2d {
        weight: Array4<f64>,
        bias: Array1<f64>,
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// Per-channel affine map `y[c,..] = x[c,..] * scale[c] + shift[c]` (channel = axis 0).
    /// `normalize(mean, std)` lowers to scale = 1/std, shift = -mean/std; inference batchnorm
    /// lowers to scale = γ/√(var+eps), shift = β − mean·scale.
    ChannelAffine {
        scale: Array1<f64>,
        shift: Array1<f64>,
    },
    /// Elementwise sum of exactly two inputs of equal shape.
    Add,
    /// Row-major reshape to the node's shape (flatten is a reshape to `[N]`).
    Reshape,
    /// Average pooling, zero padding counted in the divisor (PyTorch `count_include_pad=True`).
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    /// Parsed and shape-checked; the bound engines refuse it with a diagnostic.
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    Relu,
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Linear { .. } => "linear",
            Op::Conv2d { .. } => "conv2d",
            Op::ChannelAffine { .. } => "channel_affine",
            Op::Add => "add",
            Op::Reshape => "reshape",
            Op::AvgPool { .. } => "avgpool",
            Op::MaxPool { .. } => "maxpool",
            Op::Relu => "relu",
        }
    }

    /// Affine ops are exact in bound propagation; only ReLU (and MaxPool) need relaxation.
    pub fn is_affine(&self) -> bool {
        !matches!(self, Op::Relu | Op::MaxPool { .. })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Layer name from the spec or the ONNX file (unique within a graph).
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Per-sample output shape.
    pub shape: Vec<usize>,
    /// Where the layer was declared, for diagnostics.
    pub origin: Option<Span>,
}

impl Node {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
    pub output: NodeId,
}

impl Graph {
    pub const INPUT: NodeId = NodeId(0);

    /// Number of consumers of each node (the graph output counts as one).
    pub fn consumer_counts(&self) -> Vec<usize> {
        let mut count = vec![0; self.nodes.len()];
        for node in &self.nodes {
            for i in &node.inputs {
                count[i.index()] += 1;
            }
        }
        count[self.output.index()] += 1;
        count
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[0].shape
    }

    pub fn output_shape(&self) -> &[usize] {
        &self.node(self.output).shape
    }

    pub fn ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.nodes.len() as u32).map(NodeId)
    }
}
