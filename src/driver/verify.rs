//! `upcc verify`: runs every property of a checked program.
//!
//! Per property and ε: clean accuracy, linear bounds (engine), sample-wise count, attacks, the
//! universal MILP warm-started with the best attack δ, replay of the solver's δ on the real
//! network, the Theorem 2 population bound, and the cross-checks that keep certificates honest.

use super::progress::StageProgress;
use super::report::{
    ClassCount, ClasswiseScan, EpsResult, MilpStatus, MilpSummary, Report, ScanInputs,
};
use crate::attacks::{self, AttackKind, AttackOptions, AttackResult, Classifier};
use crate::diagnostics::Diagnostic;
use crate::engine::gpu::BoundEngine;
use crate::engine::{self, BoundCache, BoundMethod, DeltaBox, EngineError, RowPrecision};
use crate::milp::{self, MilpOptions};
use crate::population;
use crate::semantics::{
    Attack, BoundsOption, CheckedProgram, CheckedProperty, Epsilon, Exact, PerturbationKind,
    PropertyKind, SolverKind,
};
use ndarray::{Array2, ArrayView2};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How `verify` runs, beyond what the spec says.
pub struct VerifyOptions {
    pub cache: BoundCache,
    /// The scalar of the CPU engine's window rows (`--rows`).
    pub rows: RowPrecision,
    /// Where the bounds are computed (`--device`).
    pub engine: BoundEngine,
    /// Progress lines on stderr.
    pub progress: bool,
    /// Attack settings shared by every property.
    pub attack: AttackOptions,
}

/// A finished run: the report, plus the worst-case δ of each of its rows.
pub struct VerifyRun {
    pub report: Report,
    /// Per row, the δ replayed on the network (solver's, else the strongest attack's), with the
    /// input shape.
    pub deltas: Vec<Option<(Vec<usize>, Vec<f64>)>>,
    /// Per row, each universal attack's δ.
    pub attack_deltas: Vec<BTreeMap<String, Vec<f64>>>,
}

/// The network as the attacks see it: concrete forward pass and input VJP from the engine.
pub struct GraphClassifier<'a> {
    pub graph: &'a crate::ir::Graph,
}

impl Classifier for GraphClassifier<'_> {
    fn input_dim(&self) -> usize {
        self.graph.input_shape().iter().product()
    }

    fn num_classes(&self) -> usize {
        self.graph.output_shape().iter().product()
    }

    fn logits(&self, inputs: ArrayView2<f64>) -> Array2<f64> {
        // A failure here can only be non-finite values; NaN logits make the attack report it.
        engine::forward(self.graph, inputs)
            .unwrap_or_else(|_| Array2::from_elem((inputs.nrows(), self.num_classes()), f64::NAN))
    }

    fn input_gradient(&self, inputs: ArrayView2<f64>, grad_logits: ArrayView2<f64>) -> Array2<f64> {
        engine::vjp(self.graph, inputs, grad_logits)
            .unwrap_or_else(|_| Array2::from_elem(inputs.raw_dim(), f64::NAN))
    }

    fn logits_and_input_gradient(
        &self,
        inputs: ArrayView2<f64>,
        grad_of: &mut dyn FnMut(&Array2<f64>) -> Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>) {
        // One forward pass serves both; failures are non-finite values, reported as NaN.
        let nan_logits = || Array2::from_elem((inputs.nrows(), self.num_classes()), f64::NAN);
        let nan_gradient = || Array2::from_elem(inputs.raw_dim(), f64::NAN);
        match engine::forward_tape(self.graph, inputs) {
            Ok((logits, tape)) => {
                let grad_logits = grad_of(&logits);
                let gradient = engine::vjp_tape(self.graph, &tape, grad_logits.view())
                    .unwrap_or_else(|_| nan_gradient());
                (logits, gradient)
            }
            Err(_) => {
                let logits = nan_logits();
                let _ = grad_of(&logits);
                (logits, nan_gradient())
            }
        }
    }
}

fn engine_diagnostic(err: EngineError, property: &CheckedProperty) -> Diagnostic {
    let d = err.to_diagnostic();
    if d.labels.is_empty() {
        d.with_primary(property.span, "while certifying this property")
    } else {
        d.with_secondary(property.span, "while certifying this property")
    }
}

fn milp_diagnostic(err: milp::MilpError, property: &CheckedProperty) -> Diagnostic {
    Diagnostic::error("E0501", format!("{err}"))
        .with_primary(property.span, "while solving this property's MILP")
}

