//! Import of a decoded ONNX model into the IR, with constant folding.
//!
//! The ONNX graph must have one non-initializer input whose first dimension is the batch (1 or
//! symbolic); IR shapes drop it. Nodes whose inputs are all constants are evaluated (Constant,
//! Shape, Gather, Unsqueeze, Squeeze, Concat, Cast, Identity, arithmetic, Reshape, ...). Nodes on
//! the activation path lower to IR ops: Conv, Gemm, MatMul (constant weight), Add/Sub/Mul/Div with
//! a per-channel constant (→ `ChannelAffine`), Add/Sub of two activations, Relu, Flatten, Reshape,
//! BatchNormalization, AveragePool, GlobalAveragePool, MaxPool, Identity, Dropout.
//! Nodes that do not reach the output are dropped.

use super::{Graph, Node, NodeId, Op};
use crate::formats::onnx::{OnnxAttribute, OnnxModel, OnnxNode};
use crate::formats::TensorData;
use ndarray::{Array1, Array2, Array4};
use std::collections::{BTreeSet, HashMap};

#[derive(Clone, Debug, PartialEq)]
pub enum ImportError {
    /// Every node upcc cannot import: (node name, op type). For a known op type used in an
    /// unsupported way the second element adds the reason, e.g. `"Conv (group 2)"`.
    Unsupported(Vec<(String, String)>),
    /// Anything else wrong with the graph (bad shapes, dangling names, non-finite weights...).
    Invalid(String),
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Unsupported(nodes) => {
                write!(f, "unsupported ONNX nodes: ")?;
                let list: Vec<String> = nodes
                    .iter()
                    .map(|(name, op)| format!("{name} ({op})"))
                    .collect();
                write!(f, "{}", list.join(", "))
            }
            ImportError::Invalid(message) => write!(f, "invalid ONNX model: {message}"),
        }
    }
}

impl std::error::Error for ImportError {}

pub fn import(model: &OnnxModel) -> Result<Graph, ImportError> {
    let mut importer = Importer::default();
    importer.add_input(model)?;
    for (index, node) in model.nodes.iter().enumerate() {
        importer.import_node(index, node);
    }
    if !importer.unsupported.is_empty() {
        return Err(ImportError::Unsupported(importer.unsupported));
    }
    if let Some(message) = importer.invalid {
        return Err(ImportError::Invalid(message));
    }
    let output = match model.graph_outputs.as_slice() {
        [output] => output,
        outputs => {
            return Err(ImportError::Invalid(format!(
                "expected one graph output, found {}",
                outputs.len()
            )))
        }
    };
    let output_id = match importer.values.get(&output.name) {
        Some(Value::Act(id)) => *id,
        Some(_) => {
            return Err(ImportError::Invalid(format!(
                "output '{}' does not depend on the input",
                output.name
            )))
        }
        None => {
            return Err(ImportError::Invalid(format!(
                "output '{}' is never computed",
                output.name
            )))
        }
    };
    let graph = prune(importer.nodes, output_id);
    check_finite(&graph)?;
    super::validate(&graph)
        .map_err(|e| ImportError::Invalid(format!("node '{}': {}", e.node, e.message)))?;
    Ok(graph)
}

/// A value flowing along an ONNX edge.
#[derive(Clone, Debug)]
enum Value {
    /// Known at import time; shape is the full ONNX shape.
    Const(TensorData),
    /// Depends on the input; per-sample shape is the IR node's.
    Act(NodeId),
    /// Produced by a node that could not be imported.
    Unknown,
}

/// Why one node could not be imported.
enum Fail {
    /// Unsupported use of a known op, with the reason.
    Unsupported(String),
    Invalid(String),
}

type NodeResult<T> = Result<T, Fail>;

fn unsupported<T>(reason: impl Into<String>) -> NodeResult<T> {
    Err(Fail::Unsupported(reason.into()))
}

fn invalid<T>(message: impl Into<String>) -> NodeResult<T> {
    Err(Fail::Invalid(message.into()))
}

const KNOWN_OPS: &[&str] = &[
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Cast",
    "Concat",
    "Constant",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gather",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "MatMul",
    "MaxPool",
    "Mul",
    "Relu",
    "Reshape",
    "Shape",
    "Squeeze",
    "Sub",
    "Unsqueeze",
];

#[derive(Default)]
struct Importer {
    nodes: Vec<Node>,
    values: HashMap<String, Value>,
    names: BTreeSet<String>,
    unsupported: Vec<(String, String)>,
    invalid: Option<String>,
}

