//! Typed syntax tree of a `.upc` file. Every node carries its byte span.

use crate::source::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StringLit {
    pub value: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Use(UseDecl),
    Const(ConstDecl),
    Block(BlockDecl),
    Network(NetworkDecl),
    Dataset(DatasetDecl),
    Perturbation(PerturbationDecl),
    Property(PropertyDecl),
}

impl Item {
    /// The declared name (`None` for `use`).
    pub fn name(&self) -> Option<&Ident> {
        match self {
            Item::Use(_) => None,
            Item::Const(d) => Some(&d.name),
            Item::Block(d) => Some(&d.name),
            Item::Network(d) => Some(&d.name),
            Item::Dataset(d) => Some(&d.name),
            Item::Perturbation(d) => Some(&d.name),
            Item::Property(d) => Some(&d.name),
        }
    }

    /// What kind of thing the item declares, in words.
    pub fn kind_word(&self) -> &'static str {
        match self {
            Item::Use(_) => "import",
            Item::Const(_) => "constant",
            Item::Block(_) => "block",
            Item::Network(_) => "network",
            Item::Dataset(_) => "dataset",
            Item::Perturbation(_) => "perturbation",
            Item::Property(_) => "property",
        }
    }
}

/// `use std::nets::conv_small`, `use "other.upc"`, `use std::data::{a, b}`.
#[derive(Clone, Debug, PartialEq)]
pub struct UseDecl {
    pub module: ModuleRef,
    pub items: UseItems,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ModuleRef {
    /// `std::NAME`: a module of the embedded standard library.
    Std(Ident),
    /// A path relative to the importing file.
    File(StringLit),
}

#[derive(Clone, Debug, PartialEq)]
pub enum UseItems {
    All,
    Names(Vec<Ident>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConstDecl {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// A reusable, parameterised layer graph; with an `input` statement it is a whole network.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockDecl {
    pub name: Ident,
    pub params: Vec<Ident>,
    pub body: Vec<Stmt>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `input [C, H, W]`: the input shape of a network.
    Input {
        shape: Expr,
        span: Span,
    },
    Layer(LayerStmt),
}

/// `name = layer(args) from a, b`; without `from`, the input is the previous statement.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerStmt {
    pub name: Option<Ident>,
    pub layer: LayerExpr,
    pub from: Vec<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LayerExpr {
    Call(Call),
    If {
        cond: Expr,
        then: Box<LayerExpr>,
        otherwise: Box<LayerExpr>,
        span: Span,
    },
}

impl LayerExpr {
    pub fn span(&self) -> Span {
        match self {
            LayerExpr::Call(c) => c.span,
            LayerExpr::If { span, .. } => *span,
        }
    }
}

/// `callee(args)` or a bare `callee`.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub callee: Ident,
    pub args: Vec<Arg>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "&&",
            BinOp::Or => "||",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeUnit {
    Millis,
    Seconds,
    Minutes,
    Hours,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// Decimal literal text, e.g. `8`, `0.4914`, `1e-5` (evaluated exactly).
    Number(String),
    Duration {
        value: String,
        unit: TimeUnit,
    },
    Bool(bool),
    Str(String),
    List(Vec<Expr>),
    Name(String),
    Neg(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
}

/// `network NAME = model(args) weights "file"` or `network NAME = onnx("file")`.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkDecl {
    pub name: Ident,
    pub model: Call,
    pub weights: Option<Expr>,
    pub span: Span,
}

/// `dataset NAME = source(args) | transform | ...`.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetDecl {
    pub name: Ident,
    pub source: Call,
    pub transforms: Vec<Transform>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Transform {
    pub kind: TransformKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TransformKind {
    /// Multiply every pixel by this factor (e.g. `scale 1/255`).
    Scale(Expr),
    First(Expr),
    /// Samples `start..end` (end exclusive).
    Range(Expr, Expr),
    Sample {
        count: Expr,
        seed: Expr,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerturbationKind {
    Universal,
    Samplewise,
}

/// `perturbation NAME = universal linf eps [per_channel] EXPR`.
#[derive(Clone, Debug, PartialEq)]
pub struct PerturbationDecl {
    pub name: Ident,
    pub kind: PerturbationKind,
    pub per_channel: bool,
    pub eps: Expr,
    pub span: Span,
}

/// `property NAME = certify [classwise] accuracy of NET on DATA under PERT { options }`; a
/// class-wise scan may name several networks, `of [NET, NET, ...]` (models trained on one data set
/// with different seeds), whose certified rates it averages.
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyDecl {
    pub name: Ident,
    pub classwise: bool,
    /// At least one; more only in brackets.
    pub networks: Vec<Ident>,
    /// Whether the networks were written as a bracketed list.
    pub network_list: Option<Span>,
    pub dataset: Ident,
    pub perturbation: Ident,
    pub options: Vec<OptionEntry>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct OptionEntry {
    pub key: Ident,
    pub value: OptValue,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum OptValue {
    /// A symbol such as `crown`, `alpha-crown`, `microlp(time_limit: 60s)`.
    Word {
        word: Ident,
        args: Option<Vec<Arg>>,
        span: Span,
    },
    List {
        items: Vec<OptValue>,
        span: Span,
    },
    Expr(Expr),
}

impl OptValue {
    pub fn span(&self) -> Span {
        match self {
            OptValue::Word { span, .. } | OptValue::List { span, .. } => *span,
            OptValue::Expr(e) => e.span,
        }
    }
}