fn attack_diagnostic(err: attacks::AttackError, property: &CheckedProperty) -> Diagnostic {
    Diagnostic::error("E0502", format!("attack failed: {err}"))
        .with_primary(property.span, "in this property")
}

fn bound_method(option: &BoundsOption) -> BoundMethod {
    match option {
        BoundsOption::Ibp => BoundMethod::Ibp,
        BoundsOption::Crown => BoundMethod::Crown,
        BoundsOption::AlphaCrown {
            iterations,
            learning_rate,
        } => BoundMethod::AlphaCrown {
            iterations: *iterations,
            learning_rate: *learning_rate,
        },
    }
}

fn attack_kind(attack: Attack) -> AttackKind {
    match attack {
        Attack::Pgd => AttackKind::Pgd,
        Attack::DfUap => AttackKind::DfUap,
        Attack::CosUap => AttackKind::CosUap,
        Attack::AdvUap => AttackKind::AdvUap,
        Attack::SamplewisePgd => AttackKind::SamplewisePgd,
    }
}

/// The δ box of one ε over a `[C, ...]` input.
pub fn delta_box(eps: &Epsilon, input_shape: &[usize]) -> DeltaBox {
    let dim: usize = input_shape.iter().product();
    match eps {
        Epsilon::Uniform(e) => DeltaBox::linf(dim, e.value),
        Epsilon::PerChannel(per) => {
            let per_channel = dim / per.len().max(1);
            let radii: Vec<f64> = (0..dim)
                .map(|k| per[(k / per_channel).min(per.len() - 1)].value)
                .collect();
            DeltaBox {
                lo: radii.iter().map(|r| -r).collect(),
                hi: radii.into_iter().collect(),
            }
        }
    }
}

/// A radius in pixel units: over 255 when that is exact (`6/255`, not `2/85`).
fn pixel_fraction(e: &Exact) -> String {
    if e.den > 1 && 255 % e.den == 0 {
        format!("{}/255", e.num * (255 / e.den))
    } else {
        e.to_string()
    }
}

/// ε as text (`6/255`, or `[1/255, 2/255, 3/255]` per channel), and its largest radius.
pub fn eps_text(eps: &Epsilon) -> (String, f64) {
    match eps {
        Epsilon::Uniform(e) => (pixel_fraction(e), e.value),
        Epsilon::PerChannel(per) => {
            let parts: Vec<String> = per.iter().map(pixel_fraction).collect();
            let max = per.iter().map(|e| e.value).fold(0.0, f64::max);
            (format!("[{}]", parts.join(", ")), max)
        }
    }
}

/// Samples whose clean prediction is right: the label's logit strictly above every other.
fn correct_mask(logits: &Array2<f64>, labels: &[usize]) -> Vec<bool> {
    logits
        .rows()
        .into_iter()
        .zip(labels)
        .map(|(row, &y)| attacks::is_correct(row, y))
        .collect()
}

pub fn verify(
    program: &CheckedProgram,
    options: &VerifyOptions,
) -> Result<VerifyRun, Vec<Diagnostic>> {
    let mut run = VerifyRun {
        report: Report::default(),
        deltas: Vec::new(),
        attack_deltas: Vec::new(),
    };
    let mut errors = Vec::new();
    for property in &program.properties {
        let outcome = match property.kind {
            PropertyKind::Accuracy => verify_accuracy(program, property, options, &mut run),
            PropertyKind::Classwise => verify_classwise(program, property, options, &mut run),
        };
        if let Err(d) = outcome {
            errors.push(d);
        }
    }
    if errors.is_empty() {
        Ok(run)
    } else {
        Err(errors)
    }
}

/// A progress line for one stage, drawn until dropped (when `options.progress`).
fn progress(options: &VerifyOptions, message: String, limit: Option<Duration>) -> StageProgress {
    StageProgress::start(options.progress, message, limit)
}

struct Sweep<'p> {
    property: &'p CheckedProperty,
    graph: &'p crate::ir::Graph,
    network: &'p str,
    dataset: &'p str,
    input_shape: Vec<usize>,
}