impl Importer {
    fn add_input(&mut self, model: &OnnxModel) -> Result<(), ImportError> {
        for (name, tensor) in &model.initializers {
            self.values
                .insert(name.clone(), Value::Const(tensor.clone()));
        }
        let inputs: Vec<_> = model
            .graph_inputs
            .iter()
            .filter(|i| !model.initializers.contains_key(&i.name))
            .collect();
        let input = match inputs.as_slice() {
            [input] => input,
            _ => {
                return Err(ImportError::Invalid(format!(
                    "expected one graph input, found {}",
                    inputs.len()
                )))
            }
        };
        let shape = match input.dims.split_first() {
            Some((Some(1) | None, rest)) if !rest.is_empty() => rest
                .iter()
                .map(|d| d.filter(|&d| d > 0))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| {
                    ImportError::Invalid(format!(
                        "input '{}' has unknown per-sample dimensions",
                        input.name
                    ))
                })?,
            _ => {
                return Err(ImportError::Invalid(format!(
                    "input '{}' must have a batch dimension of 1 then known sizes, found {:?}",
                    input.name, input.dims
                )))
            }
        };
        self.names.insert(input.name.clone());
        self.nodes.push(Node {
            name: input.name.clone(),
            op: Op::Input,
            inputs: vec![],
            shape,
            origin: None,
        });
        self.values
            .insert(input.name.clone(), Value::Act(Graph::INPUT));
        Ok(())
    }

    fn import_node(&mut self, index: usize, node: &OnnxNode) {
        let name = if node.name.is_empty() {
            format!("{}_{index}", node.op_type)
        } else {
            node.name.clone()
        };
        if !KNOWN_OPS.contains(&node.op_type.as_str()) {
            self.unsupported.push((name, node.op_type.clone()));
            self.set_outputs(node, vec![]);
            return;
        }
        let mut inputs = Vec::new();
        for input in &node.inputs {
            if input.is_empty() {
                inputs.push(None);
                continue;
            }
            match self.values.get(input) {
                Some(Value::Unknown) => {
                    self.set_outputs(node, vec![]);
                    return;
                }
                Some(value) => inputs.push(Some(value.clone())),
                None => {
                    self.invalid.get_or_insert_with(|| {
                        format!("node '{name}' reads undefined tensor '{input}'")
                    });
                    self.set_outputs(node, vec![]);
                    return;
                }
            }
        }
        let lowered = self
            .lower(&name, node, &inputs)
            .and_then(|value| match value {
                Value::Act(id) if self.shape(id).contains(&0) => {
                    invalid(format!("empty result shape {:?}", self.shape(id)))
                }
                value => Ok(value),
            });
        match lowered {
            Ok(value) => self.set_outputs(node, vec![value]),
            Err(Fail::Unsupported(reason)) => {
                self.unsupported
                    .push((name, format!("{} ({reason})", node.op_type)));
                self.set_outputs(node, vec![]);
            }
            Err(Fail::Invalid(message)) => {
                self.invalid
                    .get_or_insert_with(|| format!("node '{name}' ({}): {message}", node.op_type));
                self.set_outputs(node, vec![]);
            }
        }
    }

    /// Binds the node's outputs; outputs without a value become `Unknown`.
    fn set_outputs(&mut self, node: &OnnxNode, values: Vec<Value>) {
        let mut values = values.into_iter();
        for output in node.outputs.iter().filter(|o| !o.is_empty()) {
            self.values
                .insert(output.clone(), values.next().unwrap_or(Value::Unknown));
        }
    }

    fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id.index()].shape
    }

    fn push(&mut self, name: &str, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>) -> Value {
        Value::Act(self.push_id(name, op, inputs, shape))
    }

    /// Appends a node under a unique name (suffix `_k` on clashes).
    fn push_id(&mut self, name: &str, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>) -> NodeId {
        let mut unique = name.to_string();
        let mut k = 1;
        while !self.names.insert(unique.clone()) {
            unique = format!("{name}_{k}");
            k += 1;
        }
        self.nodes.push(Node {
            name: unique,
            op,
            inputs,
            shape,
            origin: None,
        });
        NodeId((self.nodes.len() - 1) as u32)
    }

    /// Full ONNX shape of a value (batch 1 prepended for activations).
    fn full_shape(&self, value: &Value) -> Vec<usize> {
        match value {
            Value::Const(t) => t.shape.clone(),
            Value::Act(id) => std::iter::once(1)
                .chain(self.shape(*id).iter().copied())
                .collect(),
            Value::Unknown => vec![],
        }
    }

    fn lower(
        &mut self,
        name: &str,
        node: &OnnxNode,
        inputs: &[Option<Value>],
    ) -> NodeResult<Value> {
        let op = node.op_type.as_str();
        let input = |i: usize| inputs.get(i).cloned().flatten();
        let first = input(0);
        if op == "Constant" {
            return constant_attr(node).map(Value::Const);
        }
        if op == "Shape" {
            let shape =
                self.full_shape(&first.ok_or(Fail::Invalid("Shape needs an input".into()))?);
            let rank = shape.len() as i64;
            let start = clamp_axis(attr_int(node, "start", 0), rank) as usize;
            let end = clamp_axis(attr_int(node, "end", rank), rank) as usize;
            let dims: Vec<f64> = shape
                .get(start..end.max(start))
                .unwrap_or(&[])
                .iter()
                .map(|&d| d as f64)
                .collect();
            return Ok(Value::Const(TensorData {
                shape: vec![dims.len()],
                data: dims,
            }));
        }
        if matches!(op, "Identity" | "Dropout") {
            return first.ok_or(Fail::Invalid("missing input".into()));
        }
        let all_const = inputs
            .iter()
            .flatten()
            .all(|v| matches!(v, Value::Const(_)));
        if all_const {
            let consts: Vec<Option<TensorData>> = inputs
                .iter()
                .map(|v| match v {
                    Some(Value::Const(t)) => Some(t.clone()),
                    _ => None,
                })
                .collect();
            return fold(node, &consts).map(Value::Const);
        }
        let Some(Value::Act(x)) = first else {
            return match op {
                "Add" | "Mul" => self.lower(name, &swap_inputs(node), &[input(1), input(0)]),
                "Sub" => self.lower_const_minus(name, input(0), input(1)),
                _ => unsupported("the first input must be the activation"),
            };
        };
        match op {
            "Conv" => self.lower_conv(name, node, x, input(1), input(2)),
            "Gemm" => self.lower_gemm(name, node, x, input(1), input(2)),
            "MatMul" => self.lower_matmul(name, x, input(1)),
            "Add" | "Sub" | "Mul" | "Div" => self.lower_binary(name, op, x, input(1)),
            "Relu" => {
                let shape = self.shape(x).to_vec();
                Ok(self.push(name, Op::Relu, vec![x], shape))
            }
            "Flatten" => {
                let full = self.full_shape(&Value::Act(x));
                let axis = normalize_axis(attr_int(node, "axis", 1), full.len() + 1)
                    .ok_or(Fail::Invalid("Flatten axis out of range".into()))?;
                let outer: usize = full[..axis].iter().product();
                let inner: usize = full[axis..].iter().product();
                self.reshape(name, x, vec![outer, inner])
            }
            "Reshape" => {
                let target = match input(1) {
                    Some(Value::Const(t)) => t.data,
                    None => match node.attributes.get("shape") {
                        Some(OnnxAttribute::Ints(v)) => v.iter().map(|&d| d as f64).collect(),
                        _ => return invalid("Reshape needs a target shape"),
                    },
                    _ => return unsupported("the target shape is not a constant"),
                };
                let full = self.full_shape(&Value::Act(x));
                let out = reshape_target(&full, &target, attr_int(node, "allowzero", 0) != 0)?;
                self.reshape(name, x, out)
            }
            "BatchNormalization" => self.lower_batchnorm(name, node, x, &inputs[1..]),
            "AveragePool" | "MaxPool" | "GlobalAveragePool" => self.lower_pool(name, node, x),
            _ => unsupported("on an activation"),
        }
    }

    /// Reshape of an activation to the full ONNX shape `out`, whose first dimension is the batch.
    fn reshape(&mut self, name: &str, x: NodeId, out: Vec<usize>) -> NodeResult<Value> {
        match out.split_first() {
            Some((1, rest)) if !rest.is_empty() => {
                if rest == self.shape(x) {
                    Ok(Value::Act(x))
                } else {
                    Ok(self.push(name, Op::Reshape, vec![x], rest.to_vec()))
                }
            }
            _ => unsupported(format!(
                "result shape {out:?} does not keep a batch dimension of 1 first"
            )),
        }
    }

    fn lower_conv(
        &mut self,
        name: &str,
        node: &OnnxNode,
        x: NodeId,
        weight: Option<Value>,
        bias: Option<Value>,
    ) -> NodeResult<Value> {
        let Some(Value::Const(w)) = weight else {
            return unsupported("non-constant weight");
        };
        let (o, c, kh, kw) = match w.shape.as_slice() {
            &[o, c, kh, kw] => (o, c, kh, kw),
            s => {
                return unsupported(format!(
                    "weight of rank {} (only 2-D convolutions)",
                    s.len()
                ))
            }
        };
        if attr_int(node, "group", 1) != 1 {
            return unsupported(format!("group {}", attr_int(node, "group", 1)));
        }
        if let Some(k) = attr_ints(node, "kernel_shape") {
            if k != [kh as i64, kw as i64] {
                return invalid(format!(
                    "kernel_shape {k:?} disagrees with the weight shape {:?}",
                    w.shape
                ));
            }
        }
        let in_shape = self.shape(x).to_vec();
        let &[ci, h, wd] = in_shape.as_slice() else {
            return invalid(format!("input shape {in_shape:?} is not [C, H, W]"));
        };
        if ci != c {
            return invalid(format!("input has {ci} channels, the weight expects {c}"));
        }
        let (stride, padding, out_hw) = spatial(node, [h, wd], [kh, kw])?;
        let bias = match bias {
            None => Array1::zeros(o),
            Some(Value::Const(b)) if b.numel() == o => Array1::from(b.data),
            Some(Value::Const(b)) => {
                return invalid(format!(
                    "bias shape {:?} does not match {o} channels",
                    b.shape
                ))
            }
            Some(_) => return unsupported("non-constant bias"),
        };
        let weight = Array4::from_shape_vec((o, c, kh, kw), w.data)
            .map_err(|e| Fail::Invalid(e.to_string()))?;
        Ok(self.push(
            name,
            Op::Conv2d {
                weight,
                bias,
                stride,
                padding,
            },
            vec![x],
            vec![o, out_hw[0], out_hw[1]],
        ))
    }

    fn lower_gemm(
        &mut self,
        name: &str,
        node: &OnnxNode,
        x: NodeId,
        b: Option<Value>,
        c: Option<Value>,
    ) -> NodeResult<Value> {
        if attr_int(node, "transA", 0) != 0 {
            return unsupported("transA = 1 on the activation");
        }
        let Some(Value::Const(b)) = b else {
            return unsupported("non-constant weight");
        };
        let &[k_in] = self.shape(x) else {
            return invalid(format!("input shape {:?} is not a vector", self.shape(x)));
        };
        let &[r, cols] = b.shape.as_slice() else {
            return invalid("weight is not a matrix");
        };
        let alpha = attr_float(node, "alpha", 1.0);
        let beta = attr_float(node, "beta", 1.0);
        let trans_b = attr_int(node, "transB", 0) != 0;
        let (k, n) = if trans_b { (cols, r) } else { (r, cols) };
        if k != k_in {
            return invalid(format!("input has {k_in} features, the weight expects {k}"));
        }
        let weight = Array2::from_shape_fn((n, k), |(i, j)| {
            alpha
                * if trans_b {
                    b.data[i * cols + j]
                } else {
                    b.data[j * cols + i]
                }
        });
        let bias = match c {
            None => Array1::zeros(n),
            Some(Value::Const(c)) => match broadcast_to(&c, &[1, n]) {
                Some(values) => {
                    Array1::from(values.into_iter().map(|v| beta * v).collect::<Vec<_>>())
                }
                None => {
                    return invalid(format!(
                        "bias shape {:?} does not broadcast to [1, {n}]",
                        c.shape
                    ))
                }
            },
            Some(_) => return unsupported("non-constant bias"),
        };
        Ok(self.push(name, Op::Linear { weight, bias }, vec![x], vec![n]))
    }

    fn lower_matmul(&mut self, name: &str, x: NodeId, b: Option<Value>) -> NodeResult<Value> {
        let Some(Value::Const(b)) = b else {
            return unsupported("product of two activations");
        };
        let &[k_in] = self.shape(x) else {
            return unsupported(format!(
                "activation of per-sample shape {:?} (only vectors)",
                self.shape(x)
            ));
        };
        let &[k, n] = b.shape.as_slice() else {
            return unsupported("constant operand is not a matrix");
        };
        if k != k_in {
            return invalid(format!("input has {k_in} features, the matrix expects {k}"));
        }
        let weight = Array2::from_shape_fn((n, k), |(i, j)| b.data[j * n + i]);
        Ok(self.push(
            name,
            Op::Linear {
                weight,
                bias: Array1::zeros(n),
            },
            vec![x],
            vec![n],
        ))
    }

    /// `x op y` where `x` is an activation.
    fn lower_binary(
        &mut self,
        name: &str,
        op: &str,
        x: NodeId,
        y: Option<Value>,
    ) -> NodeResult<Value> {
        let shape = self.shape(x).to_vec();
        match y {
            Some(Value::Act(y)) => {
                if self.shape(y) != shape.as_slice() {
                    return unsupported(format!(
                        "broadcast between activations {shape:?} and {:?}",
                        self.shape(y)
                    ));
                }
                match op {
                    "Add" => Ok(self.push(name, Op::Add, vec![x, y], shape)),
                    "Sub" => {
                        let negated = self.affine(
                            &format!("{name}/neg"),
                            y,
                            vec![-1.0; shape[0]],
                            vec![0.0; shape[0]],
                        );
                        Ok(self.push(name, Op::Add, vec![x, negated], shape))
                    }
                    _ => unsupported("product of two activations"),
                }
            }
            Some(Value::Const(c)) => {
                let per_channel = self.per_channel(x, &c)?;
                let channels = per_channel.len();
                let (scale, shift) = match op {
                    "Add" => (vec![1.0; channels], per_channel),
                    "Sub" => (
                        vec![1.0; channels],
                        per_channel.iter().map(|v| -v).collect(),
                    ),
                    "Mul" => (per_channel, vec![0.0; channels]),
                    "Div" => {
                        if per_channel.contains(&0.0) {
                            return invalid("division by zero");
                        }
                        (
                            per_channel.iter().map(|v| 1.0 / v).collect(),
                            vec![0.0; channels],
                        )
                    }
                    _ => return unsupported("binary op"),
                };
                Ok(Value::Act(self.affine(name, x, scale, shift)))
            }
            _ => invalid("missing second input"),
        }
    }

    /// `c - x` for a constant `c` and an activation `x`.
    fn lower_const_minus(
        &mut self,
        name: &str,
        c: Option<Value>,
        x: Option<Value>,
    ) -> NodeResult<Value> {
        let (Some(Value::Const(c)), Some(Value::Act(x))) = (c, x) else {
            return invalid("missing input");
        };
        let per_channel = self.per_channel(x, &c)?;
        Ok(Value::Act(self.affine(
            name,
            x,
            vec![-1.0; per_channel.len()],
            per_channel,
        )))
    }

    fn affine(&mut self, name: &str, x: NodeId, scale: Vec<f64>, shift: Vec<f64>) -> NodeId {
        let shape = self.shape(x).to_vec();
        let op = Op::ChannelAffine {
            scale: Array1::from(scale),
            shift: Array1::from(shift),
        };
        self.push_id(name, op, vec![x], shape)
    }

    /// The constant broadcast against activation `x`, as one value per channel (axis 0).
    fn per_channel(&self, x: NodeId, c: &TensorData) -> NodeResult<Vec<f64>> {
        let shape = self.shape(x).to_vec();
        let full: Vec<usize> = std::iter::once(1).chain(shape.iter().copied()).collect();
        let Some(values) = broadcast_to(c, &full) else {
            return unsupported(format!(
                "constant of shape {:?} does not broadcast to {full:?}",
                c.shape
            ));
        };
        let channels = shape[0];
        let slab = values.len() / channels;
        let per_channel: Vec<f64> = (0..channels).map(|ch| values[ch * slab]).collect();
        for (ch, chunk) in values.chunks(slab).enumerate() {
            if chunk.iter().any(|&v| v != per_channel[ch]) {
                return unsupported("constant varies within a channel");
            }
        }
        Ok(per_channel)
    }

    fn lower_batchnorm(
        &mut self,
        name: &str,
        node: &OnnxNode,
        x: NodeId,
        params: &[Option<Value>],
    ) -> NodeResult<Value> {
        if node.outputs.iter().skip(1).any(|o| !o.is_empty())
            || attr_int(node, "training_mode", 0) != 0
        {
            return unsupported("training mode");
        }
        let channels = self.shape(x)[0];
        let mut vectors = Vec::new();
        for p in params.iter().take(4) {
            match p {
                Some(Value::Const(t)) if t.numel() == channels => vectors.push(t.data.clone()),
                Some(Value::Const(t)) => {
                    return invalid(format!(
                        "parameter shape {:?} for {channels} channels",
                        t.shape
                    ))
                }
                _ => return unsupported("non-constant parameters"),
            }
        }
        let [gamma, beta, mean, var] = vectors.as_slice() else {
            return invalid("needs scale, B, mean and var");
        };
        let eps = attr_float(node, "epsilon", 1e-5);
        let scale: Vec<f64> = gamma
            .iter()
            .zip(var)
            .map(|(g, v)| g / (v + eps).sqrt())
            .collect();
        let shift = beta
            .iter()
            .zip(mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        Ok(Value::Act(self.affine(name, x, scale, shift)))
    }

    fn lower_pool(&mut self, name: &str, node: &OnnxNode, x: NodeId) -> NodeResult<Value> {
        let in_shape = self.shape(x).to_vec();
        let &[c, h, w] = in_shape.as_slice() else {
            return invalid(format!("input shape {in_shape:?} is not [C, H, W]"));
        };
        if node.op_type == "GlobalAveragePool" {
            let op = Op::AvgPool {
                kernel: [h, w],
                stride: [1, 1],
                padding: [0, 0],
            };
            return Ok(self.push(name, op, vec![x], vec![c, 1, 1]));
        }
        let kernel = match attr_ints(node, "kernel_shape").as_deref() {
            Some(&[kh, kw]) if kh > 0 && kw > 0 => [kh as usize, kw as usize],
            _ => return unsupported("kernel_shape is not two positive sizes"),
        };
        if attr_int(node, "ceil_mode", 0) != 0 {
            return unsupported("ceil_mode 1");
        }
        let (stride, padding, out) = spatial(node, [h, w], kernel)?;
        let op = if node.op_type == "MaxPool" {
            if node.outputs.iter().skip(1).any(|o| !o.is_empty()) {
                return unsupported("indices output");
            }
            Op::MaxPool {
                kernel,
                stride,
                padding,
            }
        } else {
            if padding != [0, 0] && attr_int(node, "count_include_pad", 0) == 0 {
                return unsupported("padding excluded from the average");
            }
            Op::AvgPool {
                kernel,
                stride,
                padding,
            }
        };
        Ok(self.push(name, op, vec![x], vec![c, out[0], out[1]]))
    }
}

