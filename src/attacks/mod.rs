//! Universal adversarial attacks (DF-UAP, Cos-UAP, Adv-UAP, PGD) and sample-wise PGD.
//!
//! Attacks give *upper* bounds on robust accuracy: [`check_certificates`] compares certificates
//! with them, and [`evaluate_delta`] replays any shared δ (an attack's or a solver's) on the network.
//! Attacks query the network only through [`Classifier`]; each step costs one batched forward and
//! one batched VJP (fused by [`Classifier::logits_and_input_gradient`]). Every attack is seeded and
//! deterministic, keeps δ inside the [`DeltaBox`] (projection by clamping), and reports accuracy
//! evaluated exactly at the δ it returns: a sample is correct only when its label's logit is
//! strictly the largest (a tie is not robust). Universal attacks return the best δ they evaluated,
//! and they always evaluate δ = 0 clamped into the box, so they never do worse than it.

mod losses;
mod samplewise;
mod soundness;
pub mod testing;
mod universal;

use std::fmt;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::engine::{forward, DeltaBox, EngineError};
use crate::ir::Graph;

pub use crate::rng::SplitMix64;
pub use losses::{argmax, is_correct};
pub use soundness::{check_certificates, SoundnessViolation};

/// The class `graph` predicts for each row of `x` (the largest logit, see [`argmax`]).
pub fn predicted_classes(graph: &Graph, x: ArrayView2<f64>) -> Result<Vec<usize>, EngineError> {
    Ok(forward(graph, x)?.rows().into_iter().map(argmax).collect())
}

/// A classifier the attacks can query: batched logits and input gradients.
pub trait Classifier: Sync {
    fn input_dim(&self) -> usize;
    fn num_classes(&self) -> usize;
    /// `inputs` is `[n, d]`; returns logits `[n, K]`.
    fn logits(&self, inputs: ArrayView2<f64>) -> Array2<f64>;
    /// Gradient wrt the inputs of `Σᵢ ⟨grad_logits[i], logits(inputs)[i]⟩`; returns `[n, d]`.
    fn input_gradient(&self, inputs: ArrayView2<f64>, grad_logits: ArrayView2<f64>) -> Array2<f64>;

    /// One attack step's queries: the logits of `inputs`, then the input gradient for the logit
    /// gradient that `grad_of` computes from those logits. The default calls [`Classifier::logits`]
    /// and [`Classifier::input_gradient`]; an implementation that keeps its forward activations can
    /// override it to skip the VJP's second forward pass.
    fn logits_and_input_gradient(
        &self,
        inputs: ArrayView2<f64>,
        grad_of: &mut dyn FnMut(&Array2<f64>) -> Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>) {
        let logits = self.logits(inputs.reborrow());
        let grad_logits = grad_of(&logits);
        let gradient = self.input_gradient(inputs, grad_logits.view());
        (logits, gradient)
    }
}

/// The attacks, named as in the spec language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttackKind {
    /// Sign-gradient PGD on the shared δ with restarts.
    Pgd,
    /// C&W margin loss on the shared δ, Adam steps (Zhang et al. 2020).
    DfUap,
    /// Minimises the cosine similarity of clean and perturbed logits, Adam steps (Zhang et al. 2021a).
    CosUap,
    /// Per-sample adversarial examples first, then a universal δ synthesised from them (Li et al. 2022).
    AdvUap,
    /// One δ per sample: the attack to compare with the sample-wise certificate.
    SamplewisePgd,
}

impl AttackKind {
    pub const ALL: [AttackKind; 5] = [
        AttackKind::Pgd,
        AttackKind::DfUap,
        AttackKind::CosUap,
        AttackKind::AdvUap,
        AttackKind::SamplewisePgd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AttackKind::Pgd => "pgd",
            AttackKind::DfUap => "df_uap",
            AttackKind::CosUap => "cos_uap",
            AttackKind::AdvUap => "adv_uap",
            AttackKind::SamplewisePgd => "samplewise_pgd",
        }
    }

    pub fn from_name(name: &str) -> Option<AttackKind> {
        AttackKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether the attack uses one δ shared by all samples.
    pub fn is_universal(self) -> bool {
        self != AttackKind::SamplewisePgd
    }
}

impl fmt::Display for AttackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The loss plain PGD maximises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgdLoss {
    CrossEntropy,
    /// The C&W margin, clamped at the options' confidence.
    Margin,
}