/// Network `net` after the IR passes, and the property's dataset as an `[n, d]` batch.
fn property_inputs<'p>(
    program: &'p CheckedProgram,
    property: &CheckedProperty,
    net: usize,
) -> Result<(crate::ir::Graph, ArrayView2<'p, f64>), Diagnostic> {
    let network = &program.networks[net];
    let dataset = &program.datasets[property.dataset];
    let graph = network.graph.as_ref().ok_or_else(|| {
        Diagnostic::error(
            "E0310",
            format!("network `{}` has no weights", network.name),
        )
        .with_primary(property.span, "this property needs a network with weights")
    })?;
    let graph = crate::ir::passes::optimize(graph).map_err(|e| {
        Diagnostic::error(
            "E0401",
            format!("IR pass broke layer `{}`: {}", e.node, e.message),
        )
        .with_primary(network.span, "while optimising this network")
    })?;
    let d: usize = dataset.data.shape.iter().product();
    let inputs = ArrayView2::from_shape((dataset.len(), d), &dataset.data.images).map_err(|e| {
        Diagnostic::error("E0403", format!("dataset `{}`: {e}", dataset.name))
            .with_primary(dataset.span, "this dataset has an inconsistent size")
    })?;
    Ok((graph, inputs))
}

fn verify_accuracy(
    program: &CheckedProgram,
    property: &CheckedProperty,
    options: &VerifyOptions,
    run: &mut VerifyRun,
) -> Result<(), Diagnostic> {
    let net = property.networks[0];
    let (graph, inputs) = property_inputs(program, property, net)?;
    let dataset = &program.datasets[property.dataset];
    let sweep = Sweep {
        property,
        graph: &graph,
        network: &program.networks[net].name,
        dataset: &dataset.name,
        input_shape: dataset.data.shape.clone(),
    };
    certify_sweep(program, &sweep, inputs, &dataset.data.labels, options, run).map(|_| ())
}