/// Largest padding accepted (guards arithmetic on hostile files).
const MAX_PAD: i64 = 1 << 16;

/// Largest constant (in elements) that folding or broadcasting materialises.
const MAX_FOLD: usize = 1 << 24;

/// Stride, symmetric padding and output size of a 2-D window op.
fn spatial(
    node: &OnnxNode,
    in_hw: [usize; 2],
    kernel: [usize; 2],
) -> NodeResult<([usize; 2], [usize; 2], [usize; 2])> {
    let stride = match attr_ints(node, "strides").as_deref() {
        None => [1, 1],
        Some(&[a, b]) if a > 0 && b > 0 => [a as usize, b as usize],
        Some(s) => return invalid(format!("bad strides {s:?}")),
    };
    if let Some(d) = attr_ints(node, "dilations") {
        if d.iter().any(|&v| v != 1) {
            return unsupported(format!("dilations {d:?}"));
        }
    }
    let auto_pad = match node.attributes.get("auto_pad") {
        Some(OnnxAttribute::String(s)) => s.as_str(),
        _ => "NOTSET",
    };
    let mut padding = [0, 0];
    match auto_pad {
        "NOTSET" => match attr_ints(node, "pads").as_deref() {
            None => {}
            Some(&[t, l, b, r])
                if t == b && l == r && (0..=MAX_PAD).contains(&t) && (0..=MAX_PAD).contains(&l) =>
            {
                padding = [t as usize, l as usize]
            }
            Some(p) => return unsupported(format!("asymmetric or negative pads {p:?}")),
        },
        "VALID" => {}
        "SAME_UPPER" | "SAME_LOWER" => {
            for i in 0..2 {
                let out = in_hw[i].div_ceil(stride[i]);
                let total = ((out - 1) * stride[i] + kernel[i]).saturating_sub(in_hw[i]);
                if !total.is_multiple_of(2) {
                    return unsupported(format!("auto_pad {auto_pad} with odd total padding"));
                }
                padding[i] = total / 2;
            }
        }
        other => return unsupported(format!("auto_pad {other}")),
    }
    let mut out = [0, 0];
    for i in 0..2 {
        let padded = in_hw[i] + 2 * padding[i];
        if padded < kernel[i] {
            return invalid(format!(
                "kernel {kernel:?} is larger than the padded input {in_hw:?}"
            ));
        }
        out[i] = (padded - kernel[i]) / stride[i] + 1;
    }
    Ok((stride, padding, out))
}

