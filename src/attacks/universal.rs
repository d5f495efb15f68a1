//! Attacks on one δ shared by every sample.

use ndarray::{Array1, Array2, Axis};

use super::losses::{argmax, loss_and_grad, max_other, sign, Loss};
use super::samplewise::descend_each;
use super::{correct_mask, AttackError, Classifier, PgdLoss, Problem, SplitMix64};

/// How a descent turns the gradient of the summed loss into a step.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StepRule {
    /// δ ← δ − α ⊙ sign(g).
    Sign,
    /// Adam with learning rate α per coordinate (β₁ = 0.9, β₂ = 0.999).
    Adam,
}

/// The best shared δ seen so far: fewest samples still correct, the earliest on ties.
struct Best {
    delta: Array1<f64>,
    mask: Vec<bool>,
    correct: usize,
}

impl Best {
    fn new(delta: Array1<f64>, mask: Vec<bool>) -> Best {
        let correct = mask.iter().filter(|&&c| c).count();
        Best {
            delta,
            mask,
            correct,
        }
    }

    fn offer(&mut self, delta: &Array1<f64>, mask: Vec<bool>) {
        let correct = mask.iter().filter(|&&c| c).count();
        if correct < self.correct {
            *self = Best::new(delta.clone(), mask);
        }
    }
}

type Outcome = Result<(Array1<f64>, Vec<bool>), AttackError>;

