//! Networks: block elaboration, shape inference, weight binding, lowering to `ir::Graph`.
//!
//! Layer names: a statement `conv1 = conv2d(...)` names its layer `conv1`; an unnamed layer is
//! named by its position among the block's layer statements (`0`, `1`, ... as in a PyTorch
//! `nn.Sequential`). Layers of a block instantiated as `b1 = basic_block(...)` are prefixed
//! `b1.`. A layer `L` binds the tensors `L.weight` and `L.bias` (batchnorm also
//! `L.running_mean`, `L.running_var`).

use super::checker::{closest, Checker, ItemRef, Locals};
use super::value::{shape_str, Value};
use super::{CheckedNetwork, LayerSummary};
use crate::diagnostics::Diagnostic;
use crate::formats::{self, FormatError, FormatErrorKind, TensorData};
use crate::ir::{self, Graph, Node, NodeId, Op};
use crate::source::Span;
use crate::syntax::ast;
use ndarray::{Array1, Array2, Array4};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The built-in layers of the language.
pub const BUILTIN_LAYERS: &[&str] = &[
    "linear",
    "conv2d",
    "relu",
    "flatten",
    "reshape",
    "add",
    "normalize",
    "batchnorm",
    "avgpool",
    "maxpool",
    "identity",
];

/// Maximum nesting of block instantiations (guards against runaway recursion).
const MAX_DEPTH: usize = 32;

/// A layer before weights are bound.
#[derive(Clone, Debug)]
enum PendingOp {
    Input,
    Linear {
        inputs: usize,
        outputs: usize,
    },
    Conv {
        cin: usize,
        cout: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    Affine {
        scale: Vec<f64>,
        shift: Vec<f64>,
    },
    BatchNorm {
        channels: usize,
        eps: f64,
    },
    Add,
    Reshape,
    AvgPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    MaxPool {
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
    },
    Relu,
}

impl PendingOp {
    fn kind(&self) -> &'static str {
        match self {
            PendingOp::Input => "input",
            PendingOp::Linear { .. } => "linear",
            PendingOp::Conv { .. } => "conv2d",
            PendingOp::Affine { .. } => "channel_affine",
            PendingOp::BatchNorm { .. } => "batchnorm",
            PendingOp::Add => "add",
            PendingOp::Reshape => "reshape",
            PendingOp::AvgPool { .. } => "avgpool",
            PendingOp::MaxPool { .. } => "maxpool",
            PendingOp::Relu => "relu",
        }
    }

    /// The tensors this layer binds from the weight file.
    fn parameters(&self, name: &str) -> Vec<(String, Vec<usize>)> {
        let t = |suffix: &str, shape: Vec<usize>| (format!("{name}.{suffix}"), shape);
        match self {
            PendingOp::Linear { inputs, outputs } => vec![
                t("weight", vec![*outputs, *inputs]),
                t("bias", vec![*outputs]),
            ],
            PendingOp::Conv {
                cin, cout, kernel, ..
            } => {
                vec![
                    t("weight", vec![*cout, *cin, kernel[0], kernel[1]]),
                    t("bias", vec![*cout]),
                ]
            }
            PendingOp::BatchNorm { channels, .. } => {
                ["weight", "bias", "running_mean", "running_var"]
                    .iter()
                    .map(|s| t(s, vec![*channels]))
                    .collect()
            }
            _ => vec![],
        }
    }
}

struct PendingNode {
    name: String,
    op: PendingOp,
    inputs: Vec<usize>,
    /// `None` when an earlier error made the shape unknown (no cascading errors).
    shape: Option<Vec<usize>>,
    origin: Span,
}

#[derive(Default)]
struct Elab {
    nodes: Vec<PendingNode>,
    /// Blocks being instantiated, to detect recursion.
    stack: Vec<ItemRef>,
}

impl Elab {
    fn push(
        &mut self,
        name: String,
        op: PendingOp,
        inputs: Vec<usize>,
        shape: Option<Vec<usize>>,
        origin: Span,
    ) -> usize {
        self.nodes.push(PendingNode {
            name,
            op,
            inputs,
            shape,
            origin,
        });
        self.nodes.len() - 1
    }
}

/// Bound arguments of a builtin layer call.
struct Args {
    values: HashMap<&'static str, (Value, Span)>,
}

impl Args {
    fn get(&self, k: &str) -> Option<&(Value, Span)> {
        self.values.get(k)
    }
}

impl<'a> Checker<'a> {
    pub(super) fn network(&mut self, r: ItemRef) -> Option<usize> {
        if let Some(v) = self.networks.get(&r) {
            return *v;
        }
        let ast::Item::Network(n) = self.item(r).clone() else {
            return None;
        };
        let result = self.check_network(r.module, &n);
        let idx = result.map(|cn| {
            self.program.networks.push(cn);
            self.program.networks.len() - 1
        });
        self.networks.insert(r, idx);
        idx
    }