fn attr_int(node: &OnnxNode, key: &str, default: i64) -> i64 {
    match node.attributes.get(key) {
        Some(OnnxAttribute::Int(v)) => *v,
        _ => default,
    }
}

fn attr_float(node: &OnnxNode, key: &str, default: f64) -> f64 {
    match node.attributes.get(key) {
        Some(OnnxAttribute::Float(v)) => f64::from(*v),
        _ => default,
    }
}

fn attr_ints(node: &OnnxNode, key: &str) -> Option<Vec<i64>> {
    match node.attributes.get(key) {
        Some(OnnxAttribute::Ints(v)) => Some(v.clone()),
        _ => None,
    }
}

fn swap_inputs(node: &OnnxNode) -> OnnxNode {
    let mut swapped = node.clone();
    swapped.inputs.swap(0, 1);
    swapped
}

/// Axis in `0..rank` from a possibly negative ONNX axis.
fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let rank = rank as i64;
    let a = if axis < 0 { axis + rank } else { axis };
    (0..rank).contains(&a).then_some(a as usize)
}

/// Slice bound clamped to `0..=rank` (ONNX Shape start/end semantics).
fn clamp_axis(axis: i64, rank: i64) -> i64 {
    let a = if axis < 0 { axis + rank } else { axis };
    a.clamp(0, rank)
}