/// Minimises Σᵢ loss(i) over the shared δ for `steps` steps from `start`, offering every evaluated
/// δ (the start and each iterate) to `best`; stops early once `best` fools every sample. `clean`
/// holds the clean logits for `Loss::Cosine`. Returns the last iterate.
fn descend<C: Classifier + ?Sized>(
    p: &Problem<C>,
    start: Array1<f64>,
    steps: usize,
    rule: StepRule,
    loss_for: impl Fn(usize) -> Loss,
    clean: Option<&Array2<f64>>,
    best: &mut Best,
) -> Result<Array1<f64>, AttackError> {
    let (n, d) = (p.n(), p.lo.len());
    let alpha = p.alpha(steps);
    let mut delta = start;
    let mut m = Array1::<f64>::zeros(d);
    let mut v = Array1::<f64>::zeros(d);
    for t in 1..=steps {
        let x = p.perturbed_shared(&delta);
        let (_, g) = p.logits_and_gradient(&x, |logits| {
            best.offer(&delta, correct_mask(logits, p.labels));
            let mut grad_logits = Array2::zeros(logits.raw_dim());
            for i in 0..n {
                let clean_row = clean.map_or(logits.row(i), |c| c.row(i));
                let (_, g) = loss_and_grad(loss_for(i), logits.row(i), clean_row);
                grad_logits.row_mut(i).assign(&g);
            }
            grad_logits
        })?;
        if best.correct == 0 {
            return Ok(delta);
        }
        let g = g.sum_axis(Axis(0));
        match rule {
            StepRule::Sign => {
                for k in 0..d {
                    delta[k] = p.clamp(k, delta[k] - alpha[k] * sign(g[k]));
                }
            }
            StepRule::Adam => {
                let (b1, b2) = (0.9f64, 0.999f64);
                let (c1, c2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
                for k in 0..d {
                    m[k] = b1 * m[k] + (1.0 - b1) * g[k];
                    v[k] = b2 * v[k] + (1.0 - b2) * g[k] * g[k];
                    let denom = (v[k] / c2).sqrt();
                    let step = if denom > 0.0 {
                        (m[k] / c1) / denom
                    } else {
                        0.0
                    };
                    delta[k] = p.clamp(k, delta[k] - alpha[k] * step);
                }
            }
        }
    }
    let logits = p.logits(&p.perturbed_shared(&delta))?;
    best.offer(&delta, correct_mask(&logits, p.labels));
    Ok(delta)
}

/// Offers δ = 0 (clamped into the box) to the best, then runs `restart` once per restart and
/// returns the best δ of all. Restart 0 starts at δ = 0 unless `random_first`; the others start at
/// seeded uniform points.
fn over_restarts<C: Classifier + ?Sized>(
    p: &Problem<C>,
    random_first: bool,
    mut restart: impl FnMut(Array1<f64>, &mut Best) -> Result<(), AttackError>,
) -> Outcome {
    let mut rng = SplitMix64::new(p.options.seed);
    let zero = p.zero_start();
    let mut best = Best::new(
        zero.clone(),
        correct_mask(&p.logits(&p.perturbed_shared(&zero))?, p.labels),
    );
    for r in 0..p.options.restarts {
        let start = if r == 0 && !random_first {
            zero.clone()
        } else {
            p.random_start(&mut rng)
        };
        restart(start, &mut best)?;
    }
    Ok((best.delta, best.mask))
}

fn margin(p: &Problem<impl Classifier + ?Sized>, i: usize) -> Loss {
    Loss::Margin {
        label: p.labels[i],
        confidence: p.options.confidence,
    }
}

/// Plain PGD: sign steps on the summed cross-entropy or margin loss.
pub(crate) fn pgd<C: Classifier + ?Sized>(p: &Problem<C>) -> Outcome {
    let loss_for = |i: usize| match p.options.pgd_loss {
        PgdLoss::CrossEntropy => Loss::NegCrossEntropy { label: p.labels[i] },
        PgdLoss::Margin => margin(p, i),
    };
    over_restarts(p, false, |start, best| {
        descend(
            p,
            start,
            p.options.steps,
            StepRule::Sign,
            loss_for,
            None,
            best,
        )
        .map(|_| ())
    })
}

/// DF-UAP: Adam on the summed C&W margin loss.
pub(crate) fn df_uap<C: Classifier + ?Sized>(p: &Problem<C>) -> Outcome {
    over_restarts(p, false, |start, best| {
        descend(
            p,
            start,
            p.options.steps,
            StepRule::Adam,
            |i| margin(p, i),
            None,
            best,
        )
        .map(|_| ())
    })
}

/// Cos-UAP: Adam on the summed cosine similarity between clean and perturbed logits. δ = 0 is a
/// stationary point of this loss (the cosine is maximal there), so every restart starts at random.
pub(crate) fn cos_uap<C: Classifier + ?Sized>(p: &Problem<C>) -> Outcome {
    let clean = p.logits(&p.inputs.to_owned())?;
    over_restarts(p, true, |start, best| {
        descend(
            p,
            start,
            p.options.steps,
            StepRule::Adam,
            |_| Loss::Cosine,
            Some(&clean),
            best,
        )
        .map(|_| ())
    })
}

/// Adv-UAP. Half the steps run sample-wise PGD to get an adversarial δᵢ and a target class tᵢ
/// (the class it reaches, or the runner-up where it fails) per sample. The universal δ starts from
/// the mean of the δᵢ, moves towards the targets with a targeted cross-entropy for a quarter of the
/// steps, then is refined with the C&W margin loss.
pub(crate) fn adv_uap<C: Classifier + ?Sized>(p: &Problem<C>) -> Outcome {
    let steps = p.options.steps;
    let sample_steps = steps / 2;
    let target_steps = (steps - sample_steps) / 2;
    let refine_steps = steps - sample_steps - target_steps;
    let n = p.n();
    let rows: Vec<usize> = (0..n).collect();
    over_restarts(p, false, |start, best| {
        let starts = Array2::from_shape_fn((n, start.len()), |(_, k)| start[k]);
        let mut fooling = vec![None; n];
        let (last, last_logits) = descend_each(
            p,
            &rows,
            starts,
            sample_steps,
            |i| margin(p, i),
            &mut fooling,
        )?;
        let mut targets = Vec::with_capacity(n);
        let mut sum = Array1::<f64>::zeros(start.len());
        for (i, fooled) in fooling.iter().enumerate() {
            let (delta_i, target) = match fooled {
                Some((delta_i, logits_i)) => (delta_i.view(), argmax(logits_i.view())),
                None => (last.row(i), max_other(last_logits.row(i), p.labels[i]).0),
            };
            sum += &delta_i;
            targets.push(target);
        }
        let mean = if n > 0 { sum / n as f64 } else { sum };
        let aggregated = Array1::from_shape_fn(mean.len(), |k| p.clamp(k, mean[k]));
        let towards = descend(
            p,
            aggregated,
            target_steps,
            StepRule::Adam,
            |i| Loss::TargetCrossEntropy { target: targets[i] },
            None,
            best,
        )?;
        descend(
            p,
            towards,
            refine_steps,
            StepRule::Adam,
            |i| margin(p, i),
            None,
            best,
        )
        .map(|_| ())
    })
}
