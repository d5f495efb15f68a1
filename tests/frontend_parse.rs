//! Parser snapshots and span checks.

use upcc::source::SourceId;
use upcc::syntax::{ast, parse};

#[test]
fn input_statement_span_excludes_trailing_space() {
    let text = "block b() {\n    input [1, 28, 28]\n    relu\n}\n";
    let file = parse(SourceId(0), text).unwrap();
    let ast::Item::Block(b) = &file.items[0] else {
        panic!("not a block")
    };
    let ast::Stmt::Input { span, .. } = &b.body[0] else {
        panic!("not input")
    };
    assert_eq!(&text[span.start..span.end], "input [1, 28, 28]");
}

#[test]
fn quickstart_ast_snapshot() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/quickstart.upc"
    ))
    .unwrap();
    let file = parse(SourceId(0), &text).unwrap();
    insta::assert_debug_snapshot!(file);
}

#[test]
fn residual_block_ast_snapshot() {
    let text = "block res(c) {\n    a = conv2d(c, c, kernel: 3, padding: 1)\n    \
                s = if c > 8 && true { relu } else { identity } from input\n    out = add from a, s\n}\n";
    insta::assert_debug_snapshot!(parse(SourceId(0), text).unwrap());
}

#[test]
fn syntax_errors_point_at_the_offending_token() {
    let text = "perturbation p = universal linf eps 8/255\nproperty q = certify accuracy of n on d undr p\n";
    let d = parse(SourceId(0), text).unwrap_err();
    let label = &d.labels[0];
    assert_eq!(&text[label.span.start..label.span.end], "undr");
    assert_eq!(d.code, "E0001");
    assert!(label.message.contains("`under`"), "{}", label.message);
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let text = format!(
        "const a = {}1{}\n",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let d = parse(SourceId(0), &text).unwrap_err();
    assert_eq!(d.code, "E0002");
    let ok = format!("const a = {}1{}\n", "(".repeat(64), ")".repeat(64));
    assert!(parse(SourceId(0), &ok).is_ok());
}