/// Options shared by all attacks.
#[derive(Clone, Debug, PartialEq)]
pub struct AttackOptions {
    /// Gradient steps per restart (Adv-UAP splits them between its phases).
    pub steps: usize,
    /// Step size as a fraction of each coordinate's box half-width; `None` means 2.5 divided by the
    /// steps of the run (or of the phase, for Adv-UAP), so a run can cross the box.
    pub step_size: Option<f64>,
    /// Runs per attack; the first starts at δ = 0 clamped into the box, the others uniformly at random.
    pub restarts: usize,
    pub seed: u64,
    /// κ of the C&W margin: a sample stops pulling on δ once its margin is below −κ.
    pub confidence: f64,
    pub pgd_loss: PgdLoss,
}

impl Default for AttackOptions {
    fn default() -> Self {
        AttackOptions {
            steps: 100,
            step_size: None,
            restarts: 1,
            seed: 0,
            confidence: 0.0,
            pgd_loss: PgdLoss::CrossEntropy,
        }
    }
}

impl AttackOptions {
    /// The step size, as a fraction of the box half-width, of a run of `steps` steps.
    pub fn relative_step(&self, steps: usize) -> f64 {
        self.step_size.unwrap_or(2.5 / steps.max(1) as f64)
    }
}

/// The outcome of a universal attack: the best δ found (fewest samples still correct).
#[derive(Clone, Debug, PartialEq)]
pub struct UniversalAttackResult {
    pub name: String,
    pub delta: Vec<f64>,
    /// Samples still classified correctly under `delta`.
    pub correct: usize,
    pub correct_mask: Vec<bool>,
}

/// The outcome of the sample-wise attack: one δ per sample.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplewiseAttackResult {
    pub name: String,
    /// `[n, d]`: row i is sample i's δ.
    pub deltas: Array2<f64>,
    pub correct: usize,
    pub correct_mask: Vec<bool>,
}

/// What [`run_attack`] returns.
#[derive(Clone, Debug, PartialEq)]
pub enum AttackResult {
    Universal(UniversalAttackResult),
    Samplewise(SamplewiseAttackResult),
}

impl AttackResult {
    pub fn name(&self) -> &str {
        match self {
            AttackResult::Universal(r) => &r.name,
            AttackResult::Samplewise(r) => &r.name,
        }
    }

    pub fn correct(&self) -> usize {
        match self {
            AttackResult::Universal(r) => r.correct,
            AttackResult::Samplewise(r) => r.correct,
        }
    }

    pub fn correct_mask(&self) -> &[bool] {
        match self {
            AttackResult::Universal(r) => &r.correct_mask,
            AttackResult::Samplewise(r) => &r.correct_mask,
        }
    }
}

/// Why an attack could not run.
#[derive(Clone, Debug, PartialEq)]
pub enum AttackError {
    /// Two sizes that must agree do not.
    Shape {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    LabelOutOfRange {
        sample: usize,
        label: usize,
        classes: usize,
    },
    TooFewClasses(usize),
    NonFiniteInput {
        sample: usize,
    },
    /// A δ given to [`evaluate_delta`] has a non-finite coordinate.
    NonFiniteDelta {
        coordinate: usize,
    },
    /// A box bound is not finite or `lo > hi`.
    BadBox {
        coordinate: usize,
        lo: f64,
        hi: f64,
    },
    BadOption(String),
}

impl fmt::Display for AttackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttackError::Shape {
                what,
                expected,
                found,
            } => write!(f, "{what}: expected {expected}, found {found}"),
            AttackError::LabelOutOfRange {
                sample,
                label,
                classes,
            } => write!(
                f,
                "sample {sample} has label {label}, but the classifier has {classes} classes"
            ),
            AttackError::TooFewClasses(k) => {
                write!(f, "attacks need at least 2 classes, the classifier has {k}")
            }
            AttackError::NonFiniteInput { sample } => {
                write!(f, "sample {sample} has a non-finite input value")
            }
            AttackError::NonFiniteDelta { coordinate } => {
                write!(f, "perturbation coordinate {coordinate} is not finite")
            }
            AttackError::BadBox { coordinate, lo, hi } => write!(
                f,
                "perturbation box coordinate {coordinate} is [{lo}, {hi}]; bounds must be finite with lo ≤ hi"
            ),
            AttackError::BadOption(msg) => write!(f, "bad attack option: {msg}"),
        }
    }
}

impl std::error::Error for AttackError {}

