//! Per-sample attack losses on one logit row, each with its gradient wrt the logits.
//! Every attack *minimises* its loss.

use ndarray::{Array1, ArrayView1};

/// Which loss an attack minimises for one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// C&W margin `max(z_y − max_{j≠y} z_j, −κ)`.
    Margin { label: usize, confidence: f64 },
    /// Targeted margin `max(z_y − z_t, −κ)`.
    TargetMargin {
        label: usize,
        target: usize,
        confidence: f64,
    },
    /// Negated cross-entropy of the true label (minimising it maximises the cross-entropy).
    NegCrossEntropy { label: usize },
    /// Cross-entropy towards a target class.
    TargetCrossEntropy { target: usize },
    /// Cosine similarity with the sample's clean logits.
    Cosine,
}

/// Loss value and gradient for logits `z`; `clean` is the sample's clean logit row (used by `Cosine`).
/// Non-finite logits give a zero gradient, so a bad network cannot push δ to NaN.
pub fn loss_and_grad(loss: Loss, z: ArrayView1<f64>, clean: ArrayView1<f64>) -> (f64, Array1<f64>) {
    let k = z.len();
    let mut grad = Array1::zeros(k);
    if z.iter().any(|v| !v.is_finite()) {
        return (f64::NAN, grad);
    }
    let value = match loss {
        Loss::Margin { label, confidence } => {
            let (other, _) = max_other(z, label);
            let m = z[label] - z[other];
            if m > -confidence {
                grad[label] = 1.0;
                grad[other] = -1.0;
            }
            m.max(-confidence)
        }
        Loss::TargetMargin {
            label,
            target,
            confidence,
        } => {
            let m = z[label] - z[target];
            if m > -confidence {
                grad[label] = 1.0;
                grad[target] = -1.0;
            }
            m.max(-confidence)
        }
        Loss::NegCrossEntropy { label } => {
            let (lse, p) = softmax(z);
            grad.assign(&p);
            grad[label] -= 1.0;
            grad.mapv_inplace(|g| -g);
            -(lse - z[label])
        }
        Loss::TargetCrossEntropy { target } => {
            let (lse, p) = softmax(z);
            grad.assign(&p);
            grad[target] -= 1.0;
            lse - z[target]
        }
        Loss::Cosine => {
            let nz = z.dot(&z).sqrt();
            let nc = clean.dot(&clean).sqrt();
            if nz == 0.0 || nc == 0.0 || !nc.is_finite() {
                return (0.0, grad);
            }
            let cos = z.dot(&clean) / (nz * nc);
            for j in 0..k {
                grad[j] = clean[j] / (nz * nc) - cos * z[j] / (nz * nz);
            }
            cos
        }
    };
    (value, grad)
}

/// The class j ≠ `label` with the largest logit (lowest index on ties) and its logit.
pub fn max_other(z: ArrayView1<f64>, label: usize) -> (usize, f64) {
    let mut best = (usize::MAX, f64::NEG_INFINITY);
    for (j, &v) in z.iter().enumerate() {
        if j != label && (best.0 == usize::MAX || v > best.1) {
            best = (j, v);
        }
    }
    best
}

/// Whether logits `z` classify as `label`: strictly above every other class (a tie is not correct).
pub fn is_correct(z: ArrayView1<f64>, label: usize) -> bool {
    label < z.len()
        && z.iter()
            .enumerate()
            .all(|(j, &v)| j == label || z[label] > v)
}

/// The class with the largest logit (lowest index on ties; NaN never wins).
pub fn argmax(z: ArrayView1<f64>) -> usize {
    let mut best = 0;
    for (j, &v) in z.iter().enumerate() {
        if v > z[best] || z[best].is_nan() {
            best = j;
        }
    }
    best
}

/// −1, 0 or 1; 0 for NaN.
pub fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

fn softmax(z: ArrayView1<f64>) -> (f64, Array1<f64>) {
    let m = z.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
    let e = z.mapv(|v| (v - m).exp());
    let s = e.sum();
    (m + s.ln(), e / s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn check_fd(loss: Loss, z: Array1<f64>, clean: Array1<f64>) {
        let (_, g) = loss_and_grad(loss, z.view(), clean.view());
        let h = 1e-6;
        for j in 0..z.len() {
            let mut zp = z.clone();
            zp[j] += h;
            let mut zm = z.clone();
            zm[j] -= h;
            let fd = (loss_and_grad(loss, zp.view(), clean.view()).0
                - loss_and_grad(loss, zm.view(), clean.view()).0)
                / (2.0 * h);
            assert!(
                (fd - g[j]).abs() < 1e-5,
                "{loss:?} coord {j}: fd {fd} vs {}",
                g[j]
            );
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let z = array![0.3, -1.2, 2.0, 0.7];
        let c = array![1.0, 0.5, -0.25, 0.1];
        check_fd(
            Loss::Margin {
                label: 0,
                confidence: 10.0,
            },
            z.clone(),
            c.clone(),
        );
        check_fd(
            Loss::TargetMargin {
                label: 1,
                target: 3,
                confidence: 10.0,
            },
            z.clone(),
            c.clone(),
        );
        check_fd(Loss::NegCrossEntropy { label: 2 }, z.clone(), c.clone());
        check_fd(Loss::TargetCrossEntropy { target: 1 }, z.clone(), c.clone());
        check_fd(Loss::Cosine, z, c);
    }

    #[test]
    fn margin_is_clamped_at_confidence() {
        let z = array![0.0, 5.0, 1.0];
        let (v, g) = loss_and_grad(
            Loss::Margin {
                label: 0,
                confidence: 1.0,
            },
            z.view(),
            z.view(),
        );
        assert_eq!(v, -1.0);
        assert!(g.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn ties_and_nan_are_not_correct() {
        assert!(is_correct(array![2.0, 1.0].view(), 0));
        assert!(!is_correct(array![1.0, 1.0].view(), 0));
        assert!(!is_correct(array![f64::NAN, 1.0].view(), 0));
        assert!(!is_correct(array![2.0, f64::NAN].view(), 0));
        assert!(!is_correct(array![2.0, 1.0].view(), 5));
        assert_eq!(argmax(array![1.0, 3.0, 3.0].view()), 1);
        assert_eq!(argmax(array![f64::NAN, 3.0, 0.0].view()), 1);
    }

    #[test]
    fn non_finite_logits_give_zero_gradient() {
        let z = array![f64::INFINITY, 1.0];
        let (_, g) = loss_and_grad(Loss::NegCrossEntropy { label: 0 }, z.view(), z.view());
        assert!(g.iter().all(|&x| x == 0.0));
    }
}
