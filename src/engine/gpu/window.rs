//! Local-window back-substitution on the device: CROWN rows seeded at the neurons of one spatial
//! position of a conv layer only touch that position's receptive field at every earlier layer,
//! so their functionals are stored and pulled back over that window alone (as the CPU engine's
//! window path does). Applies where everything below the seed is a chain of convolutions, ReLUs
//! and per-channel affine maps over `[C, H, W]` maps.
//!
//! A windowed launch's index buffer starts with the geometry table: per node `(y0, x0, hh, ww)`
//! of its window (zeros off the chain), then the number of sample columns of the bound buffers,
//! then the row → sample and row → neuron lists.

use crate::engine::linop::conv_window;
use crate::ir::{Graph, Op};

/// Nodes whose back-substitution down to the input stays on a chain of windowable ops.
pub fn chain_nodes(graph: &Graph) -> Vec<bool> {
    let mut ok = vec![false; graph.nodes.len()];
    for (k, node) in graph.nodes.iter().enumerate() {
        let spatial = node.shape.len() == 3;
        let input_ok = node.inputs.len() == 1 && ok[node.inputs[0].index()];
        ok[k] = spatial
            && match &node.op {
                Op::Input => true,
                Op::Relu | Op::Conv2d { .. } => input_ok,
                Op::ChannelAffine { scale, .. } => input_ok && scale.len() == node.shape[0],
                _ => false,
            };
    }
    ok
}

/// Whether CROWN rows of node `id` take the window path: a conv on a windowable chain.
pub fn windowed_seed(graph: &Graph, chain: &[bool], id: usize) -> bool {
    chain[id] && matches!(graph.nodes[id].op, Op::Conv2d { .. })
}

/// Entries of the geometry table before the sample-column count.
pub fn table_len(graph: &Graph) -> usize {
    4 * graph.nodes.len()
}

/// The geometry table for rows seeded at spatial position `pos` of node `seed`: each chain node's
/// window, from the seed's single position down to the input's receptive field.
pub fn geometry(graph: &Graph, seed: usize, pos: usize) -> Vec<i64> {
    let mut table = vec![0i64; table_len(graph)];
    let w = graph.nodes[seed].shape[2];
    let mut rect = [(pos / w) as i64, (pos % w) as i64, 1, 1];
    let mut k = seed;
    loop {
        table[4 * k..4 * k + 4].copy_from_slice(&rect);
        let node = &graph.nodes[k];
        if let Op::Input = node.op {
            return table;
        }
        if let Op::Conv2d { .. } = node.op {
            let g = conv_window(graph, node);
            let [y0, x0, hh, ww] = rect;
            let (sh, sw, ph, pw) = (g.sh as i64, g.sw as i64, g.ph as i64, g.pw as i64);
            let top = (y0 * sh - ph).max(0);
            let bottom = ((y0 + hh - 1) * sh - ph + g.kh as i64).min(g.h as i64);
            let left = (x0 * sw - pw).max(0);
            let right = ((x0 + ww - 1) * sw - pw + g.kw as i64).min(g.w as i64);
            rect = [top, left, bottom - top, right - left];
        }
        k = node.inputs[0].index();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::build::{conv_small, random_cnn, random_resnet, Rng};

    /// Each node's window is exactly the bounding box of the positions the seed can reach,
    /// found here by following every kernel tap by brute force.
    #[test]
    fn windows_are_the_reachable_bounding_boxes() {
        let mut rng = Rng::new(4);
        let g = conv_small(&mut rng);
        let chain = chain_nodes(&g);
        let seed = (0..g.nodes.len())
            .rev()
            .find(|&k| windowed_seed(&g, &chain, k))
            .expect("conv 2 is a windowed seed");
        let w = g.nodes[seed].shape[2];
        for pos in [0, 7, g.nodes[seed].shape[1] * w - 1] {
            let table = geometry(&g, seed, pos);
            let mut reach: Vec<(usize, usize)> = vec![(pos / w, pos % w)];
            let mut k = seed;
            while k != 0 {
                let node = &g.nodes[k];
                let below = node.inputs[0].index();
                if let Op::Conv2d { .. } = node.op {
                    let win = conv_window(&g, node);
                    let mut next = Vec::new();
                    for &(oy, ox) in &reach {
                        for ky in 0..win.kh {
                            for kx in 0..win.kw {
                                if let Some(p) = win.tap(oy, ox, ky, kx) {
                                    next.push(p);
                                }
                            }
                        }
                    }
                    reach = next;
                }
                let y0 = reach.iter().map(|p| p.0).min().unwrap() as i64;
                let y1 = reach.iter().map(|p| p.0).max().unwrap() as i64 + 1;
                let x0 = reach.iter().map(|p| p.1).min().unwrap() as i64;
                let x1 = reach.iter().map(|p| p.1).max().unwrap() as i64 + 1;
                assert_eq!(
                    &table[4 * below..4 * below + 4],
                    &[y0, x0, y1 - y0, x1 - x0],
                    "node {below} for position {pos}"
                );
                k = below;
            }
        }
    }

    /// Dense layers, additions and pooling end a chain; a conv above an addition is no seed.
    #[test]
    fn chains_stop_at_non_window_ops() {
        let mut rng = Rng::new(5);
        let cnn = random_cnn(&mut rng, [2, 8, 8], 3, 4);
        let chain = chain_nodes(&cnn);
        for (k, node) in cnn.nodes.iter().enumerate() {
            if matches!(
                node.op,
                Op::AvgPool { .. } | Op::Linear { .. } | Op::Reshape
            ) {
                assert!(!chain[k], "{}", node.name);
            }
        }
        let resnet = random_resnet(&mut rng, [3, 8, 8], 4, 3);
        let chain = chain_nodes(&resnet);
        let add = resnet
            .nodes
            .iter()
            .position(|n| matches!(n.op, Op::Add))
            .unwrap();
        assert!(!chain[add]);
        assert!((add..resnet.nodes.len()).all(|k| !windowed_seed(&resnet, &chain, k)));
    }
}