/// Certifies one labelled batch for every ε of the property's perturbation, appending rows.
fn certify_sweep(
    program: &CheckedProgram,
    sweep: &Sweep,
    inputs: ArrayView2<f64>,
    labels: &[usize],
    options: &VerifyOptions,
    run: &mut VerifyRun,
) -> Result<Vec<usize>, Diagnostic> {
    let property = sweep.property;
    let perturbation = &program.perturbations[property.perturbation];
    let universal = perturbation.kind == PerturbationKind::Universal;
    let n = labels.len();
    let classifier = GraphClassifier { graph: sweep.graph };
    let method = bound_method(&property.options.bounds);
    let clean_start = Instant::now();
    let clean_logits =
        engine::forward(sweep.graph, inputs).map_err(|e| engine_diagnostic(e, property))?;
    let clean_correct = correct_mask(&clean_logits, labels)
        .iter()
        .filter(|&&c| c)
        .count();
    let clean_seconds = clean_start.elapsed().as_secs_f64();
    let mut certified_counts = Vec::new();

    for eps in &perturbation.eps {
        let (eps_label, eps_max) = eps_text(eps);
        let bx = delta_box(eps, &sweep.input_shape);
        let mut seconds = BTreeMap::new();
        seconds.insert("clean".to_string(), clean_seconds);

        let stage = progress(
            options,
            format!("{}: ε = {eps_label}: bounds", property.name),
            None,
        );
        let start = Instant::now();
        let bounds = options
            .engine
            .margin_bounds_cached(
                sweep.graph,
                inputs,
                labels,
                &bx,
                &method,
                (&options.cache, options.rows),
            )
            .map_err(|e| engine_diagnostic(e, property))?;
        seconds.insert("bounds".into(), start.elapsed().as_secs_f64());
        drop(stage);
        let samplewise_mask =
            milp::samplewise_mask(&bounds, &bx).map_err(|e| milp_diagnostic(e, property))?;
        let samplewise = samplewise_mask.iter().filter(|&&c| c).count();

        // The property's attacks; universal ones only make sense against a universal property.
        let start = Instant::now();
        let kinds: Vec<AttackKind> = property
            .options
            .attacks
            .iter()
            .map(|a| attack_kind(*a))
            .filter(|k| universal || !k.is_universal())
            .collect();
        let mut attack_correct = BTreeMap::new();
        let mut attack_deltas = BTreeMap::new();
        let mut strongest: Option<(usize, Vec<f64>)> = None;
        let mut attack_results = Vec::new();
        for kind in kinds {
            let stage = progress(
                options,
                format!("{}: ε = {eps_label}: attack {}", property.name, kind.name()),
                None,
            );
            let result =
                attacks::run_attack(kind, &classifier, inputs, labels, &bx, &options.attack)
                    .map_err(|e| attack_diagnostic(e, property))?;
            drop(stage);
            attack_correct.insert(result.name().to_string(), result.correct());
            if let AttackResult::Universal(u) = &result {
                if strongest.as_ref().is_none_or(|(c, _)| u.correct < *c) {
                    strongest = Some((u.correct, u.delta.clone()));
                }
                attack_deltas.insert(u.name.clone(), u.delta.clone());
            }
            attack_results.push(result);
        }
        if !attack_correct.is_empty() {
            seconds.insert("attacks".into(), start.elapsed().as_secs_f64());
        }

        let mut row = EpsResult {
            property: property.name.clone(),
            network: sweep.network.to_string(),
            dataset: sweep.dataset.to_string(),
            eps: eps_max,
            eps_text: eps_label.clone(),
            n,
            clean_correct,
            samplewise_certified: samplewise,
            compare_samplewise: property.options.compare_samplewise,
            universal_certified: None,
            milp_status: None,
            universal_upper: None,
            population_lower_bound: None,
            xi: property.options.xi,
            attack_correct,
            seconds,
            window_rows: options.engine.window_rows(options.rows).name(),
            threads: rayon::current_num_threads(),
            simd: crate::engine::linop::simd_level().name(),
            milp: None,
            class: None,
        };
        let mut replayed = None;
        let mut certified = samplewise;
        if universal {
            let stage = progress(
                options,
                format!("{}: ε = {eps_label}: MILP", property.name),
                Some(property.options.solver.time_limit),
            );
            let start = Instant::now();
            let backend = solver_backend(property)?;
            let milp_options = MilpOptions {
                time_limit: Some(property.options.solver.time_limit),
                warm_start_delta: strongest.as_ref().map(|(_, d)| d.clone()),
                no_presolve: false,
            };
            let outcome = milp::certify_universal(&bounds, &bx, backend.as_ref(), &milp_options)
                .map_err(|e| milp_diagnostic(e, property))?;
            drop(stage);
            row.seconds
                .insert("milp".into(), start.elapsed().as_secs_f64());
            certified = outcome.certified;
            row.universal_certified = Some(outcome.certified);
            row.milp = Some(MilpSummary {
                backend: outcome.backend,
                nodes: outcome.nodes,
                dual_bound: outcome.dual_bound,
                presolve: outcome.stats.clone(),
            });
            row.milp_status = Some(match outcome.status {
                milp::MilpStatus::Optimal
                    if outcome.nodes == 0 && outcome.stats.binaries_after == 0 =>
                {
                    MilpStatus::Presolved
                }
                milp::MilpStatus::Optimal => MilpStatus::Optimal,
                milp::MilpStatus::TimeLimit => MilpStatus::TimeLimit,
            });
            // Replay: the solver's δ (or the strongest attack's) on the real network.
            let start = Instant::now();
            let delta = outcome
                .best_delta
                .clone()
                .or_else(|| strongest.as_ref().map(|(_, d)| d.clone()))
                .unwrap_or_else(|| vec![0.0; bx.dim()]);
            let mask = attacks::evaluate_delta(&classifier, inputs, labels, &delta)
                .map_err(|e| attack_diagnostic(e, property))?;
            let upper = mask.iter().filter(|&&c| c).count();
            row.universal_upper = Some(upper);
            row.seconds
                .insert("replay".into(), start.elapsed().as_secs_f64());
            replayed = Some((sweep.input_shape.clone(), delta));
            row.population_lower_bound = Some(
                population::arp_lower_bound(outcome.certified, n, property.options.xi).map_err(
                    |e| {
                        Diagnostic::error("E0503", format!("population bound: {e}"))
                            .with_primary(property.span, "in this property")
                    },
                )?,
            );
        }
        check_certificates(&row, &samplewise_mask, &attack_results, property)?;
        certified_counts.push(certified);
        run.report.results.push(row);
        run.deltas.push(replayed);
        run.attack_deltas.push(attack_deltas);
    }
    Ok(certified_counts)
}

fn solver_backend(property: &CheckedProperty) -> Result<Box<dyn milp::MilpBackend>, Diagnostic> {
    match property.options.solver.kind {
        SolverKind::Microlp => Ok(Box::new(milp::Microlp)),
        SolverKind::Highs => highs_backend(property),
    }
}

#[cfg(feature = "highs")]
fn highs_backend(_property: &CheckedProperty) -> Result<Box<dyn milp::MilpBackend>, Diagnostic> {
    Ok(Box::new(milp::Highs))
}

#[cfg(not(feature = "highs"))]
fn highs_backend(property: &CheckedProperty) -> Result<Box<dyn milp::MilpBackend>, Diagnostic> {
    Err(
        Diagnostic::error("E0504", "this upcc was built without the HiGHS solver")
            .with_primary(property.span, "this property asks for `highs`")
            .with_help(
                "rebuild with `cargo build --release --features highs`, or use `solver: microlp`",
            ),
    )
}

