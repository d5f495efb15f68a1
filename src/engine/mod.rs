//! Bound engines over the IR. The CPU engine is the oracle for every other back end.
//!
//! Contract: for sample `i` with label `yᵢ` and every class `j ≠ yᵢ`, and every δ in the box,
//! `f_{yᵢ}(xᵢ+δ) − f_j(xᵢ+δ) ≥ a_{ij}·δ + b_{ij}` (paper Eq. 3), evaluated in real arithmetic.
//!
//! # API
//! - [`cpu::margin_bounds`] / [`cpu::margin_bounds_cached`]: per-sample linear margin bounds
//!   (`a`, `b`, sample-wise lower) for [`BoundMethod::Ibp`], [`BoundMethod::Crown`] (auto_LiRPA
//!   `method='backward'`: CROWN intermediate bounds for IBP-unstable ReLU inputs, intersected
//!   with IBP; chord upper relaxation; lower slope 1 iff u > −l) and [`BoundMethod::AlphaCrown`]
//!   (per-row lower slopes of the final pass optimised by projected Adam, best kept per row).
//!   At dense ReLU layers, an IBP-unstable neuron is bounded first on the side of zero its value
//!   at x lies on, and on the far side only if still unstable. A neuron proven stable keeps
//!   IBP's far-side bound, which no relaxation reads. At the last ReLU layer nothing else reads
//!   it either; at earlier ones later IBP does, so a certificate (inner intervals, see
//!   `cpu::intermediate_pass`) shows per sample that no later relaxation changed, else the
//!   sample is redone skipping only at the last layer. Either way the margin bounds are those
//!   of the two-sided pass bit for bit (`skipped_far_sides_match_two_sided`).
//!   Back-substitution for intermediate bounds of `[C, H, W]` nodes built by convolutions,
//!   ReLUs, channel affine maps and additions runs on the window path (`window`): the rows of
//!   the neurons at one spatial position cover only that position's receptive field at each
//!   earlier layer, and keep only the neurons whose coefficient can matter (dead ReLUs multiply
//!   theirs by zero), neuron-major, so a conv transpose is a few small GEMMs over live neurons
//!   per input position. Dense rows (of flat layers) continue on it, over the whole map, once
//!   they reach such nodes.
//!   The margin rows of the final pass (and α-CROWN's) stay dense and channels-first.
//! - [`BoundCache`]: shares intermediate bounds between properties, methods (CROWN and α-CROWN
//!   share them) and, on disk, runs.
//! - [`cpu::forward`] and [`cpu::vjp`]: batched concrete evaluation and input gradients;
//!   [`cpu::forward_tape`] + [`cpu::vjp_tape`] share one forward pass between the two.
//!
//! As in the paper, x + δ is not clipped to the valid pixel range: the box is exactly
//! `{δ : lo ≤ δ ≤ hi}` around a fixed x.
//!
//! # Numeric safety
//! Everything is computed in f64 from f64 parameters, except, with [`RowPrecision::F32`], the
//! window path's rows, whose every rounding is charged to the bound as a term of its own (see
//! `window`'s module doc). Rounding in a dot product of length n is at
//! most about `n·2⁻⁵³·Σ|terms|`, i.e. below `1e-11` relative to the magnitude of the terms for the
//! layer sizes upcc handles. Every bound the engine produces — each intermediate interval (IBP or
//! CROWN) and each final `b_{ij}` — is moved outward by [`cpu::SAFETY_REL`]` · (1 + M)`, where `M`
//! is the sum of the absolute values of all terms that formed it (`Σ|A|·|const|` over every
//! back-substitution step plus `Σ|a|·(|x|+max(|lo|,|hi|))`). With `SAFETY_REL = 1e-9` this is
//! two orders of magnitude above the worst-case accumulated error, so a certified (positive)
//! lower bound is a true real-arithmetic lower bound. Non-finite bounds are an error, never a
//! certificate.

pub mod cache;
pub mod cpu;
pub mod gpu;
pub mod linop;
mod window;

pub use cache::BoundCache;
pub use cpu::{forward, forward_tape, margin_bounds, vjp, vjp_tape, EngineError, Tape};

use ndarray::{Array1, Array2};

/// Which relaxation-based method computes the bounds.
#[derive(Clone, Debug, PartialEq)]
pub enum BoundMethod {
    Ibp,
    /// auto_LiRPA `method='backward'`.
    Crown,
    /// CROWN with lower ReLU slopes optimised per sample by projected gradient.
    AlphaCrown {
        iterations: usize,
        learning_rate: f64,
    },
}

/// The scalar of the rows the window path pulls back for intermediate bounds of conv layers
/// (everything else is `f64`). `F32` runs its GEMMs twice as fast; both are sound, since the
/// window path charges every rounding of a row to its bound (see `window`), and `F32` bounds
/// are looser by those charges, about `1e-4` of the rows' magnitudes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RowPrecision {
    /// The reference: CROWN as auto_LiRPA computes it, to `1e-9`.
    #[default]
    F64,
    F32,
}

impl RowPrecision {
    /// Unit roundoff of the row scalar.
    pub(crate) fn unit_roundoff(self) -> f64 {
        use linop::RowScalar;
        match self {
            RowPrecision::F64 => f64::UNIT_ROUNDOFF,
            RowPrecision::F32 => f32::UNIT_ROUNDOFF,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RowPrecision::F64 => "f64",
            RowPrecision::F32 => "f32",
        }
    }
}

/// The set of perturbations: an axis-aligned box per flattened input coordinate.
/// A universal ℓ∞ ball of radius ε is `lo = −ε, hi = ε`; per-channel ε makes it non-uniform.
#[derive(Clone, Debug, PartialEq)]
pub struct DeltaBox {
    pub lo: Array1<f64>,
    pub hi: Array1<f64>,
}

impl DeltaBox {
    pub fn linf(dim: usize, eps: f64) -> Self {
        DeltaBox {
            lo: Array1::from_elem(dim, -eps),
            hi: Array1::from_elem(dim, eps),
        }
    }

    pub fn dim(&self) -> usize {
        self.lo.len()
    }
}

/// Linear margin bounds of one sample with respect to the shared δ.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleBounds {
    pub label: usize,
    /// The classes j ≠ label, ascending; row r of `a`/`b` belongs to `others[r]`.
    pub others: Vec<usize>,
    /// `[K−1, d]`: coefficients a_{ij}.
    pub a: Array2<f64>,
    /// `[K−1]`: biases b_{ij} (the bound's value at δ = 0).
    pub b: Array1<f64>,
    /// `[K−1]`: min over the box of a_{ij}·δ + b_{ij} (paper Eq. 2, concretised).
    pub samplewise_lower: Array1<f64>,
}

/// Bounds for a batch of samples under one δ box and method.
#[derive(Clone, Debug, PartialEq)]
pub struct MarginBounds {
    pub samples: Vec<SampleBounds>,
}