fn numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Numpy broadcast of two shapes.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    (0..rank)
        .map(|i| {
            let da = if i + a.len() >= rank {
                a[i + a.len() - rank]
            } else {
                1
            };
            let db = if i + b.len() >= rank {
                b[i + b.len() - rank]
            } else {
                1
            };
            match (da, db) {
                _ if da == db => Some(da),
                (1, d) | (d, 1) => Some(d),
                _ => None,
            }
        })
        .collect()
}

/// `t` broadcast to exactly `target` (row-major values), if numpy broadcasting allows it.
fn broadcast_to(t: &TensorData, target: &[usize]) -> Option<Vec<f64>> {
    if broadcast_shape(&t.shape, target)? != target {
        return None;
    }
    let total = numel(target).filter(|&n| n <= MAX_FOLD)?;
    let offset = target.len() - t.shape.len();
    let src_strides = strides(&t.shape);
    let dst_strides = strides(target);
    Some(
        (0..total)
            .map(|flat| {
                let mut src = 0;
                for (i, &d) in t.shape.iter().enumerate() {
                    if d != 1 {
                        src +=
                            (flat / dst_strides[i + offset]) % target[i + offset] * src_strides[i];
                    }
                }
                t.data[src]
            })
            .collect(),
    )
}

fn elementwise(
    a: &TensorData,
    b: &TensorData,
    f: impl Fn(f64, f64) -> f64,
) -> NodeResult<TensorData> {
    let shape = broadcast_shape(&a.shape, &b.shape).ok_or_else(|| {
        Fail::Invalid(format!(
            "shapes {:?} and {:?} do not broadcast",
            a.shape, b.shape
        ))
    })?;
    let too_large = || Fail::Unsupported("constant too large to fold".into());
    let xs = broadcast_to(a, &shape).ok_or_else(too_large)?;
    let ys = broadcast_to(b, &shape).ok_or_else(too_large)?;
    Ok(TensorData {
        shape,
        data: xs.iter().zip(&ys).map(|(&x, &y)| f(x, y)).collect(),
    })
}

