//! Intermediate-bound caching: reuse across properties and methods in one run, on-disk reuse
//! across runs, and detection of corrupt or stale entries.

use ndarray::Array2;
use std::path::PathBuf;
use upcc::engine::cpu::{margin_bounds, margin_bounds_cached};
use upcc::engine::RowPrecision::{self, F64};
use upcc::engine::{BoundCache, BoundMethod, DeltaBox};
use upcc::ir::build::{random_cnn, Rng};
use upcc::ir::Op;

fn setup() -> (upcc::ir::Graph, Array2<f64>, DeltaBox) {
    let mut rng = Rng::new(42);
    let graph = random_cnn(&mut rng, [2, 7, 7], 3, 4);
    let x = Array2::from_shape_fn((3, 98), |_| rng.uniform());
    (graph, x, DeltaBox::linf(98, 0.03))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("upcc-cache-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn properties_and_methods_share_intermediate_bounds() {
    let (graph, x, delta) = setup();
    let cache = BoundCache::in_memory();
    let crown = BoundMethod::Crown;
    let first =
        margin_bounds_cached(&graph, x.view(), &[0, 1, 2], &delta, &crown, (&cache, F64)).unwrap();
    assert_eq!(cache.stats().computed, 3);
    assert_eq!(
        first,
        margin_bounds(&graph, x.view(), &[0, 1, 2], &delta, &crown).unwrap()
    );
    // Another property (other labels) and α-CROWN reuse the same intermediate bounds.
    let other =
        margin_bounds_cached(&graph, x.view(), &[3, 3, 3], &delta, &crown, (&cache, F64)).unwrap();
    assert_eq!(
        other,
        margin_bounds(&graph, x.view(), &[3, 3, 3], &delta, &crown).unwrap()
    );
    let alpha = BoundMethod::AlphaCrown {
        iterations: 3,
        learning_rate: 0.1,
    };
    margin_bounds_cached(&graph, x.view(), &[0, 1, 2], &delta, &alpha, (&cache, F64)).unwrap();
    let stats = cache.stats();
    assert_eq!((stats.computed, stats.memory_hits), (3, 6));
    // IBP and a different box are different entries.
    margin_bounds_cached(
        &graph,
        x.view(),
        &[0, 1, 2],
        &delta,
        &BoundMethod::Ibp,
        (&cache, F64),
    )
    .unwrap();
    margin_bounds_cached(
        &graph,
        x.view(),
        &[0, 1, 2],
        &DeltaBox::linf(98, 0.02),
        &crown,
        (&cache, F64),
    )
    .unwrap();
    assert_eq!(cache.stats().computed, 9);
    // So are bounds from f32 rows: never served for f64 ones, nor the other way round.
    let f32_rows = (&cache, RowPrecision::F32);
    margin_bounds_cached(&graph, x.view(), &[0, 1, 2], &delta, &crown, f32_rows).unwrap();
    assert_eq!(cache.stats().computed, 12);
    margin_bounds_cached(&graph, x.view(), &[0, 1, 2], &delta, &crown, f32_rows).unwrap();
    assert_eq!(cache.stats().computed, 12);
}

#[test]
fn disk_cache_is_reused_and_corruption_is_rebuilt() {
    let (graph, x, delta) = setup();
    let dir = temp_dir("disk");
    let labels = [0, 1, 2];
    let m = BoundMethod::Crown;
    let fresh = margin_bounds(&graph, x.view(), &labels, &delta, &m).unwrap();

    let run1 = BoundCache::on_disk(&dir);
    assert_eq!(
        margin_bounds_cached(&graph, x.view(), &labels, &delta, &m, (&run1, F64)).unwrap(),
        fresh
    );
    assert_eq!(run1.stats().computed, 3);

    let run2 = BoundCache::on_disk(&dir);
    assert_eq!(
        margin_bounds_cached(&graph, x.view(), &labels, &delta, &m, (&run2, F64)).unwrap(),
        fresh
    );
    assert_eq!((run2.stats().disk_hits, run2.stats().computed), (3, 0));

    // Corrupt one entry (a flipped byte in a bound) and truncate another.
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    let mut bytes = std::fs::read(&files[0]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&files[0], bytes).unwrap();
    let bytes = std::fs::read(&files[1]).unwrap();
    std::fs::write(&files[1], &bytes[..bytes.len() - 9]).unwrap();

    let run3 = BoundCache::on_disk(&dir);
    assert_eq!(
        margin_bounds_cached(&graph, x.view(), &labels, &delta, &m, (&run3, F64)).unwrap(),
        fresh
    );
    let s = run3.stats();
    assert_eq!((s.disk_hits, s.rejected, s.computed), (1, 2, 2));

    // Rebuilt entries are valid again.
    let run4 = BoundCache::on_disk(&dir);
    margin_bounds_cached(&graph, x.view(), &labels, &delta, &m, (&run4, F64)).unwrap();
    assert_eq!(run4.stats().disk_hits, 3);

    // A changed network never hits the old entries.
    let mut changed = graph.clone();
    if let Op::Linear { bias, .. } = &mut changed.nodes.last_mut().unwrap().op {
        bias[0] += 1e-12;
    }
    let run5 = BoundCache::on_disk(&dir);
    margin_bounds_cached(&changed, x.view(), &labels, &delta, &m, (&run5, F64)).unwrap();
    assert_eq!((run5.stats().disk_hits, run5.stats().computed), (0, 3));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn disabled_cache_computes_every_time() {
    let (graph, x, delta) = setup();
    let cache = BoundCache::disabled();
    for _ in 0..2 {
        margin_bounds_cached(
            &graph,
            x.view(),
            &[0, 0, 0],
            &delta,
            &BoundMethod::Crown,
            (&cache, F64),
        )
        .unwrap();
    }
    assert_eq!(cache.stats(), Default::default());
}