/// Runs one attack on `inputs` (`[n, d]`) with `labels` over perturbations in `bx`.
pub fn run_attack<C: Classifier + ?Sized>(
    kind: AttackKind,
    classifier: &C,
    inputs: ArrayView2<f64>,
    labels: &[usize],
    bx: &DeltaBox,
    options: &AttackOptions,
) -> Result<AttackResult, AttackError> {
    let problem = Problem::new(classifier, inputs.reborrow(), labels, bx, options)?;
    let universal = |r: Result<(Array1<f64>, Vec<bool>), AttackError>| {
        r.map(|(delta, mask)| {
            AttackResult::Universal(UniversalAttackResult {
                name: kind.name().to_string(),
                delta: delta.to_vec(),
                correct: mask.iter().filter(|&&c| c).count(),
                correct_mask: mask,
            })
        })
    };
    match kind {
        AttackKind::Pgd => universal(universal::pgd(&problem)),
        AttackKind::DfUap => universal(universal::df_uap(&problem)),
        AttackKind::CosUap => universal(universal::cos_uap(&problem)),
        AttackKind::AdvUap => universal(universal::adv_uap(&problem)),
        AttackKind::SamplewisePgd => {
            let (deltas, mask) = samplewise::samplewise_pgd(&problem)?;
            Ok(AttackResult::Samplewise(SamplewiseAttackResult {
                name: kind.name().to_string(),
                deltas,
                correct: mask.iter().filter(|&&c| c).count(),
                correct_mask: mask,
            }))
        }
    }
}

/// Which samples stay correct when the shared `delta` is added to every input
/// (replays a δ from an attack or a solver on the real network).
pub fn evaluate_delta<C: Classifier + ?Sized>(
    classifier: &C,
    inputs: ArrayView2<f64>,
    labels: &[usize],
    delta: &[f64],
) -> Result<Vec<bool>, AttackError> {
    let d = classifier.input_dim();
    check_len("delta length", d, delta.len())?;
    if let Some(coordinate) = delta.iter().position(|v| !v.is_finite()) {
        return Err(AttackError::NonFiniteDelta { coordinate });
    }
    check_inputs(classifier, inputs, labels)?;
    let delta = ArrayView1::from(delta);
    let logits = checked_logits(classifier, (&inputs + &delta).view())?;
    Ok(correct_mask(&logits, labels))
}

/// A validated attack problem.
pub(crate) struct Problem<'a, C: Classifier + ?Sized> {
    pub classifier: &'a C,
    pub inputs: ArrayView2<'a, f64>,
    pub labels: &'a [usize],
    pub lo: &'a Array1<f64>,
    pub hi: &'a Array1<f64>,
    pub options: &'a AttackOptions,
}