/// The value of a Constant node.
fn constant_attr(node: &OnnxNode) -> NodeResult<TensorData> {
    let (key, attr) = node
        .attributes
        .iter()
        .next()
        .ok_or(Fail::Invalid("Constant without a value".into()))?;
    Ok(match (key.as_str(), attr) {
        ("value", OnnxAttribute::Tensor(t)) => t.clone(),
        ("value_float", OnnxAttribute::Float(v)) => TensorData {
            shape: vec![],
            data: vec![f64::from(*v)],
        },
        ("value_int", OnnxAttribute::Int(v)) => TensorData {
            shape: vec![],
            data: vec![*v as f64],
        },
        ("value_floats", OnnxAttribute::Floats(v)) => TensorData {
            shape: vec![v.len()],
            data: v.iter().map(|&x| f64::from(x)).collect(),
        },
        ("value_ints", OnnxAttribute::Ints(v)) => TensorData {
            shape: vec![v.len()],
            data: v.iter().map(|&x| x as f64).collect(),
        },
        (key, _) => return unsupported(format!("attribute '{key}'")),
    })
}

/// Integer values of a constant (shapes, axes, indices).
fn as_ints(t: &TensorData) -> NodeResult<Vec<i64>> {
    t.data
        .iter()
        .map(|&v| {
            if v.fract() == 0.0 && v.abs() < 1e15 {
                Ok(v as i64)
            } else {
                invalid(format!("{v} is not an integer"))
            }
        })
        .collect()
}

