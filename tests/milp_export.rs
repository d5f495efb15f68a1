//! `.lp` / `.mps` export: written models read back identical, and are well-formed.

use upcc::engine::{DeltaBox, MarginBounds, SampleBounds};
use upcc::milp::{
    read_lp, read_mps, write_lp, write_mps, Microlp, MilpBackend, MilpError, Model, Sense,
    UniversalMilp, VarKind,
};

use ndarray::{Array1, Array2};

fn tiny_model() -> Model {
    // min x + 2y − 0.5z,  x + y ≥ 1,  x − z ≤ 0.25,  y + z = 1;  x ∈ [−1.5, 3], y, z binary.
    let mut m = Model::new("tiny");
    let x = m.add_var("x".into(), VarKind::Continuous, -1.5, 3.0, 1.0);
    let y = m.add_var("y".into(), VarKind::Binary, 0.0, 1.0, 2.0);
    let z = m.add_var("z".into(), VarKind::Binary, 0.0, 1.0, -0.5);
    m.add_row("c1".into(), vec![(x, 1.0), (y, 1.0)], Sense::Ge, 1.0);
    m.add_row("c2".into(), vec![(x, 1.0), (z, -1.0)], Sense::Le, 0.25);
    m.add_row("c3".into(), vec![(y, 1.0), (z, 1.0)], Sense::Eq, 1.0);
    m
}

/// Variables and row terms sorted by name, so models that differ only in order compare equal.
fn canonical(m: &Model) -> Model {
    let mut c = m.clone();
    let mut order: Vec<usize> = (0..m.vars.len()).collect();
    order.sort_by(|&i, &j| m.vars[i].name.cmp(&m.vars[j].name));
    let mut new_index = vec![0; m.vars.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new;
    }
    c.vars = order.iter().map(|&i| m.vars[i].clone()).collect();
    for r in &mut c.rows {
        for t in &mut r.coeffs {
            t.0 = new_index[t.0];
        }
        r.coeffs.sort_by_key(|t| t.0);
    }
    c.name.clear();
    c
}

fn lowered() -> UniversalMilp {
    let bx = DeltaBox {
        lo: Array1::from(vec![-0.5, -0.25, -1.0]),
        hi: Array1::from(vec![0.5, 0.75, 1.0]),
    };
    let a = |v: Vec<f64>| Array2::from_shape_vec((2, 3), v).unwrap();
    let s = |a: Array2<f64>, b: Vec<f64>| SampleBounds {
        label: 0,
        others: vec![1, 2],
        a,
        b: Array1::from(b),
        samplewise_lower: Array1::zeros(2),
    };
    let bounds = MarginBounds {
        samples: vec![
            s(a(vec![1.0, -0.3, 0.1, 0.2, 0.0, -0.7]), vec![0.4, 0.9]),
            s(a(vec![-0.9, 0.4, 0.2, 1e-3, 0.5, 0.5]), vec![0.3, 0.2]),
            s(a(vec![0.1, 0.1, 0.1, 0.3, -0.3, 0.2]), vec![2.0, 3.0]),
        ],
    };
    UniversalMilp::lower(&bounds, &bx, true).unwrap()
}

#[test]
fn mps_round_trips_exactly() {
    for model in [tiny_model(), lowered().model] {
        let mut buf = Vec::new();
        write_mps(&model, "a comment\nsecond line", &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("* a comment\n* second line\nNAME "));
        assert!(text.ends_with("ENDATA\n"));
        let back = read_mps(&text).unwrap();
        assert_eq!(canonical(&back), canonical(&model));
    }
}

#[test]
fn lp_round_trips_exactly() {
    for model in [tiny_model(), lowered().model] {
        let mut buf = Vec::new();
        write_lp(&model, "a comment", &mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("\\ a comment\nMinimize\n obj:"));
        assert!(
            text.lines().all(|l| l.len() < 255),
            "line too long for CPLEX"
        );
        let back = read_lp(&text).unwrap();
        assert_eq!(canonical(&back), canonical(&model));
    }
}

#[test]
fn reread_model_solves_to_the_same_optimum() {
    let milp = lowered();
    assert!(milp.undecided() > 0);
    let mut buf = Vec::new();
    write_mps(&milp.model, &milp.export_comment(), &mut buf).unwrap();
    let back = read_mps(&String::from_utf8(buf).unwrap()).unwrap();
    let direct = Microlp.solve(&milp.model, None, None).unwrap();
    let reread = Microlp.solve(&back, None, None).unwrap();
    assert_eq!(direct.dual_bound.round(), reread.dual_bound.round());
    // The tiny model by hand: y = 0, z = 1 forces x ≥ 1 → 1 − 0.5; y = 1, z = 0: x ≥ 0 → 2.
    let tiny = Microlp.solve(&tiny_model(), None, None).unwrap();
    assert!((tiny.dual_bound - 0.5).abs() < 1e-7);
}

#[test]
fn malformed_files_and_models_are_errors() {
    for text in [
        "",
        "NAME x\nROWS\n N obj\nCOLUMNS\n x obj 1\n",
        "NAME x\nROWS\n Q obj\nENDATA\n",
        "NAME x\nROWS\n N obj\nCOLUMNS\n x nope 1\nENDATA\n",
        "NAME x\nROWS\n N obj\nCOLUMNS\n x obj abc\nENDATA\n",
        "NAME x\nROWS\n N obj\nRANGES\nENDATA\n",
    ] {
        assert!(
            matches!(read_mps(text), Err(MilpError::Parse(_))),
            "{text:?}"
        );
    }
    for text in [
        "",
        "Minimize\n obj: + 1 x\nEnd\n",
        "Minimize\n obj: + 1 x\nSubject To\n c: + 1 x <=\nBounds\nEnd\n",
        "Minimize\n obj: 1 x\nSubject To\nBounds\nEnd\n",
    ] {
        assert!(read_lp(text).is_err(), "{text:?}");
    }
    let mut bad = tiny_model();
    bad.vars[1].name = "has space".into();
    assert!(write_lp(&bad, "", &mut Vec::new()).is_err());
    let mut repeated = tiny_model();
    repeated.rows[0].coeffs.push((0, 2.0));
    assert!(write_mps(&repeated, "", &mut Vec::new()).is_err());
    assert!(Microlp.solve(&repeated, None, None).is_err());
}
