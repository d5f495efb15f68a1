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