/// ONNX Reshape target resolution (`0` copies, `-1` infers).
fn reshape_target(input: &[usize], target: &[f64], allow_zero: bool) -> NodeResult<Vec<usize>> {
    let target = as_ints(&TensorData {
        shape: vec![target.len()],
        data: target.to_vec(),
    })?;
    let total = numel(input).ok_or(Fail::Invalid("shape too large".into()))?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allow_zero => out.push(
                *input
                    .get(i)
                    .ok_or(Fail::Invalid("0 copies a missing dimension".into()))?,
            ),
            d if d >= 0 => out.push(d as usize),
            _ => return invalid(format!("bad target shape {target:?}")),
        }
    }
    let known = numel(&out).ok_or(Fail::Invalid("shape too large".into()))?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return invalid(format!("cannot reshape {input:?} to {target:?}"));
        }
        out[i] = total / known;
    }
    if numel(&out) != Some(total) {
        return invalid(format!("cannot reshape {input:?} to {target:?}"));
    }
    Ok(out)
}

/// Axes from the `axes` attribute or the second input (opset 13).
fn axes_of(node: &OnnxNode, inputs: &[Option<TensorData>]) -> NodeResult<Option<Vec<i64>>> {
    if let Some(axes) = attr_ints(node, "axes") {
        return Ok(Some(axes));
    }
    inputs
        .get(1)
        .cloned()
        .flatten()
        .map(|t| as_ints(&t))
        .transpose()
}

/// Evaluates a node whose inputs are all constants.
fn fold(node: &OnnxNode, inputs: &[Option<TensorData>]) -> NodeResult<TensorData> {
    let input = |i: usize| {
        inputs
            .get(i)
            .cloned()
            .flatten()
            .ok_or(Fail::Invalid(format!("missing input {i}")))
    };
    let x = input(0)?;
    match node.op_type.as_str() {
        "Add" => elementwise(&x, &input(1)?, |a, b| a + b),
        "Sub" => elementwise(&x, &input(1)?, |a, b| a - b),
        "Mul" => elementwise(&x, &input(1)?, |a, b| a * b),
        "Div" => elementwise(&x, &input(1)?, |a, b| a / b),
        "Relu" => Ok(TensorData {
            shape: x.shape,
            data: x.data.iter().map(|v| v.max(0.0)).collect(),
        }),
        "Cast" => {
            // TensorProto.DataType: 1 float, 10 float16, 11 double, 16 bfloat16, 9 bool; others integers.
            let data = match attr_int(node, "to", 1) {
                1 | 10 | 11 | 16 => x.data,
                9 => x
                    .data
                    .iter()
                    .map(|&v| f64::from(u8::from(v != 0.0)))
                    .collect(),
                _ => x.data.iter().map(|v| v.trunc()).collect(),
            };
            Ok(TensorData {
                shape: x.shape,
                data,
            })
        }
        "Flatten" => {
            let axis = normalize_axis(attr_int(node, "axis", 1), x.shape.len() + 1)
                .ok_or(Fail::Invalid("Flatten axis out of range".into()))?;
            let outer = x.shape[..axis].iter().product();
            let inner = x.shape[axis..].iter().product();
            Ok(TensorData {
                shape: vec![outer, inner],
                data: x.data,
            })
        }
        "Reshape" => {
            let target = input(1)?;
            let shape =
                reshape_target(&x.shape, &target.data, attr_int(node, "allowzero", 0) != 0)?;
            Ok(TensorData {
                shape,
                data: x.data,
            })
        }
        "Unsqueeze" => {
            let axes =
                axes_of(node, inputs)?.ok_or(Fail::Invalid("Unsqueeze without axes".into()))?;
            let rank = x.shape.len() + axes.len();
            let axes: BTreeSet<usize> = axes
                .iter()
                .map(|&a| normalize_axis(a, rank))
                .collect::<Option<_>>()
                .ok_or(Fail::Invalid("Unsqueeze axis out of range".into()))?;
            let mut dims = x.shape.iter();
            let shape = (0..rank)
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        *dims.next().unwrap_or(&1)
                    }
                })
                .collect();
            Ok(TensorData {
                shape,
                data: x.data,
            })
        }
        "Squeeze" => {
            let rank = x.shape.len();
            let axes: BTreeSet<usize> = match axes_of(node, inputs)? {
                Some(axes) => axes
                    .iter()
                    .map(|&a| normalize_axis(a, rank).filter(|&a| x.shape[a] == 1))
                    .collect::<Option<_>>()
                    .ok_or(Fail::Invalid(
                        "Squeeze axis out of range or not of size 1".into(),
                    ))?,
                None => (0..rank).filter(|&a| x.shape[a] == 1).collect(),
            };
            let shape = x
                .shape
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect();
            Ok(TensorData {
                shape,
                data: x.data,
            })
        }
        "Gather" => {
            let indices = input(1)?;
            let axis = normalize_axis(attr_int(node, "axis", 0), x.shape.len())
                .ok_or(Fail::Invalid("Gather axis out of range".into()))?;
            let size = x.shape[axis] as i64;
            let idx: Vec<usize> = as_ints(&indices)?
                .iter()
                .map(|&i| {
                    let j = if i < 0 { i + size } else { i };
                    (0..size).contains(&j).then_some(j as usize)
                })
                .collect::<Option<_>>()
                .ok_or(Fail::Invalid("Gather index out of range".into()))?;
            let outer: usize = x.shape[..axis].iter().product();
            let inner: usize = x.shape[axis + 1..].iter().product();
            if outer
                .checked_mul(idx.len())
                .and_then(|n| n.checked_mul(inner))
                .is_none_or(|n| n > MAX_FOLD)
            {
                return unsupported("constant too large to fold");
            }
            let mut data = Vec::with_capacity(outer * idx.len() * inner);
            for o in 0..outer {
                for &i in &idx {
                    let start = (o * x.shape[axis] + i) * inner;
                    data.extend_from_slice(&x.data[start..start + inner]);
                }
            }
            let shape = x.shape[..axis]
                .iter()
                .chain(&indices.shape)
                .chain(&x.shape[axis + 1..])
                .copied()
                .collect();
            Ok(TensorData { shape, data })
        }
        "Concat" => {
            let parts: Vec<TensorData> = inputs.iter().flatten().cloned().collect();
            let rank = x.shape.len();
            let axis = normalize_axis(attr_int(node, "axis", 0), rank)
                .ok_or(Fail::Invalid("Concat axis out of range".into()))?;
            let mut shape = x.shape.clone();
            shape[axis] = 0;
            for p in &parts {
                let same = p.shape.len() == rank
                    && (0..rank).all(|i| i == axis || p.shape[i] == x.shape[i]);
                if !same {
                    return invalid(format!(
                        "cannot concatenate shapes {:?} and {:?}",
                        x.shape, p.shape
                    ));
                }
                shape[axis] += p.shape[axis];
            }
            let outer: usize = x.shape[..axis].iter().product();
            let mut data = Vec::new();
            for o in 0..outer {
                for p in &parts {
                    let chunk: usize = p.shape[axis..].iter().product();
                    data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
                }
            }
            Ok(TensorData { shape, data })
        }
        _ => unsupported("constant inputs"),
    }
}

