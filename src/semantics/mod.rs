//! Semantics: import and name resolution, constant evaluation, shape inference, weight and data
//! binding. The result, a [`CheckedProgram`], is everything later stages need; they never reparse.
//!
//! Entry points: [`check_file`] (reads from disk) and [`check_source`] (any [`Loader`], for tests
//! and editors). Every error in a file is reported, not only the first.

mod checker;
mod data;
pub mod loader;
mod network;
pub mod value;

pub use data::SOURCES as DATASET_SOURCES;
pub use loader::{FsLoader, Loader, MemoryLoader};
pub use network::BUILTIN_LAYERS;
pub use value::{Exact, Rational};

use crate::diagnostics::Diagnostics;
use crate::formats;
use crate::ir;
use crate::source::{SourceMap, Span};
use std::path::Path;
use std::time::Duration;

/// A fully checked `.upc` file: every network, dataset, perturbation and property of the root
/// file (plus imported ones that its properties use).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedProgram {
    pub networks: Vec<CheckedNetwork>,
    pub datasets: Vec<CheckedDataset>,
    pub perturbations: Vec<CheckedPerturbation>,
    pub properties: Vec<CheckedProperty>,
    /// Warnings found while checking (no errors: those make checking fail).
    pub warnings: Vec<crate::diagnostics::Diagnostic>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckedNetwork {
    pub name: String,
    pub span: Span,
    pub input_shape: Vec<usize>,
    /// Number of classes (the logits vector length).
    pub num_classes: usize,
    /// Every layer in topological order (the IR nodes, also for networks without weights).
    pub layers: Vec<LayerSummary>,
    /// The weight tensors the network binds, with their required shapes (PyTorch names).
    pub parameters: Vec<(String, Vec<usize>)>,
    /// The lowered, validated IR. `None` only for networks declared without `weights`; no
    /// property refers to such a network (that is an error).
    pub graph: Option<ir::Graph>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LayerSummary {
    pub name: String,
    /// The IR op kind (`conv2d`, `relu`, ...; batchnorm shows as `batchnorm`).
    pub kind: &'static str,
    /// Per-sample output shape.
    pub shape: Vec<usize>,
}

impl CheckedNetwork {
    /// Number of scalar parameters.
    pub fn parameter_count(&self) -> usize {
        self.parameters
            .iter()
            .map(|(_, s)| s.iter().fold(1usize, |a, &d| a.saturating_mul(d)))
            .fold(0usize, usize::saturating_add)
    }

    /// Number of ReLU units (per sample).
    pub fn relu_count(&self) -> usize {
        self.layers
            .iter()
            .filter(|l| l.kind == "relu")
            .map(|l| l.shape.iter().product::<usize>())
            .fold(0usize, usize::saturating_add)
    }
}

/// Where a dataset's samples come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    File(formats::DatasetSource),
    /// Seeded uniform noise in `[0, 1)` (before scaling), without labels: for the backdoor scan.
    Noise {
        shape: Vec<usize>,
        count: usize,
        seed: u64,
    },
}

/// Which samples of the source are used (applied after loading, before scaling).
#[derive(Clone, Debug, PartialEq)]
pub enum Selection {
    All,
    First(usize),
    /// Samples `start..end`, end exclusive.
    Range(usize, usize),
    /// `count` distinct samples drawn with a seeded generator, kept in file order.
    Sample {
        count: usize,
        seed: u64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckedDataset {
    pub name: String,
    pub span: Span,
    pub source: DataSource,
    /// Pixel factor applied to the stored values (default 1/255 for files, 1 for noise).
    pub scale: Exact,
    pub selection: Selection,
    /// False for noise inputs; then `data.labels` is empty.
    pub labeled: bool,
    /// The samples after selection and scaling.
    pub data: formats::Dataset,
}

impl CheckedDataset {
    pub fn len(&self) -> usize {
        let per = self.data.shape.iter().product::<usize>().max(1);
        self.data.images.len() / per
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerturbationKind {
    /// One δ shared by every sample.
    Universal,
    /// An independent δ per sample.
    Samplewise,
}

/// One radius of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub enum Epsilon {
    Uniform(Exact),
    /// One radius per input channel.
    PerChannel(Vec<Exact>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckedPerturbation {
    pub name: String,
    pub span: Span,
    pub kind: PerturbationKind,
    /// ℓ∞ radii in pixel units; more than one is a sweep.
    pub eps: Vec<Epsilon>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BoundsOption {
    Ibp,
    Crown,
    AlphaCrown {
        iterations: usize,
        learning_rate: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverKind {
    Microlp,
    Highs,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SolverOption {
    pub kind: SolverKind,
    pub time_limit: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attack {
    Pgd,
    DfUap,
    CosUap,
    AdvUap,
    /// One δ per sample: the attack to hold the sample-wise certificate against.
    SamplewisePgd,
}

/// Property options with their defaults filled in.
#[derive(Clone, Debug, PartialEq)]
pub struct PropertyOptions {
    /// Default: crown.
    pub bounds: BoundsOption,
    /// Default: microlp with a 60 s limit.
    pub solver: SolverOption,
    /// 1 − ξ of the population bound (paper Theorem 2). Default 0.9.
    pub confidence: Exact,
    /// ξ = 1 − confidence.
    pub xi: f64,
    /// Also certify sample-wise for comparison. Default false.
    pub compare_samplewise: bool,
    /// Attacks run for an upper bound. Default none.
    pub attacks: Vec<Attack>,
}

impl Default for PropertyOptions {
    fn default() -> Self {
        PropertyOptions {
            bounds: BoundsOption::Crown,
            solver: SolverOption {
                kind: SolverKind::Microlp,
                time_limit: Duration::from_secs(60),
            },
            confidence: Exact {
                num: 9,
                den: 10,
                value: 0.9,
            },
            xi: 0.1,
            compare_samplewise: false,
            attacks: Vec::new(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PropertyKind {
    /// Certified accuracy over the dataset.
    Accuracy,
    /// Certified accuracy per target class (the backdoor scan, paper §5.3).
    Classwise,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CheckedProperty {
    pub name: String,
    pub span: Span,
    pub kind: PropertyKind,
    /// Indices into [`CheckedProgram`]'s vectors. Every network has a graph, the data's shape
    /// equals its input shape and every label is below its class count. One network, except for a
    /// class-wise scan over several (which then share their class count).
    pub networks: Vec<usize>,
    pub dataset: usize,
    pub perturbation: usize,
    pub options: PropertyOptions,
}

/// Checks the `.upc` file at `path` and everything it imports. The source map holds every file
/// read, for rendering the diagnostics. On success the warnings are in the program.
pub fn check_file(path: &Path) -> (SourceMap, Result<CheckedProgram, Diagnostics>) {
    check_source(path, &FsLoader)
}

/// [`check_file`] with a custom loader for `.upc` sources (data and weight files are always read
/// from disk, relative to the file that names them).
pub fn check_source(
    path: &Path,
    loader: &dyn Loader,
) -> (SourceMap, Result<CheckedProgram, Diagnostics>) {
    checker::check(path, loader)
}