    fn check_network(&mut self, module: usize, n: &ast::NetworkDecl) -> Option<CheckedNetwork> {
        if n.model.callee.name == "onnx" {
            return self.onnx_network(module, n);
        }
        let callee = &n.model.callee;
        let r = self.lookup(module, callee)?;
        let ast::Item::Block(block) = self.item(r).clone() else {
            let kind = self.item(r).kind_word();
            self.error(
                Diagnostic::error(
                    "E0102",
                    format!("`{}` is a {kind}, not a block", callee.name),
                )
                .with_primary(callee.span, "expected a block or `onnx(\"file\")`"),
            );
            return None;
        };
        let Some(ast::Stmt::Input { shape, span }) = block.body.first() else {
            self.error(
                Diagnostic::error(
                    "E0216",
                    format!(
                        "block `{}` does not declare its input shape",
                        block.name.name
                    ),
                )
                .with_primary(callee.span, "used as a network here")
                .with_secondary(block.name.span, "block declared here")
                .with_help("start the block with an input statement such as `input [1, 28, 28]`"),
            );
            return None;
        };
        let mut elab = Elab::default();
        let locals = self.bind_block_args(module, &block, &n.model)?;
        let shape_v = self.eval(r.module, shape, &locals)?;
        let input_shape = self.as_shape(&shape_v, shape.span, "the input shape")?;
        let input = elab.push(
            "input".into(),
            PendingOp::Input,
            vec![],
            Some(input_shape.clone()),
            *span,
        );
        elab.stack.push(r);
        let out = self.instantiate(&mut elab, r, &block, locals, input, "", n.model.span);
        let out = out?;
        let out_shape = elab.nodes[out].shape.clone()?;
        if out_shape.len() != 1 || out_shape[0] < 2 {
            self.error(
                Diagnostic::error(
                    "E0217",
                    format!("network output must be a vector of at least 2 class scores, found shape {}", shape_str(&out_shape)),
                )
                .with_primary(elab.nodes[out].origin, "last layer")
                .with_help("end the network with a linear layer (after flatten())"),
            );
            return None;
        }
        if elab.nodes.iter().any(|n| n.shape.is_none()) {
            return None;
        }
        let graph = match &n.weights {
            None => None,
            Some(w) => {
                let wv = self.eval(module, w, &Locals::new())?;
                let file = self.as_string(&wv, w.span)?;
                let path = self.resolve_path(module, &file);
                let tensors = self.read_tensors(&path, w.span)?;
                Some(self.bind_weights(&elab, out, &tensors, &path, w.span)?)
            }
        };
        if let Some(g) = &graph {
            self.validate_graph(g, n.span)?;
        }
        let layers = elab
            .nodes
            .iter()
            .map(|p| LayerSummary {
                name: p.name.clone(),
                kind: p.op.kind(),
                shape: p.shape.clone().unwrap_or_default(),
            })
            .collect();
        let parameters = elab
            .nodes
            .iter()
            .flat_map(|p| p.op.parameters(&p.name))
            .collect();
        Some(CheckedNetwork {
            name: n.name.name.clone(),
            span: n.span,
            input_shape,
            num_classes: out_shape[0],
            layers,
            parameters,
            graph,
        })
    }

    fn validate_graph(&mut self, g: &Graph, span: Span) -> Option<()> {
        if let Err(e) = ir::validate(g) {
            self.error(
                Diagnostic::error(
                    "E0401",
                    format!(
                        "internal error: lowered network is invalid at `{}`: {}",
                        e.node, e.message
                    ),
                )
                .with_primary(span, "while lowering this network")
                .with_note("this is a bug in upcc; please report it"),
            );
            return None;
        }
        Some(())
    }

    fn onnx_network(&mut self, module: usize, n: &ast::NetworkDecl) -> Option<CheckedNetwork> {
        let call = &n.model;
        if let Some(w) = &n.weights {
            self.error(
                Diagnostic::error("E0110", "an ONNX network carries its own weights")
                    .with_primary(w.span, "remove this `weights` clause"),
            );
            return None;
        }
        let [arg] = call.args.as_slice() else {
            self.error(
                Diagnostic::error("E0110", "`onnx` takes exactly one argument, the model file")
                    .with_primary(call.span, "expected `onnx(\"model.onnx\")`"),
            );
            return None;
        };
        let v = self.eval(module, &arg.value, &Locals::new())?;
        let file = self.as_string(&v, arg.value.span)?;
        let path = self.resolve_path(module, &file);
        if !path.is_file() {
            self.missing_file(&path, arg.value.span, "ONNX model");
            return None;
        }
        let model = match formats::onnx::load_model(&path) {
            Ok(m) => m,
            Err(e) => {
                self.format_error(&e, arg.value.span);
                return None;
            }
        };
        let mut graph = match ir::from_onnx::import(&model) {
            Ok(g) => g,
            Err(ir::from_onnx::ImportError::Unsupported(nodes)) => {
                let mut d = Diagnostic::error(
                    "E0303",
                    format!("the ONNX model has {} unsupported node(s)", nodes.len()),
                )
                .with_primary(arg.value.span, "cannot import this model")
                .with_note(
                    "supported: Conv, Gemm, MatMul, Add, Sub, Div, Mul, Relu, Flatten, Reshape, BatchNormalization, constant subgraphs",
                );
                for (name, op) in nodes {
                    d = d.with_note(format!("unsupported node `{name}` of type {op}"));
                }
                self.error(d);
                return None;
            }
            Err(ir::from_onnx::ImportError::Invalid(msg)) => {
                self.error(
                    Diagnostic::error("E0311", format!("cannot import ONNX model: {msg}"))
                        .with_primary(arg.value.span, "in this model"),
                );
                return None;
            }
        };
        for node in &mut graph.nodes {
            node.origin.get_or_insert(n.span);
        }
        let out = graph.output_shape().to_vec();
        if out.len() != 1 || out[0] < 2 {
            self.error(
                Diagnostic::error(
                    "E0217",
                    format!("network output must be a vector of at least 2 class scores, found shape {}", shape_str(&out)),
                )
                .with_primary(call.span, "in this model"),
            );
            return None;
        }
        self.validate_graph(&graph, n.span)?;
        let layers = graph
            .nodes
            .iter()
            .map(|node| LayerSummary {
                name: node.name.clone(),
                kind: node.op.kind(),
                shape: node.shape.clone(),
            })
            .collect();
        let mut parameters = Vec::new();
        for node in &graph.nodes {
            let shapes: Vec<(&str, Vec<usize>)> = match &node.op {
                Op::Linear { weight, bias } => vec![
                    ("weight", weight.shape().to_vec()),
                    ("bias", bias.shape().to_vec()),
                ],
                Op::Conv2d { weight, bias, .. } => vec![
                    ("weight", weight.shape().to_vec()),
                    ("bias", bias.shape().to_vec()),
                ],
                _ => vec![],
            };
            parameters.extend(
                shapes
                    .into_iter()
                    .map(|(k, s)| (format!("{}.{k}", node.name), s)),
            );
        }
        Some(CheckedNetwork {
            name: n.name.name.clone(),
            span: n.span,
            input_shape: graph.input_shape().to_vec(),
            num_classes: out[0],
            layers,
            parameters,
            graph: Some(graph),
        })
    }

