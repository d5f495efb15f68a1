//! Graph builders: a small fluent builder (used by tests, benches and lowering helpers) and
//! random networks for property tests.

use super::{Graph, Node, NodeId, Op};
use crate::rng::SplitMix64;
use ndarray::{Array1, Array2, Array4};

/// Seeded generator for random test networks (the crate's [`SplitMix64`], seed mixed so that
/// seed 0 is not the all-zero state).
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed ^ 0x9E37_79B9_7F4A_7C15))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0.unit_f64()
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

/// Appends nodes in topological order; every method returns the new node's id.
pub struct GraphBuilder {
    nodes: Vec<Node>,
}

impl GraphBuilder {
    pub fn new(input_shape: &[usize]) -> Self {
        GraphBuilder {
            nodes: vec![Node {
                name: "input".into(),
                op: Op::Input,
                inputs: vec![],
                shape: input_shape.to_vec(),
                origin: None,
            }],
        }
    }

    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id.index()].shape
    }

    /// Appends a node; the shape must be the op's output shape (checked by `validate`).
    pub fn push(&mut self, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>) -> NodeId {
        let name = format!("{}{}", op.kind(), self.nodes.len());
        self.nodes.push(Node {
            name,
            op,
            inputs,
            shape,
            origin: None,
        });
        NodeId(self.nodes.len() as u32 - 1)
    }

    pub fn linear(&mut self, x: NodeId, weight: Array2<f64>, bias: Array1<f64>) -> NodeId {
        let out = weight.nrows();
        self.push(Op::Linear { weight, bias }, vec![x], vec![out])
    }

    pub fn conv(
        &mut self,
        x: NodeId,
        weight: Array4<f64>,
        bias: Array1<f64>,
        stride: usize,
        padding: usize,
    ) -> NodeId {
        let s = self.shape(x);
        let (cout, _, kh, kw) = weight.dim();
        let ho = (s[1] + 2 * padding).saturating_sub(kh) / stride + 1;
        let wo = (s[2] + 2 * padding).saturating_sub(kw) / stride + 1;
        let op = Op::Conv2d {
            weight,
            bias,
            stride: [stride; 2],
            padding: [padding; 2],
        };
        self.push(op, vec![x], vec![cout, ho, wo])
    }

    pub fn channel_affine(&mut self, x: NodeId, scale: Array1<f64>, shift: Array1<f64>) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(Op::ChannelAffine { scale, shift }, vec![x], shape)
    }

    pub fn add(&mut self, a: NodeId, b: NodeId) -> NodeId {
        let shape = self.shape(a).to_vec();
        self.push(Op::Add, vec![a, b], shape)
    }

    pub fn reshape(&mut self, x: NodeId, shape: Vec<usize>) -> NodeId {
        self.push(Op::Reshape, vec![x], shape)
    }

    pub fn flatten(&mut self, x: NodeId) -> NodeId {
        let n = self.shape(x).iter().product();
        self.reshape(x, vec![n])
    }

    pub fn avgpool(&mut self, x: NodeId, kernel: usize, stride: usize, padding: usize) -> NodeId {
        let s = self.shape(x).to_vec();
        let ho = (s[1] + 2 * padding).saturating_sub(kernel) / stride + 1;
        let wo = (s[2] + 2 * padding).saturating_sub(kernel) / stride + 1;
        let op = Op::AvgPool {
            kernel: [kernel; 2],
            stride: [stride; 2],
            padding: [padding; 2],
        };
        self.push(op, vec![x], vec![s[0], ho, wo])
    }

    pub fn relu(&mut self, x: NodeId) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(Op::Relu, vec![x], shape)
    }

    pub fn finish(self, output: NodeId) -> Graph {
        Graph {
            nodes: self.nodes,
            output,
        }
    }

    // Random-parameter helpers (He-like scaling keeps activations O(1)).
    pub fn random_linear(&mut self, rng: &mut Rng, x: NodeId, out: usize) -> NodeId {
        let inp = self.shape(x)[0];
        let scale = (2.0 / inp as f64).sqrt();
        let w = Array2::from_shape_fn((out, inp), |_| rng.range(-scale, scale));
        let b = Array1::from_shape_fn(out, |_| rng.range(-0.3, 0.3));
        self.linear(x, w, b)
    }

    pub fn random_conv(
        &mut self,
        rng: &mut Rng,
        x: NodeId,
        cout: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> NodeId {
        let cin = self.shape(x)[0];
        let scale = (2.0 / (cin * k * k) as f64).sqrt();
        let w = Array4::from_shape_fn((cout, cin, k, k), |_| rng.range(-scale, scale));
        let b = Array1::from_shape_fn(cout, |_| rng.range(-0.3, 0.3));
        self.conv(x, w, b, stride, padding)
    }

    pub fn random_channel_affine(&mut self, rng: &mut Rng, x: NodeId) -> NodeId {
        let c = self.shape(x)[0];
        let scale = Array1::from_shape_fn(c, |_| rng.range(0.5, 2.0));
        let shift = Array1::from_shape_fn(c, |_| rng.range(-0.5, 0.5));
        self.channel_affine(x, scale, shift)
    }
}

/// Random MLP `d -> hidden... -> classes` with ReLUs between layers.
pub fn random_mlp(rng: &mut Rng, d: usize, hidden: &[usize], classes: usize) -> Graph {
    let mut b = GraphBuilder::new(&[d]);
    let mut x = GraphBuilder::INPUT;
    for &h in hidden {
        x = b.random_linear(rng, x, h);
        x = b.relu(x);
    }
    x = b.random_linear(rng, x, classes);
    b.finish(x)
}

