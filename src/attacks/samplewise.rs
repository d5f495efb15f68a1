//! Sample-wise PGD: every sample has its own δ in the box.

use ndarray::{Array1, Array2};

use super::losses::{is_correct, loss_and_grad, sign, Loss};
use super::{correct_mask, AttackError, Classifier, Problem, SplitMix64};

/// A δ that fooled one sample, with the logits it produced.
pub(crate) type Fooling = Option<(Array1<f64>, Array1<f64>)>;

/// Sign-gradient descent of `loss_for(i)` with one δ per row in `rows` (`starts` is `[rows, d]`),
/// for `steps` steps. Records in `fooling[i]` the first evaluated δ that misclassifies sample i
/// (rows already fooled stop moving; the run stops once all are). Returns the last δs and their
/// logits.
pub(crate) fn descend_each<C: Classifier + ?Sized>(
    p: &Problem<C>,
    rows: &[usize],
    starts: Array2<f64>,
    steps: usize,
    loss_for: impl Fn(usize) -> Loss,
    fooling: &mut [Fooling],
) -> Result<(Array2<f64>, Array2<f64>), AttackError> {
    let d = p.lo.len();
    let alpha = p.alpha(steps);
    let mut deltas = starts;
    let record = |deltas: &Array2<f64>, logits: &Array2<f64>, fooling: &mut [Fooling]| {
        for (r, &i) in rows.iter().enumerate() {
            if fooling[i].is_none() && !is_correct(logits.row(r), p.labels[i]) {
                fooling[i] = Some((deltas.row(r).to_owned(), logits.row(r).to_owned()));
            }
        }
    };
    for _ in 0..steps {
        let x = p.perturbed_rows(rows, &deltas);
        let (_, g) = p.logits_and_gradient(&x, |logits| {
            record(&deltas, logits, fooling);
            let mut grad_logits = Array2::zeros(logits.raw_dim());
            for (r, &i) in rows.iter().enumerate() {
                if fooling[i].is_none() {
                    let (_, g) = loss_and_grad(loss_for(i), logits.row(r), logits.row(r));
                    grad_logits.row_mut(r).assign(&g);
                }
            }
            grad_logits
        })?;
        if rows.iter().all(|&i| fooling[i].is_some()) {
            break;
        }
        for r in 0..rows.len() {
            for k in 0..d {
                deltas[[r, k]] = p.clamp(k, deltas[[r, k]] - alpha[k] * sign(g[[r, k]]));
            }
        }
    }
    let logits = p.logits(&p.perturbed_rows(rows, &deltas))?;
    record(&deltas, &logits, fooling);
    Ok((deltas, logits))
}

/// How many targeted runs sample-wise PGD makes per restart, towards each sample's most promising
/// other classes.
const TARGETED_RUNS: usize = 3;

/// Per restart, on the samples not yet fooled: an untargeted margin run, then targeted margin runs
/// towards each sample's other classes ranked by the linearised worst-case margin at the start
/// (`m_j + min over the box of ∇m_j·(δ − δ₀)`), best first. On a linear model that estimate is
/// exact and the first targeted run ends at the worst corner (given the steps to cross the box, as
/// the default step size allows), so the attack finds the true worst case. Restart 0 starts at δ = 0 clamped into the box, later ones at seeded random points.
/// Returns each sample's δ (the fooling one, else δ = 0 clamped) and correctness re-evaluated there.
pub(crate) fn samplewise_pgd<C: Classifier + ?Sized>(
    p: &Problem<C>,
) -> Result<(Array2<f64>, Vec<bool>), AttackError> {
    let (n, d) = (p.n(), p.lo.len());
    let steps = p.options.steps;
    let confidence = p.options.confidence;
    let mut rng = SplitMix64::new(p.options.seed);
    let mut fooling: Vec<Fooling> = vec![None; n];
    let live =
        |fooling: &[Fooling]| -> Vec<usize> { (0..n).filter(|&i| fooling[i].is_none()).collect() };
    for r in 0..p.options.restarts {
        let start = if r == 0 {
            p.zero_start()
        } else {
            p.random_start(&mut rng)
        };
        let starts = |m: usize| Array2::from_shape_fn((m, d), |(_, k)| start[k]);
        let rows = live(&fooling);
        if rows.is_empty() {
            break;
        }
        let untargeted = |i: usize| Loss::Margin {
            label: p.labels[i],
            confidence,
        };
        descend_each(
            p,
            &rows,
            starts(rows.len()),
            steps,
            untargeted,
            &mut fooling,
        )?;
        let rows = live(&fooling);
        if rows.is_empty() {
            break;
        }
        let ranked = rank_targets(p, &rows, &start)?;
        for targets in ranked.iter().take(TARGETED_RUNS) {
            let rows = live(&fooling);
            if rows.is_empty() {
                break;
            }
            let targeted = |i: usize| Loss::TargetMargin {
                label: p.labels[i],
                target: targets[i],
                confidence,
            };
            descend_each(p, &rows, starts(rows.len()), steps, targeted, &mut fooling)?;
        }
    }
    let zero = p.zero_start();
    let deltas = Array2::from_shape_fn((n, d), |(i, k)| match &fooling[i] {
        Some((delta, _)) => delta[k],
        None => zero[k],
    });
    let all: Vec<usize> = (0..n).collect();
    let mask = correct_mask(&p.logits(&p.perturbed_rows(&all, &deltas))?, p.labels);
    Ok((deltas, mask))
}

/// Ranks each sample's other classes by the linearised worst-case margin over the box around
/// `start`, lowest first. Entry `[r][i]` is sample i's r-th target (r < K − 1); samples outside
/// `rows` get their own label, never used since they are already fooled. Costs a forward and a
/// VJP per class.
fn rank_targets<C: Classifier + ?Sized>(
    p: &Problem<C>,
    rows: &[usize],
    start: &Array1<f64>,
) -> Result<Vec<Vec<usize>>, AttackError> {
    let (classes, d) = (p.num_classes(), start.len());
    let deltas = Array2::from_shape_fn((rows.len(), d), |(_, k)| start[k]);
    let x = p.perturbed_rows(rows, &deltas);
    let mut estimate = Array2::from_elem((rows.len(), classes), f64::INFINITY);
    for j in 0..classes {
        // Rows of ∇(z_y − z_j); zero where j is the label.
        let grad_logits = Array2::from_shape_fn((rows.len(), classes), |(r, c)| {
            let y = p.labels[rows[r]];
            match (y != j, c) {
                (true, c) if c == y => 1.0,
                (true, c) if c == j => -1.0,
                _ => 0.0,
            }
        });
        let (logits, g) = p.logits_and_gradient(&x, |_| grad_logits.clone())?;
        for (r, &i) in rows.iter().enumerate() {
            let y = p.labels[i];
            if y == j {
                continue;
            }
            let drop: f64 = (0..d)
                .map(|k| {
                    let gk = g[[r, k]];
                    (gk * (p.lo[k] - start[k])).min(gk * (p.hi[k] - start[k]))
                })
                .sum();
            estimate[[r, j]] = logits[[r, y]] - logits[[r, j]] + drop;
        }
    }
    let mut ranked = vec![p.labels.to_vec(); classes - 1];
    for (r, &i) in rows.iter().enumerate() {
        let mut others: Vec<usize> = (0..classes).filter(|&j| j != p.labels[i]).collect();
        others.sort_by(|&a, &b| estimate[[r, a]].total_cmp(&estimate[[r, b]]));
        for (rank, j) in others.into_iter().enumerate() {
            ranked[rank][i] = j;
        }
    }
    Ok(ranked)
}