    pub(super) fn missing_file(&mut self, path: &Path, span: Span, what: &str) {
        self.error(
            Diagnostic::error(
                "E0301",
                format!("{what} file `{}` not found", path.display()),
            )
            .with_primary(span, "no such file")
            .with_note("relative paths are resolved against the directory of the .upc file"),
        );
    }

    pub(super) fn format_error(&mut self, e: &FormatError, span: Span) {
        let (code, label) = match e.kind {
            FormatErrorKind::Io => ("E0301", "cannot read this file"),
            FormatErrorKind::Corrupt => ("E0302", "corrupt or truncated file"),
            FormatErrorKind::Unsupported => ("E0303", "unsupported content"),
            FormatErrorKind::NonFinite => ("E0304", "contains NaN or infinity"),
        };
        self.error(
            Diagnostic::error(code, format!("`{}`: {}", e.path.display(), e.message))
                .with_primary(span, label),
        );
    }

    fn read_tensors(&mut self, path: &Path, span: Span) -> Option<BTreeMap<String, TensorData>> {
        if !path.is_file() {
            self.missing_file(path, span, "weight");
            return None;
        }
        match formats::load_tensors(path) {
            Ok(t) => Some(t),
            Err(e) => {
                self.format_error(&e, span);
                None
            }
        }
    }

    /// Light checks of a block that may never be instantiated: callees and `from` names exist.
    pub(super) fn precheck_block(&mut self, module: usize, b: &ast::BlockDecl) {
        let mut names: Vec<&str> = vec!["input"];
        for (i, stmt) in b.body.iter().enumerate() {
            match stmt {
                ast::Stmt::Input { span, .. } if i > 0 => {
                    self.error(
                        Diagnostic::error(
                            "E0222",
                            "`input` must be the first statement of a block",
                        )
                        .with_primary(*span, "move this to the top of the block"),
                    );
                }
                ast::Stmt::Input { .. } => {}
                ast::Stmt::Layer(l) => {
                    for f in &l.from {
                        if !names.contains(&f.name.as_str()) {
                            self.unknown_node(f, &names);
                        }
                    }
                    self.precheck_layer(module, &l.layer);
                    if let Some(n) = &l.name {
                        names.push(&n.name);
                    }
                }
            }
        }
    }

    fn precheck_layer(&mut self, module: usize, l: &ast::LayerExpr) {
        match l {
            ast::LayerExpr::If {
                then, otherwise, ..
            } => {
                self.precheck_layer(module, then);
                self.precheck_layer(module, otherwise);
            }
            ast::LayerExpr::Call(c) => {
                if !BUILTIN_LAYERS.contains(&c.callee.name.as_str()) {
                    self.block_ref(module, &c.callee);
                }
            }
        }
    }

    fn unknown_node(&mut self, id: &ast::Ident, names: &[&str]) {
        let mut d = Diagnostic::error(
            "E0109",
            format!("no layer named `{}` before this point", id.name),
        )
        .with_primary(id.span, "unknown layer");
        if let Some(s) = closest(&id.name, names.iter().copied()) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        self.error(d);
    }

    /// Resolves a callee that is not a builtin to a block.
    fn block_ref(
        &mut self,
        module: usize,
        callee: &ast::Ident,
    ) -> Option<(ItemRef, ast::BlockDecl)> {
        let Some(r) = self.modules[module].scope.get(&callee.name).copied() else {
            let mut cands: Vec<String> = BUILTIN_LAYERS.iter().map(|s| s.to_string()).collect();
            cands.extend(self.modules[module].scope.keys().cloned());
            let mut d =
                Diagnostic::error("E0103", format!("unknown layer or block `{}`", callee.name))
                    .with_primary(callee.span, "not a builtin layer or a block in scope")
                    .with_note(format!("builtin layers: {}", BUILTIN_LAYERS.join(", ")));
            if let Some(s) = closest(&callee.name, cands.iter().map(String::as_str)) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
            self.error(d);
            return None;
        };
        match self.item(r).clone() {
            ast::Item::Block(b) => Some((r, b)),
            other => {
                self.error(
                    Diagnostic::error(
                        "E0102",
                        format!("`{}` is a {}, not a block", callee.name, other.kind_word()),
                    )
                    .with_primary(callee.span, "expected a layer or block"),
                );
                None
            }
        }
    }

