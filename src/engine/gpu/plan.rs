//! Device memory planning: peak floats per sample and per functional row, and the chunk sizes
//! that keep a batch within the device's budget.

use crate::engine::cpu::GraphInfo;
use crate::ir::{Graph, Op};

/// Per-row vectors alive beside the functionals (bias, magnitude, sign, value, lower, index).
const ROW_VECTORS: usize = 8;

/// Floats per sample held during the intermediate-bound pass: both ends of every live node's
/// interval, plus the temporaries of one IBP step.
pub(crate) fn floats_per_sample(graph: &Graph, info: &GraphInfo) -> usize {
    let live: usize = graph
        .nodes
        .iter()
        .zip(&info.live)
        .filter(|(_, &l)| l)
        .map(|(n, _)| n.numel())
        .sum();
    let widest = graph.nodes.iter().map(|n| n.numel()).max().unwrap_or(1);
    2 * live + 9 * widest
}

/// Most floats per functional row alive at once while back-substituting from `seed` to the
/// input, found by replaying the engine's allocation order.
pub fn floats_per_row(graph: &Graph, seed: usize) -> usize {
    let mut pending = vec![0usize; graph.nodes.len()];
    pending[seed] = graph.nodes[seed].numel();
    let mut current = pending[seed];
    let mut peak = current;
    // Functionals arriving at a node that already has some are added in, then freed.
    let settle = |pending: &mut [usize], current: &mut usize, input: usize, size: usize| {
        if pending[input] == 0 {
            pending[input] = size;
        } else {
            *current -= size;
        }
    };
    for id in (1..=seed).rev() {
        let size = std::mem::take(&mut pending[id]);
        if size == 0 {
            continue;
        }
        let node = &graph.nodes[id];
        match node.op {
            Op::Relu | Op::Reshape => {
                settle(&mut pending, &mut current, node.inputs[0].index(), size)
            }
            Op::Add => {
                current += size;
                peak = peak.max(current);
                settle(&mut pending, &mut current, node.inputs[0].index(), size);
                settle(&mut pending, &mut current, node.inputs[1].index(), size);
            }
            _ => {
                let input = node.inputs[0].index();
                let in_size = graph.nodes[input].numel();
                current += in_size;
                peak = peak.max(current);
                current -= size;
                settle(&mut pending, &mut current, input, in_size);
            }
        }
    }
    peak + ROW_VECTORS
}

/// How many samples and functional rows one launch batch takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunks {
    pub samples: usize,
    pub rows: usize,
}

/// Splits `budget` bytes: at most half for the samples' intervals, the rest for functionals.
pub(crate) fn chunks(graph: &Graph, info: &GraphInfo, n: usize, budget: usize) -> Chunks {
    let per_sample = 8 * floats_per_sample(graph, info);
    let samples = (budget / 2 / per_sample).clamp(1, n.max(1));
    let per_row = 8
        * (0..graph.nodes.len())
            .filter(|&id| info.relu_input[id] || id == graph.output.index())
            .map(|id| floats_per_row(graph, id))
            .max()
            .unwrap_or(1);
    let left = budget.saturating_sub(samples * per_sample);
    Chunks {
        samples,
        rows: (left / per_row).max(2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::build::{random_mlp, random_resnet, Rng};

    /// An MLP 6 → 9 → 7 → 4 seeded at the output: the widest moment holds the 7-wide
    /// functionals and their 9-wide pullback at once.
    #[test]
    fn floats_per_row_replays_the_allocation_order() {
        let mut rng = Rng::new(1);
        let mlp = random_mlp(&mut rng, 6, &[9, 7], 4);
        let out = mlp.output.index();
        assert_eq!(floats_per_row(&mlp, out), 7 + 9 + ROW_VECTORS);
        // A residual block needs the copy of the functionals at the add on top.
        let resnet = random_resnet(&mut rng, [3, 8, 8], 4, 3);
        let add = resnet
            .nodes
            .iter()
            .find(|n| matches!(n.op, Op::Add))
            .unwrap()
            .numel();
        assert!(floats_per_row(&resnet, resnet.output.index()) >= 2 * add + ROW_VECTORS);
    }

    /// Chunks keep the planned bytes within the budget and never drop to zero.
    #[test]
    fn chunks_fit_the_budget() {
        let mut rng = Rng::new(2);
        let g = random_resnet(&mut rng, [3, 8, 8], 4, 3);
        let info = GraphInfo::new(&g);
        for budget in [10_000usize, 1 << 20, 1 << 30] {
            let c = chunks(&g, &info, 1000, budget);
            assert!(c.samples >= 1 && c.samples <= 1000 && c.rows >= 2);
            let per_row = 8
                * (0..g.nodes.len())
                    .filter(|&id| info.relu_input[id] || id == g.output.index())
                    .map(|id| floats_per_row(&g, id))
                    .max()
                    .unwrap();
            if c.samples > 1 && c.rows > 2 {
                let used = c.samples * 8 * floats_per_sample(&g, &info) + c.rows * per_row;
                assert!(used <= budget, "{used} > {budget}");
            }
        }
    }
}