/// Random small CNN on `[c, h, w]`: normalize, conv(k3,s1,p1), batchnorm, relu, conv(k3,s2,p0),
/// relu, avgpool(2,1), flatten, linear, relu, linear.
pub fn random_cnn(rng: &mut Rng, input: [usize; 3], channels: usize, classes: usize) -> Graph {
    let mut b = GraphBuilder::new(&input);
    let mut x = b.random_channel_affine(rng, GraphBuilder::INPUT);
    x = b.random_conv(rng, x, channels, 3, 1, 1);
    x = b.random_channel_affine(rng, x);
    x = b.relu(x);
    x = b.random_conv(rng, x, channels, 3, 2, 0);
    x = b.relu(x);
    x = b.avgpool(x, 2, 1, 0);
    x = b.flatten(x);
    x = b.random_linear(rng, x, 12);
    x = b.relu(x);
    x = b.random_linear(rng, x, classes);
    b.finish(x)
}

/// Random CNN with a two-layer dense head, so that dense rows reach the convs through a
/// linear layer: conv, conv (stride 2), then linear and ReLU twice.
pub fn random_cnn_dense_head(
    rng: &mut Rng,
    input: [usize; 3],
    channels: usize,
    classes: usize,
) -> Graph {
    let mut b = GraphBuilder::new(&input);
    let mut x = b.random_conv(rng, GraphBuilder::INPUT, channels, 3, 1, 1);
    x = b.relu(x);
    x = b.random_conv(rng, x, channels, 3, 2, 0);
    x = b.relu(x);
    x = b.flatten(x);
    x = b.random_linear(rng, x, 12);
    x = b.relu(x);
    x = b.random_linear(rng, x, 10);
    x = b.relu(x);
    x = b.random_linear(rng, x, classes);
    b.finish(x)
}

/// Random residual net: conv stem, one block `relu(conv(relu(conv x)) + x)`, linear head.
pub fn random_resnet(rng: &mut Rng, input: [usize; 3], channels: usize, classes: usize) -> Graph {
    let mut b = GraphBuilder::new(&input);
    let mut x = b.random_conv(rng, GraphBuilder::INPUT, channels, 3, 2, 1);
    x = b.relu(x);
    let mut y = b.random_conv(rng, x, channels, 3, 1, 1);
    y = b.relu(y);
    y = b.random_conv(rng, y, channels, 3, 1, 1);
    let mut z = b.add(y, x);
    z = b.relu(z);
    z = b.flatten(z);
    z = b.random_linear(rng, z, 10);
    z = b.relu(z);
    z = b.random_linear(rng, z, classes);
    b.finish(z)
}

/// The Conv-small architecture (MNIST): conv 1→16 k4 s2, conv 16→32 k4 s2, linear 800→100→10.
pub fn conv_small(rng: &mut Rng) -> Graph {
    let mut b = GraphBuilder::new(&[1, 28, 28]);
    let mut x = b.random_conv(rng, GraphBuilder::INPUT, 16, 4, 2, 0);
    x = b.relu(x);
    x = b.random_conv(rng, x, 32, 4, 2, 0);
    x = b.relu(x);
    x = b.flatten(x);
    x = b.random_linear(rng, x, 100);
    x = b.relu(x);
    x = b.random_linear(rng, x, 10);
    b.finish(x)
}

impl GraphBuilder {
    pub const INPUT: NodeId = NodeId(0);
}

/// Conv-small from named tensors (`conv1.weight`/`.bias`, `conv2.*`, `fc1.*`, `fc2.*`, PyTorch
/// layouts); `None` if a tensor is missing or has the wrong shape.
pub fn conv_small_from_tensors(
    tensors: &std::collections::BTreeMap<String, crate::formats::TensorData>,
) -> Option<Graph> {
    let param = |key: &str, rank: usize| -> Option<&crate::formats::TensorData> {
        tensors
            .get(key)
            .filter(|t| t.shape.len() == rank && t.shape.iter().product::<usize>() == t.data.len())
    };
    let conv = |k: &str| -> Option<(Array4<f64>, Array1<f64>)> {
        let w = param(&format!("{k}.weight"), 4)?;
        let s = &w.shape;
        let weight = Array4::from_shape_vec((s[0], s[1], s[2], s[3]), w.data.clone()).ok()?;
        let bias = Array1::from(param(&format!("{k}.bias"), 1)?.data.clone());
        Some((weight, bias))
    };
    let fc = |k: &str| -> Option<(Array2<f64>, Array1<f64>)> {
        let w = param(&format!("{k}.weight"), 2)?;
        let weight = Array2::from_shape_vec((w.shape[0], w.shape[1]), w.data.clone()).ok()?;
        let bias = Array1::from(param(&format!("{k}.bias"), 1)?.data.clone());
        Some((weight, bias))
    };
    let (w1, b1) = conv("conv1")?;
    let (w2, b2) = conv("conv2")?;
    let (w3, b3) = fc("fc1")?;
    let (w4, b4) = fc("fc2")?;
    let mut b = GraphBuilder::new(&[w1.dim().1, 28, 28]);
    let x = b.conv(GraphBuilder::INPUT, w1, b1, 2, 0);
    let x = b.relu(x);
    let x = b.conv(x, w2, b2, 2, 0);
    let x = b.relu(x);
    let x = b.flatten(x);
    let x = b.linear(x, w3, b3);
    let x = b.relu(x);
    let x = b.linear(x, w4, b4);
    let graph = b.finish(x);
    super::validate(&graph).ok().map(|_| graph)
}
