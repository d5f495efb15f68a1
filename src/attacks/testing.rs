//! Test support: a dense ReLU MLP [`Classifier`] with a hand-written forward and backward pass.
//! Used by the attack tests and benchmarks; the real networks implement `Classifier` through the IR.

use ndarray::{Array1, Array2, ArrayView2, Axis};

use super::{Classifier, SplitMix64};

/// `x → W₁x + b₁ → ReLU → … → W_L x + b_L` (no ReLU after the last layer).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// `(W [out, in], b [out])` per layer.
    layers: Vec<(Array2<f64>, Array1<f64>)>,
}

impl Mlp {
    /// `None` when the layers are empty or their shapes do not chain.
    pub fn new(layers: Vec<(Array2<f64>, Array1<f64>)>) -> Option<Mlp> {
        let chains = layers.windows(2).all(|w| w[0].0.nrows() == w[1].0.ncols());
        let biases_fit = layers.iter().all(|(w, b)| w.nrows() == b.len());
        (!layers.is_empty() && chains && biases_fit).then_some(Mlp { layers })
    }

    /// A linear classifier `W x + b`.
    pub fn linear(w: Array2<f64>, b: Array1<f64>) -> Option<Mlp> {
        Mlp::new(vec![(w, b)])
    }

    /// Seeded He-style random weights for layer widths `sizes` (input first, classes last).
    pub fn random(sizes: &[usize], seed: u64) -> Option<Mlp> {
        let mut rng = SplitMix64::new(seed);
        let layers = sizes
            .windows(2)
            .map(|w| {
                let scale = (6.0 / w[0] as f64).sqrt();
                let weights = Array2::from_shape_fn((w[1], w[0]), |_| rng.uniform(-scale, scale));
                let bias = Array1::from_shape_fn(w[1], |_| rng.uniform(-0.1, 0.1));
                (weights, bias)
            })
            .collect();
        Mlp::new(layers)
    }

    /// Pre-activations of every layer for a batch.
    fn forward(&self, inputs: ArrayView2<f64>) -> Vec<Array2<f64>> {
        let mut pre = Vec::with_capacity(self.layers.len());
        let mut act = inputs.to_owned();
        for (l, (w, b)) in self.layers.iter().enumerate() {
            let z = act.dot(&w.t()) + b;
            if l + 1 < self.layers.len() {
                act = z.mapv(|v| v.max(0.0));
            }
            pre.push(z);
        }
        pre
    }
}

impl Mlp {
    /// The VJP through the layers, given the pre-activations of the forward pass.
    fn backward(&self, pre: &[Array2<f64>], grad_logits: ArrayView2<f64>) -> Array2<f64> {
        let mut g = grad_logits.to_owned();
        for l in (0..self.layers.len()).rev() {
            if l + 1 < self.layers.len() {
                // ReLU derivative at the pre-activation (0 at 0).
                g.zip_mut_with(&pre[l], |gi, &z| {
                    if z <= 0.0 {
                        *gi = 0.0
                    }
                });
            }
            g = g.dot(&self.layers[l].0);
        }
        g
    }
}

impl Classifier for Mlp {
    fn input_dim(&self) -> usize {
        self.layers[0].0.ncols()
    }

    fn num_classes(&self) -> usize {
        self.layers[self.layers.len() - 1].0.nrows()
    }

    fn logits(&self, inputs: ArrayView2<f64>) -> Array2<f64> {
        self.forward(inputs)
            .pop()
            .unwrap_or_else(|| Array2::zeros((0, 0)))
    }

    fn input_gradient(&self, inputs: ArrayView2<f64>, grad_logits: ArrayView2<f64>) -> Array2<f64> {
        self.backward(&self.forward(inputs), grad_logits)
    }

    /// One forward pass serves both the logits and the VJP.
    fn logits_and_input_gradient(
        &self,
        inputs: ArrayView2<f64>,
        grad_of: &mut dyn FnMut(&Array2<f64>) -> Array2<f64>,
    ) -> (Array2<f64>, Array2<f64>) {
        let pre = self.forward(inputs);
        let logits = pre[pre.len() - 1].clone();
        let grad_logits = grad_of(&logits);
        let gradient = self.backward(&pre, grad_logits.view());
        (logits, gradient)
    }
}

/// Rows of `inputs` labelled by the classifier's own clean prediction (so clean accuracy is 100%
/// up to ties), convenient for attack tests.
pub fn self_labels(classifier: &impl Classifier, inputs: ArrayView2<f64>) -> Vec<usize> {
    classifier
        .logits(inputs)
        .axis_iter(Axis(0))
        .map(super::losses::argmax)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn vjp_matches_finite_differences() {
        let mlp = Mlp::random(&[5, 7, 6, 3], 3).unwrap();
        let mut rng = SplitMix64::new(9);
        let x = Array2::from_shape_fn((4, 5), |_| rng.uniform(-1.0, 1.0));
        let gl = Array2::from_shape_fn((4, 3), |_| rng.uniform(-1.0, 1.0));
        let g = mlp.input_gradient(x.view(), gl.view());
        let objective = |x: &Array2<f64>| (mlp.logits(x.view()) * &gl).sum();
        let h = 1e-6;
        for i in 0..4 {
            for k in 0..5 {
                let mut xp = x.clone();
                xp[[i, k]] += h;
                let mut xm = x.clone();
                xm[[i, k]] -= h;
                let fd = (objective(&xp) - objective(&xm)) / (2.0 * h);
                assert!(
                    (fd - g[[i, k]]).abs() < 1e-6,
                    "({i},{k}): fd {fd} vs {}",
                    g[[i, k]]
                );
            }
        }
    }

    #[test]
    fn fused_step_matches_separate_queries() {
        let mlp = Mlp::random(&[4, 6, 3], 5).unwrap();
        let x = Array2::from_shape_fn((3, 4), |(i, k)| (i as f64 - k as f64) / 3.0);
        let grad_of = |z: &Array2<f64>| z.mapv(|v| v * v);
        let (logits, g) = mlp.logits_and_input_gradient(x.view(), &mut |z| grad_of(z));
        let separate = mlp.logits(x.view());
        assert_eq!(logits, separate);
        assert_eq!(g, mlp.input_gradient(x.view(), grad_of(&separate).view()));
    }

    #[test]
    fn forward_matches_hand_computation() {
        let mlp = Mlp::new(vec![
            (array![[1.0, -1.0], [2.0, 0.5]], array![0.0, -1.0]),
            (array![[1.0, 1.0]], array![0.5]),
        ])
        .unwrap();
        // h = relu([1 - 2, 2 + 1 - 1]) = [0, 2]; out = 0 + 2 + 0.5.
        let out = mlp.logits(array![[1.0, 2.0]].view());
        assert_eq!(out, array![[2.5]]);
    }

    #[test]
    fn rejects_layers_that_do_not_chain() {
        assert!(Mlp::new(vec![]).is_none());
        assert!(Mlp::new(vec![
            (Array2::zeros((3, 2)), Array1::zeros(3)),
            (Array2::zeros((2, 4)), Array1::zeros(2)),
        ])
        .is_none());
        assert!(Mlp::linear(Array2::zeros((3, 2)), Array1::zeros(2)).is_none());
    }
}