/// Keeps the nodes the output depends on, renumbered in the same (topological) order.
fn prune(nodes: Vec<Node>, output: NodeId) -> Graph {
    let mut live = vec![false; nodes.len()];
    live[0] = true;
    live[output.index()] = true;
    for i in (0..nodes.len()).rev() {
        if live[i] {
            for input in &nodes[i].inputs {
                live[input.index()] = true;
            }
        }
    }
    let mut new_id = vec![NodeId(0); nodes.len()];
    let mut kept = Vec::new();
    for (i, mut node) in nodes.into_iter().enumerate() {
        if live[i] {
            new_id[i] = NodeId(kept.len() as u32);
            node.inputs = node.inputs.iter().map(|id| new_id[id.index()]).collect();
            kept.push(node);
        }
    }
    Graph {
        nodes: kept,
        output: new_id[output.index()],
    }
}

fn check_finite(graph: &Graph) -> Result<(), ImportError> {
    for node in &graph.nodes {
        let finite = match &node.op {
            Op::Linear { weight, bias } => weight.iter().chain(bias).all(|v| v.is_finite()),
            Op::Conv2d { weight, bias, .. } => weight.iter().chain(bias).all(|v| v.is_finite()),
            Op::ChannelAffine { scale, shift } => scale.iter().chain(shift).all(|v| v.is_finite()),
            _ => true,
        };
        if !finite {
            return Err(ImportError::Invalid(format!(
                "node '{}' has a non-finite parameter",
                node.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_target_copies_and_infers() {
        let got = |input: &[usize], target: &[f64]| reshape_target(input, target, false).ok();
        assert_eq!(got(&[1, 4, 2, 2], &[0.0, -1.0]), Some(vec![1, 16]));
        assert_eq!(got(&[1, 16], &[-1.0, 4.0, 4.0]), Some(vec![1, 4, 4]));
        assert_eq!(got(&[1, 16], &[3.0, -1.0]), None);
        assert_eq!(got(&[1, 16], &[-1.0, -1.0]), None);
        assert_eq!(got(&[1, 16], &[0.5, 32.0]), None);
    }

    #[test]
    fn broadcasting_follows_numpy() {
        let t = TensorData {
            shape: vec![2, 1],
            data: vec![1.0, 2.0],
        };
        assert_eq!(
            broadcast_to(&t, &[1, 2, 3]),
            Some(vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
        );
        assert_eq!(broadcast_to(&t, &[3, 3]), None);
        assert_eq!(broadcast_shape(&[4, 1, 3], &[2, 1]), Some(vec![4, 2, 3]));
    }

    #[test]
    fn gather_and_concat_fold() {
        let node = |op: &str| OnnxNode {
            name: op.into(),
            op_type: op.into(),
            inputs: vec![],
            outputs: vec![],
            attributes: Default::default(),
        };
        let shape = TensorData {
            shape: vec![4],
            data: vec![1.0, 3.0, 32.0, 32.0],
        };
        let index = TensorData {
            shape: vec![],
            data: vec![-3.0],
        };
        let Ok(gathered) = fold(&node("Gather"), &[Some(shape.clone()), Some(index)]) else {
            panic!()
        };
        assert_eq!(
            gathered,
            TensorData {
                shape: vec![],
                data: vec![3.0]
            }
        );
        let Ok(joined) = fold(&node("Concat"), &[Some(shape.clone()), Some(shape)]) else {
            panic!()
        };
        assert_eq!(joined.shape, vec![8]);
        assert_eq!(joined.data[4..], [1.0, 3.0, 32.0, 32.0]);
    }
}