    /// Evaluates a block call's arguments (in the caller's module and locals) into the block's
    /// parameter names.
    fn bind_block_args(
        &mut self,
        caller: usize,
        b: &ast::BlockDecl,
        call: &ast::Call,
    ) -> Option<Locals> {
        self.bind_block_args_with(caller, b, call, &Locals::new())
    }

    fn bind_block_args_with(
        &mut self,
        caller: usize,
        b: &ast::BlockDecl,
        call: &ast::Call,
        outer: &Locals,
    ) -> Option<Locals> {
        let mut locals = Locals::new();
        let mut ok = true;
        let mut positional = 0;
        for a in &call.args {
            let v = self.eval(caller, &a.value, outer);
            let pname = match &a.name {
                Some(n) => {
                    if !b.params.iter().any(|p| p.name == n.name) {
                        self.error(
                            Diagnostic::error(
                                "E0110",
                                format!("block `{}` has no parameter `{}`", b.name.name, n.name),
                            )
                            .with_primary(n.span, "unknown parameter")
                            .with_secondary(b.name.span, "block declared here"),
                        );
                        ok = false;
                        continue;
                    }
                    n.name.clone()
                }
                None => {
                    positional += 1;
                    match b.params.get(positional - 1) {
                        Some(p) => p.name.clone(),
                        None => {
                            self.error(
                                Diagnostic::error(
                                    "E0110",
                                    format!(
                                        "block `{}` takes {} argument(s) but more were given",
                                        b.name.name,
                                        b.params.len()
                                    ),
                                )
                                .with_primary(a.span, "extra argument")
                                .with_secondary(b.name.span, "block declared here"),
                            );
                            ok = false;
                            continue;
                        }
                    }
                }
            };
            match v {
                Some(v) => {
                    if locals.insert(pname.clone(), v).is_some() {
                        self.error(
                            Diagnostic::error(
                                "E0110",
                                format!("parameter `{pname}` is given twice"),
                            )
                            .with_primary(a.span, "repeated"),
                        );
                        ok = false;
                    }
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let missing: Vec<&str> = b
            .params
            .iter()
            .filter(|p| !locals.contains_key(&p.name))
            .map(|p| p.name.as_str())
            .collect();
        if !missing.is_empty() {
            self.error(
                Diagnostic::error(
                    "E0110",
                    format!(
                        "missing argument(s) for block `{}`: {}",
                        b.name.name,
                        missing.join(", ")
                    ),
                )
                .with_primary(call.span, "in this call")
                .with_secondary(b.name.span, "block declared here"),
            );
            return None;
        }
        Some(locals)
    }

    /// Elaborates a block body with its input at node `input`; returns the output node.
    #[allow(clippy::too_many_arguments)]
    fn instantiate(
        &mut self,
        elab: &mut Elab,
        r: ItemRef,
        b: &ast::BlockDecl,
        locals: Locals,
        input: usize,
        prefix: &str,
        call_span: Span,
    ) -> Option<usize> {
        let module = r.module;
        // A layer whose elaboration failed maps to `None`: later uses stay silent.
        let mut env: HashMap<String, Option<usize>> = HashMap::new();
        env.insert("input".into(), Some(input));
        let mut order: Vec<String> = vec!["input".into()];
        let mut prev = Some(input);
        let mut layer_index = 0usize;
        let mut ok = true;
        for (i, stmt) in b.body.iter().enumerate() {
            let l = match stmt {
                ast::Stmt::Input { shape, span } => {
                    if i > 0 {
                        self.error(
                            Diagnostic::error(
                                "E0222",
                                "`input` must be the first statement of a block",
                            )
                            .with_primary(*span, "move this to the top of the block"),
                        );
                        ok = false;
                    } else if let (Some(v), Some(actual)) = (
                        self.eval(module, shape, &locals),
                        elab.nodes[input].shape.clone(),
                    ) {
                        if let Some(declared) = self.as_shape(&v, shape.span, "the input shape") {
                            if declared != actual {
                                self.error(
                                    Diagnostic::error(
                                        "E0222",
                                        format!(
                                            "block expects input {} but receives {}",
                                            shape_str(&declared),
                                            shape_str(&actual)
                                        ),
                                    )
                                    .with_primary(shape.span, "declared input shape")
                                    .with_secondary(call_span, "instantiated here"),
                                );
                                ok = false;
                            }
                        }
                    }
                    continue;
                }
                ast::Stmt::Layer(l) => l,
            };
            let local_name = match &l.name {
                Some(n) if n.name == "input" => {
                    self.error(
                        Diagnostic::error("E0104", "`input` is reserved for the block input")
                            .with_primary(n.span, "choose another layer name"),
                    );
                    ok = false;
                    continue;
                }
                Some(n) => {
                    if env.contains_key(&n.name) {
                        self.error(
                            Diagnostic::error(
                                "E0104",
                                format!(
                                    "layer `{}` is defined more than once in this block",
                                    n.name
                                ),
                            )
                            .with_primary(n.span, "redefined here"),
                        );
                        ok = false;
                    }
                    n.name.clone()
                }
                None => layer_index.to_string(),
            };
            layer_index += 1;
            let inputs: Option<Vec<usize>> = if l.from.is_empty() {
                prev.map(|p| vec![p])
            } else {
                let names: Vec<&str> = order.iter().map(String::as_str).collect();
                let mut v = Vec::new();
                let mut all = true;
                for f in &l.from {
                    match env.get(&f.name) {
                        Some(Some(id)) => v.push(*id),
                        Some(None) => all = false,
                        None => {
                            self.unknown_node(f, &names);
                            all = false;
                        }
                    }
                }
                all.then_some(v)
            };
            let out = match inputs {
                Some(inputs) => {
                    let full = format!("{prefix}{local_name}");
                    self.layer(elab, module, &l.layer, inputs, &full, &locals, l.span)
                }
                None => None,
            };
            prev = out;
            ok &= out.is_some();
            env.insert(local_name.clone(), out);
            order.push(local_name);
        }
        if ok {
            prev
        } else {
            None
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn layer(
        &mut self,
        elab: &mut Elab,
        module: usize,
        l: &ast::LayerExpr,
        inputs: Vec<usize>,
        name: &str,
        locals: &Locals,
        stmt_span: Span,
    ) -> Option<usize> {
        let call = match l {
            ast::LayerExpr::If {
                cond,
                then,
                otherwise,
                ..
            } => {
                let branch = match self.eval(module, cond, locals)? {
                    Value::Bool(true) => then,
                    Value::Bool(false) => otherwise,
                    other => return self.type_error(cond.span, "a boolean condition", &other),
                };
                return self.layer(elab, module, branch, inputs, name, locals, stmt_span);
            }
            ast::LayerExpr::Call(c) => c,
        };
        let op_name = call.callee.name.as_str();
        if !BUILTIN_LAYERS.contains(&op_name) {
            let (r, b) = self.block_ref(module, &call.callee)?;
            let [input] = inputs.as_slice() else {
                return self.arity_error(call, inputs.len(), 1);
            };
            if elab.stack.contains(&r) || elab.stack.len() >= MAX_DEPTH {
                self.error(
                    Diagnostic::error(
                        "E0108",
                        format!("block `{}` instantiates itself", b.name.name),
                    )
                    .with_primary(call.callee.span, "recursive use")
                    .with_secondary(b.name.span, "block declared here"),
                );
                return None;
            }
            let inner = self.bind_block_args_with(module, &b, call, locals)?;
            elab.stack.push(r);
            let out = self.instantiate(elab, r, &b, inner, *input, &format!("{name}."), call.span);
            elab.stack.pop();
            return out;
        }
        let args = self.builtin_args(module, call, locals)?;
        let expected_inputs = if op_name == "add" { 2 } else { 1 };
        if inputs.len() != expected_inputs {
            return self.arity_error(call, inputs.len(), expected_inputs);
        }
        let in_shape = elab.nodes[inputs[0]].shape.clone();
        let origin = stmt_span;
        let Some(shape) = in_shape else {
            // Unknown input shape: an error was already reported upstream.
            return Some(elab.push(name.into(), PendingOp::Relu, inputs, None, origin));
        };
        let in_origin = elab.nodes[inputs[0]].origin;
        let (op, out_shape) = match op_name {
            "identity" => return Some(inputs[0]),
            "relu" => (PendingOp::Relu, Some(shape.clone())),
            "flatten" => (PendingOp::Reshape, Some(vec![shape.iter().product()])),
            "reshape" => {
                let (v, span) = args.get("shape").cloned()?;
                let target = self.as_shape(&v, span, "the target shape")?;
                let (a, b): (usize, usize) = (shape.iter().product(), target.iter().product());
                if a != b {
                    self.error(
                        Diagnostic::error(
                            "E0214",
                            format!(
                                "cannot reshape {} ({a} values) to {} ({b} values)",
                                shape_str(&shape),
                                shape_str(&target)
                            ),
                        )
                        .with_primary(span, "element counts differ"),
                    );
                    return None;
                }
                (PendingOp::Reshape, Some(target))
            }
            "linear" => {
                let i = self.int_arg(&args, "in", true)?;
                let o = self.int_arg(&args, "out", true)?;
                if shape.len() != 1 {
                    return self.needs_vector(call, &shape, in_origin);
                }
                if shape[0] != i {
                    self.error(
                        Diagnostic::error(
                            "E0211",
                            format!(
                                "linear layer `{name}` expects {i} inputs but receives {}",
                                shape[0]
                            ),
                        )
                        .with_primary(
                            args.get("in").map_or(call.span, |a| a.1),
                            format!("declared with {i} inputs"),
                        )
                        .with_secondary(in_origin, format!("this produces {}", shape_str(&shape)))
                        .with_help(format!("change the input size to {}", shape[0])),
                    );
                    return None;
                }
                (
                    PendingOp::Linear {
                        inputs: i,
                        outputs: o,
                    },
                    Some(vec![o]),
                )
            }
            "conv2d" | "avgpool" | "maxpool" => {
                let is_conv = op_name == "conv2d";
                let kernel = self.pair_arg(&args, "kernel", true)?;
                let stride = match args.get("stride") {
                    Some(_) => self.pair_arg(&args, "stride", true)?,
                    None if is_conv => [1, 1],
                    None => kernel,
                };
                let padding = self.pair_arg(&args, "padding", false)?;
                if shape.len() != 3 {
                    self.error(
                        Diagnostic::error(
                            "E0215",
                            format!(
                                "{op_name} expects an image input [C, H, W] but receives {}",
                                shape_str(&shape)
                            ),
                        )
                        .with_primary(call.span, "needs an image")
                        .with_secondary(in_origin, format!("this produces {}", shape_str(&shape))),
                    );
                    return None;
                }
                let (cin, cout) = if is_conv {
                    (
                        self.int_arg(&args, "in", true)?,
                        self.int_arg(&args, "out", true)?,
                    )
                } else {
                    (shape[0], shape[0])
                };
                if shape[0] != cin {
                    self.error(
                        Diagnostic::error(
                            "E0210",
                            format!("conv2d layer `{name}` expects {cin} input channels but receives {}", shape[0]),
                        )
                        .with_primary(args.get("in").map_or(call.span, |a| a.1), format!("declared with {cin} input channels"))
                        .with_secondary(in_origin, format!("this produces {}", shape_str(&shape))),
                    );
                    return None;
                }
                let mut out = vec![cout];
                for axis in 0..2 {
                    let size = shape[1 + axis] + 2 * padding[axis];
                    if size < kernel[axis] {
                        self.error(
                            Diagnostic::error(
                                "E0213",
                                format!(
                                    "{op_name} kernel {}x{} is larger than its padded input {}x{}",
                                    kernel[0],
                                    kernel[1],
                                    shape[1] + 2 * padding[0],
                                    shape[2] + 2 * padding[1]
                                ),
                            )
                            .with_primary(call.span, "kernel too large")
                            .with_secondary(
                                in_origin,
                                format!("this produces {}", shape_str(&shape)),
                            ),
                        );
                        return None;
                    }
                    out.push((size - kernel[axis]) / stride[axis] + 1);
                }
                let op = match op_name {
                    "conv2d" => PendingOp::Conv {
                        cin,
                        cout,
                        kernel,
                        stride,
                        padding,
                    },
                    "avgpool" => PendingOp::AvgPool {
                        kernel,
                        stride,
                        padding,
                    },
                    _ => PendingOp::MaxPool {
                        kernel,
                        stride,
                        padding,
                    },
                };
                (op, Some(out))
            }
            "add" => {
                let other = elab.nodes[inputs[1]].shape.clone()?;
                if other != shape {
                    self.error(
                        Diagnostic::error(
                            "E0212",
                            format!(
                                "cannot add shapes {} and {}",
                                shape_str(&shape),
                                shape_str(&other)
                            ),
                        )
                        .with_primary(call.span, "operands differ in shape")
                        .with_secondary(in_origin, format!("this is {}", shape_str(&shape)))
                        .with_secondary(
                            elab.nodes[inputs[1]].origin,
                            format!("this is {}", shape_str(&other)),
                        ),
                    );
                    return None;
                }
                (PendingOp::Add, Some(shape.clone()))
            }
            "normalize" => {
                let c = shape[0];
                let mean = self.channel_list(&args, "mean", c, call, &shape)?;
                let std = self.channel_list(&args, "std", c, call, &shape)?;
                if std.iter().any(|s| *s <= 0.0) {
                    let span = args.get("std").map_or(call.span, |a| a.1);
                    self.error(
                        Diagnostic::error("E0221", "normalize: every std must be positive")
                            .with_primary(span, "here"),
                    );
                    return None;
                }
                let scale: Vec<f64> = std.iter().map(|s| 1.0 / s).collect();
                let shift: Vec<f64> = mean.iter().zip(&std).map(|(m, s)| -m / s).collect();
                (PendingOp::Affine { scale, shift }, Some(shape.clone()))
            }
            "batchnorm" => {
                let channels = self.int_arg(&args, "channels", true)?;
                let eps = match args.get("eps") {
                    Some((Value::Num(r), _)) if r.num > 0 => r.to_f64(),
                    Some((v, span)) => {
                        return self.type_error(*span, "a positive number (eps)", &v.clone())
                    }
                    None => 1e-5,
                };
                if shape[0] != channels {
                    self.error(
                        Diagnostic::error(
                            "E0210",
                            format!("batchnorm layer `{name}` expects {channels} channels but receives {}", shape[0]),
                        )
                        .with_primary(call.span, format!("declared with {channels} channels"))
                        .with_secondary(in_origin, format!("this produces {}", shape_str(&shape))),
                    );
                    return None;
                }
                (PendingOp::BatchNorm { channels, eps }, Some(shape.clone()))
            }
            _ => unreachable!("every builtin is handled"),
        };
        if let Some(shape) = &out_shape {
            self.check_numel(shape, call.span)?;
        }
        Some(elab.push(name.into(), op, inputs, out_shape, origin))
    }

    fn arity_error(&mut self, call: &ast::Call, got: usize, want: usize) -> Option<usize> {
        self.error(
            Diagnostic::error(
                "E0220",
                format!(
                    "`{}` takes {want} input(s) but receives {got}",
                    call.callee.name
                ),
            )
            .with_primary(call.span, "wrong number of inputs")
            .with_help(if want == 2 {
                "name both operands: `add from a, b`"
            } else {
                "a layer reads the previous layer, or the one named after `from`"
            }),
        );
        None
    }

    fn needs_vector(
        &mut self,
        call: &ast::Call,
        shape: &[usize],
        in_origin: Span,
    ) -> Option<usize> {
        self.error(
            Diagnostic::error(
                "E0215",
                format!(
                    "linear expects a vector input but receives {}",
                    shape_str(shape)
                ),
            )
            .with_primary(call.span, "needs a vector")
            .with_secondary(in_origin, format!("this produces {}", shape_str(shape)))
            .with_help("insert `flatten()` before this layer"),
        );
        None
    }

    /// Binds a builtin's arguments by its signature (positional, then named).
    fn builtin_args(&mut self, module: usize, call: &ast::Call, locals: &Locals) -> Option<Args> {
        let sig: &[&'static str] = match call.callee.name.as_str() {
            "linear" => &["in", "out"],
            "conv2d" => &["in", "out", "kernel", "stride", "padding"],
            "avgpool" | "maxpool" => &["kernel", "stride", "padding"],
            "reshape" => &["shape"],
            "normalize" => &["mean", "std"],
            "batchnorm" => &["channels", "eps"],
            _ => &[],
        };
        let required: &[&str] = match call.callee.name.as_str() {
            "linear" => &["in", "out"],
            "conv2d" => &["in", "out", "kernel"],
            "avgpool" | "maxpool" => &["kernel"],
            "reshape" => &["shape"],
            "normalize" => &["mean", "std"],
            "batchnorm" => &["channels"],
            _ => &[],
        };
        let mut values = HashMap::new();
        let mut ok = true;
        for (i, a) in call.args.iter().enumerate() {
            let key = match &a.name {
                Some(n) => sig.iter().copied().find(|s| *s == n.name),
                None => sig.get(i).copied(),
            };
            let Some(key) = key else {
                let what = match &a.name {
                    Some(n) => format!("`{}` has no parameter `{}`", call.callee.name, n.name),
                    None => format!(
                        "`{}` takes at most {} argument(s)",
                        call.callee.name,
                        sig.len()
                    ),
                };
                let params: Vec<String> = sig.iter().map(|s| s.to_string()).collect();
                self.error(
                    Diagnostic::error("E0110", what)
                        .with_primary(a.span, "unexpected argument")
                        .with_note(if params.is_empty() {
                            "it takes no arguments".to_string()
                        } else {
                            format!("parameters: {}", params.join(", "))
                        }),
                );
                ok = false;
                continue;
            };
            match self.eval(module, &a.value, locals) {
                Some(v) => {
                    if values.insert(key, (v, a.value.span)).is_some() {
                        self.error(
                            Diagnostic::error("E0110", format!("argument `{key}` is given twice"))
                                .with_primary(a.span, "repeated"),
                        );
                        ok = false;
                    }
                }
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| !values.contains_key(k))
            .collect();
        if !missing.is_empty() {
            self.error(
                Diagnostic::error(
                    "E0110",
                    format!(
                        "`{}` is missing argument(s): {}",
                        call.callee.name,
                        missing.join(", ")
                    ),
                )
                .with_primary(call.span, "in this call")
                .with_note(format!("parameters: {}", sig.join(", "))),
            );
            return None;
        }
        Some(Args { values })
    }

    fn int_arg(&mut self, args: &Args, key: &str, positive: bool) -> Option<usize> {
        let (v, span) = args.get(key).cloned()?;
        if positive {
            self.as_positive(&v, span, &format!("`{key}`"))
        } else {
            self.as_usize(&v, span, &format!("`{key}`"))
        }
    }

    /// An int or a pair `[a, b]`; absent non-required ones default to 0.
    fn pair_arg(&mut self, args: &Args, key: &str, positive: bool) -> Option<[usize; 2]> {
        let Some((v, span)) = args.get(key).cloned() else {
            return Some([0, 0]);
        };
        let what = format!("`{key}`");
        let conv = |c: &mut Self, v: &Value| {
            if positive {
                c.as_positive(v, span, &what)
            } else {
                c.as_usize(v, span, &what)
            }
        };
        match &v {
            Value::List(items) if items.len() == 2 => {
                Some([conv(self, &items[0])?, conv(self, &items[1])?])
            }
            Value::List(_) => {
                self.type_error(span, &format!("an integer or a pair [h, w] ({what})"), &v)
            }
            _ => {
                let n = conv(self, &v)?;
                Some([n, n])
            }
        }
    }

    /// A per-channel list of numbers (a single number broadcasts).
    fn channel_list(
        &mut self,
        args: &Args,
        key: &str,
        channels: usize,
        call: &ast::Call,
        shape: &[usize],
    ) -> Option<Vec<f64>> {
        let (v, span) = args.get(key).cloned()?;
        let items = match v {
            Value::Num(r) => vec![Value::Num(r)],
            Value::List(items) => items,
            other => return self.type_error(span, "a list of numbers", &other),
        };
        let mut out = Vec::new();
        for i in &items {
            match i {
                Value::Num(r) => out.push(r.to_f64()),
                other => return self.type_error(span, "a list of numbers", other),
            }
        }
        if out.len() == 1 {
            return Some(vec![out[0]; channels]);
        }
        if out.len() != channels {
            self.error(
                Diagnostic::error(
                    "E0221",
                    format!(
                        "normalize: `{key}` has {} values but the input {} has {channels} channels",
                        out.len(),
                        shape_str(shape)
                    ),
                )
                .with_primary(span, format!("{} values", out.len()))
                .with_secondary(call.span, "in this layer"),
            );
            return None;
        }
        Some(out)
    }

    // ---------------------------------------------------------------- weights

    fn bind_weights(
        &mut self,
        elab: &Elab,
        out: usize,
        tensors: &BTreeMap<String, TensorData>,
        path: &Path,
        wspan: Span,
    ) -> Option<Graph> {
        let mut nodes = Vec::new();
        let mut ok = true;
        for n in &elab.nodes {
            let fetch = |c: &mut Self, suffix: &str, shape: &[usize]| -> Option<Vec<f64>> {
                let key = format!("{}.{suffix}", n.name);
                let Some(t) = tensors.get(&key) else {
                    let mut d = Diagnostic::error(
                        "E0305",
                        format!("weight `{key}` is missing from `{}`", path.display()),
                    )
                    .with_primary(
                        n.origin,
                        format!(
                            "layer `{}` needs `{key}` of shape {}",
                            n.name,
                            shape_str(shape)
                        ),
                    )
                    .with_secondary(wspan, "weights read from here");
                    if let Some(s) = closest(&key, tensors.keys().map(String::as_str)) {
                        d = d.with_help(format!("the file has `{s}`; layers bind tensors by name"));
                    }
                    c.error(d);
                    return None;
                };
                if t.shape != shape {
                    c.error(
                        Diagnostic::error(
                            "E0306",
                            format!(
                                "weight `{key}` has shape {} but layer `{}` needs {}",
                                shape_str(&t.shape),
                                n.name,
                                shape_str(shape)
                            ),
                        )
                        .with_primary(n.origin, format!("expects {}", shape_str(shape)))
                        .with_secondary(wspan, "weights read from here"),
                    );
                    return None;
                }
                if Some(t.data.len()) != shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
                    c.error(
                        Diagnostic::error(
                            "E0302",
                            format!(
                                "weight `{key}` holds {} values for shape {}",
                                t.data.len(),
                                shape_str(shape)
                            ),
                        )
                        .with_primary(wspan, "corrupt weight file"),
                    );
                    return None;
                }
                if let Some(i) = t.data.iter().position(|x| !x.is_finite()) {
                    c.error(
                        Diagnostic::error(
                            "E0304",
                            format!("weight `{key}` contains {} at index {i}", t.data[i]),
                        )
                        .with_primary(n.origin, format!("in layer `{}`", n.name))
                        .with_secondary(wspan, "weights read from here"),
                    );
                    return None;
                }
                Some(t.data.clone())
            };
            let op = match &n.op {
                PendingOp::Input => Some(Op::Input),
                PendingOp::Relu => Some(Op::Relu),
                PendingOp::Add => Some(Op::Add),
                PendingOp::Reshape => Some(Op::Reshape),
                PendingOp::AvgPool {
                    kernel,
                    stride,
                    padding,
                } => Some(Op::AvgPool {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                }),
                PendingOp::MaxPool {
                    kernel,
                    stride,
                    padding,
                } => Some(Op::MaxPool {
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                }),
                PendingOp::Affine { scale, shift } => Some(Op::ChannelAffine {
                    scale: Array1::from(scale.clone()),
                    shift: Array1::from(shift.clone()),
                }),
                PendingOp::Linear { inputs, outputs } => {
                    let w = fetch(self, "weight", &[*outputs, *inputs]);
                    let b = fetch(self, "bias", &[*outputs]);
                    match (w, b) {
                        (Some(w), Some(b)) => Array2::from_shape_vec((*outputs, *inputs), w)
                            .ok()
                            .map(|weight| Op::Linear {
                                weight,
                                bias: Array1::from(b),
                            }),
                        _ => None,
                    }
                }
                PendingOp::Conv {
                    cin,
                    cout,
                    kernel,
                    stride,
                    padding,
                } => {
                    let w = fetch(self, "weight", &[*cout, *cin, kernel[0], kernel[1]]);
                    let b = fetch(self, "bias", &[*cout]);
                    match (w, b) {
                        (Some(w), Some(b)) => {
                            Array4::from_shape_vec((*cout, *cin, kernel[0], kernel[1]), w)
                                .ok()
                                .map(|weight| Op::Conv2d {
                                    weight,
                                    bias: Array1::from(b),
                                    stride: *stride,
                                    padding: *padding,
                                })
                        }
                        _ => None,
                    }
                }
                PendingOp::BatchNorm { channels, eps } => {
                    let g = fetch(self, "weight", &[*channels]);
                    let beta = fetch(self, "bias", &[*channels]);
                    let mean = fetch(self, "running_mean", &[*channels]);
                    let var = fetch(self, "running_var", &[*channels]);
                    match (g, beta, mean, var) {
                        (Some(g), Some(beta), Some(mean), Some(var)) => {
                            if let Some(i) = var.iter().position(|v| *v + eps <= 0.0) {
                                self.error(
                                    Diagnostic::error(
                                        "E0304",
                                        format!(
                                            "`{}.running_var[{i}]` + eps is not positive",
                                            n.name
                                        ),
                                    )
                                    .with_primary(n.origin, "invalid batchnorm statistics"),
                                );
                                None
                            } else {
                                let scale: Vec<f64> = g
                                    .iter()
                                    .zip(&var)
                                    .map(|(g, v)| g / (v + eps).sqrt())
                                    .collect();
                                let shift: Vec<f64> = beta
                                    .iter()
                                    .zip(&mean)
                                    .zip(&scale)
                                    .map(|((b, m), s)| b - m * s)
                                    .collect();
                                Some(Op::ChannelAffine {
                                    scale: Array1::from(scale),
                                    shift: Array1::from(shift),
                                })
                            }
                        }
                        _ => None,
                    }
                }
            };
            match op {
                Some(op) => nodes.push(Node {
                    name: n.name.clone(),
                    op,
                    inputs: n.inputs.iter().map(|&i| NodeId(i as u32)).collect(),
                    shape: n.shape.clone().unwrap_or_default(),
                    origin: Some(n.origin),
                }),
                None => ok = false,
            }
        }
        if !ok {
            return None;
        }
        Some(Graph {
            nodes,
            output: NodeId(out as u32),
        })
    }
}