impl<'a, C: Classifier + ?Sized> Problem<'a, C> {
    fn new(
        classifier: &'a C,
        inputs: ArrayView2<'a, f64>,
        labels: &'a [usize],
        bx: &'a DeltaBox,
        options: &'a AttackOptions,
    ) -> Result<Self, AttackError> {
        check_inputs(classifier, inputs, labels)?;
        check_len("box dimension", classifier.input_dim(), bx.dim())?;
        check_len("box upper-bound dimension", bx.dim(), bx.hi.len())?;
        for (k, (&lo, &hi)) in bx.lo.iter().zip(bx.hi.iter()).enumerate() {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(AttackError::BadBox {
                    coordinate: k,
                    lo,
                    hi,
                });
            }
        }
        let rel = options.relative_step(options.steps);
        if !(rel.is_finite() && rel > 0.0) {
            return Err(AttackError::BadOption(format!(
                "step size must be positive and finite, got {rel}"
            )));
        }
        if options.restarts == 0 {
            return Err(AttackError::BadOption("restarts must be at least 1".into()));
        }
        if !(options.confidence.is_finite() && options.confidence >= 0.0) {
            return Err(AttackError::BadOption(format!(
                "confidence must be finite and non-negative, got {}",
                options.confidence
            )));
        }
        Ok(Problem {
            classifier,
            inputs,
            labels,
            lo: &bx.lo,
            hi: &bx.hi,
            options,
        })
    }

    pub fn n(&self) -> usize {
        self.inputs.nrows()
    }

    pub fn num_classes(&self) -> usize {
        self.classifier.num_classes()
    }

    /// Per-coordinate step of a run of `steps` steps: the relative step times the box half-width.
    pub fn alpha(&self, steps: usize) -> Array1<f64> {
        let rel = self.options.relative_step(steps);
        (self.hi - self.lo).mapv(|w| rel * w / 2.0)
    }

    /// Clamps one coordinate into the box; NaN goes to `lo`.
    pub fn clamp(&self, k: usize, v: f64) -> f64 {
        if v >= self.hi[k] {
            self.hi[k]
        } else if v >= self.lo[k] {
            v
        } else {
            self.lo[k]
        }
    }

    /// δ = 0 projected into the box.
    pub fn zero_start(&self) -> Array1<f64> {
        Array1::from_shape_fn(self.lo.len(), |k| self.clamp(k, 0.0))
    }

    pub fn random_start(&self, rng: &mut SplitMix64) -> Array1<f64> {
        Array1::from_shape_fn(self.lo.len(), |k| rng.uniform(self.lo[k], self.hi[k]))
    }

    /// The given rows of the inputs plus per-row perturbations `deltas` (`[rows, d]`).
    pub fn perturbed_rows(&self, rows: &[usize], deltas: &Array2<f64>) -> Array2<f64> {
        self.inputs.select(Axis(0), rows) + deltas
    }

    /// Every input plus the shared δ.
    pub fn perturbed_shared(&self, delta: &Array1<f64>) -> Array2<f64> {
        &self.inputs + delta
    }

    pub fn logits(&self, x: &Array2<f64>) -> Result<Array2<f64>, AttackError> {
        checked_logits(self.classifier, x.view())
    }

    /// Logits of `x` and the input gradient of Σᵢ ⟨grad_of(logits)[i], logits[i]⟩. `grad_of` only
    /// sees logits of the right shape; non-finite gradient entries become 0 (they carry no
    /// direction, and dropping them keeps δ finite).
    pub fn logits_and_gradient(
        &self,
        x: &Array2<f64>,
        mut grad_of: impl FnMut(&Array2<f64>) -> Array2<f64>,
    ) -> Result<(Array2<f64>, Array2<f64>), AttackError> {
        let expected = (x.nrows(), self.num_classes());
        let mut bad_shape = None;
        let mut checked = |logits: &Array2<f64>| {
            if logits.dim() == expected {
                grad_of(logits)
            } else {
                bad_shape = Some(logits.dim());
                Array2::zeros(expected)
            }
        };
        let (logits, mut g) = self
            .classifier
            .logits_and_input_gradient(x.view(), &mut checked);
        if let Some((rows, cols)) = bad_shape {
            check_len("classifier logit rows", expected.0, rows)?;
            check_len("classifier logit columns", expected.1, cols)?;
        }
        check_len("classifier logit rows", expected.0, logits.nrows())?;
        check_len("classifier logit columns", expected.1, logits.ncols())?;
        check_len("classifier gradient rows", x.nrows(), g.nrows())?;
        check_len("classifier gradient columns", x.ncols(), g.ncols())?;
        g.mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
        Ok((logits, g))
    }
}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<(), AttackError> {
    if expected == found {
        Ok(())
    } else {
        Err(AttackError::Shape {
            what,
            expected,
            found,
        })
    }
}

fn check_inputs<C: Classifier + ?Sized>(
    classifier: &C,
    inputs: ArrayView2<f64>,
    labels: &[usize],
) -> Result<(), AttackError> {
    let k = classifier.num_classes();
    if k < 2 {
        return Err(AttackError::TooFewClasses(k));
    }
    check_len("input dimension", classifier.input_dim(), inputs.ncols())?;
    check_len("number of labels", inputs.nrows(), labels.len())?;
    if let Some((sample, &label)) = labels.iter().enumerate().find(|(_, &l)| l >= k) {
        return Err(AttackError::LabelOutOfRange {
            sample,
            label,
            classes: k,
        });
    }
    if let Some(sample) = inputs
        .outer_iter()
        .position(|row| row.iter().any(|v| !v.is_finite()))
    {
        return Err(AttackError::NonFiniteInput { sample });
    }
    Ok(())
}

fn checked_logits<C: Classifier + ?Sized>(
    classifier: &C,
    x: ArrayView2<f64>,
) -> Result<Array2<f64>, AttackError> {
    let logits = classifier.logits(x);
    check_len("classifier logit rows", x.nrows(), logits.nrows())?;
    check_len(
        "classifier logit columns",
        classifier.num_classes(),
        logits.ncols(),
    )?;
    Ok(logits)
}

pub(crate) fn correct_mask(logits: &Array2<f64>, labels: &[usize]) -> Vec<bool> {
    logits
        .outer_iter()
        .zip(labels)
        .map(|(z, &y)| is_correct(z, y))
        .collect()
}