/// Certified numbers must never exceed what an attack or the replayed δ achieves, and a sample
/// certified sample-wise must survive every attack.
fn check_certificates(
    row: &EpsResult,
    samplewise_mask: &[bool],
    attack_results: &[AttackResult],
    property: &CheckedProperty,
) -> Result<(), Diagnostic> {
    let universal = row.universal_certified.unwrap_or(row.samplewise_certified);
    let mut violations: Vec<String> =
        attacks::check_certificates(samplewise_mask, universal, attack_results)
            .iter()
            .map(ToString::to_string)
            .collect();
    if row.samplewise_certified > row.clean_correct {
        violations.push(format!(
            "sample-wise certified {} > clean correct {}",
            row.samplewise_certified, row.clean_correct
        ));
    }
    if universal < row.samplewise_certified {
        violations.push(format!(
            "universal certified {universal} < sample-wise certified {}",
            row.samplewise_certified
        ));
    }
    if let Some(upper) = row.universal_upper.filter(|&upper| universal > upper) {
        violations.push(format!(
            "universal certified {universal} > correct under the replayed δ {upper}"
        ));
    }
    match violations.first() {
        None => Ok(()),
        Some(first) => Err(Diagnostic::error(
            "E0505",
            format!("soundness check failed at ε = {}: {first}", row.eps_text),
        )
        .with_primary(property.span, "in this property")
        .with_note("a certificate contradicted by an attack or a replayed δ is a bug in upcc; please report it")),
    }
}

/// The backdoor scan (paper §5.3): for each class c, every input is labelled c and the universal
/// certified count says how many inputs provably stay in class c under any δ. Noise inputs are all
/// scored for every class; labelled data scores class c on the inputs of the other classes. Over
/// several networks (one data set, several seeds) the counts are summed.
fn verify_classwise(
    program: &CheckedProgram,
    property: &CheckedProperty,
    options: &VerifyOptions,
    run: &mut VerifyRun,
) -> Result<(), Diagnostic> {
    let dataset = &program.datasets[property.dataset];
    let perturbation = &program.perturbations[property.perturbation];
    let num_classes = program.networks[property.networks[0]].num_classes;
    let scan_inputs = if dataset.labeled {
        ScanInputs::Data
    } else {
        ScanInputs::Noise
    };
    // counts[e][class] for the perturbation's e-th ε.
    let mut counts: Vec<BTreeMap<usize, ClassCount>> =
        vec![BTreeMap::new(); perturbation.eps.len()];
    for &net in &property.networks {
        let (graph, inputs) = property_inputs(program, property, net)?;
        let network = &program.networks[net];
        let sweep = Sweep {
            property,
            graph: &graph,
            network: &network.name,
            dataset: &dataset.name,
            input_shape: dataset.data.shape.clone(),
        };
        for class in 0..num_classes {
            let chosen: Vec<usize> = (0..dataset.len())
                .filter(|&i| scan_inputs == ScanInputs::Noise || dataset.data.labels[i] != class)
                .collect();
            let certified = if chosen.is_empty() {
                vec![0; perturbation.eps.len()]
            } else {
                let class_inputs = inputs.select(ndarray::Axis(0), &chosen);
                let labels = vec![class; chosen.len()];
                let first_row = run.report.results.len();
                let certified =
                    certify_sweep(program, &sweep, class_inputs.view(), &labels, options, run)?;
                for row in &mut run.report.results[first_row..] {
                    row.property = if property.networks.len() > 1 {
                        format!("{}[{}, class {class}]", property.name, network.name)
                    } else {
                        format!("{}[class {class}]", property.name)
                    };
                    row.class = Some(class);
                }
                certified
            };
            for (e, &c) in certified.iter().enumerate() {
                let count = counts[e]
                    .entry(class)
                    .or_insert(ClassCount { n: 0, certified: 0 });
                count.n += chosen.len();
                count.certified += c;
            }
        }
    }
    let names: Vec<String> = property
        .networks
        .iter()
        .map(|&n| program.networks[n].name.clone())
        .collect();
    for (eps, classwise) in perturbation.eps.iter().zip(counts) {
        let (eps_label, eps_max) = eps_text(eps);
        let scan = ClasswiseScan::new(
            &property.name,
            names.clone(),
            &dataset.name,
            scan_inputs,
            eps_max,
            &eps_label,
            property.options.xi,
            classwise,
        )
        .map_err(|e| {
            Diagnostic::error("E0503", format!("population bound: {e}"))
                .with_primary(property.span, "in this property")
        })?;
        run.report.scans.push(scan);
    }
    Ok(())
}
