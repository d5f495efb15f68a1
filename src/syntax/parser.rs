//! pest parse tree → typed AST.

use super::ast::*;
use crate::diagnostics::Diagnostic;
use crate::source::{SourceId, Span};
use pest::iterators::Pair;
use pest::Parser;
use pest_derive::Parser;

#[derive(Parser)]
#[grammar = "../grammar/upc.pest"]
struct UpcParser;

/// Parses one source text. Syntax errors become an `E0001` diagnostic at the furthest position
/// the parser reached, naming the expected tokens in words.
pub fn parse(source: SourceId, text: &str) -> Result<File, Diagnostic> {
    let trivia = trivia_map(text);
    if let Some(at) = too_deep(text, &trivia) {
        return Err(Diagnostic::error(
            "E0002",
            format!("brackets nested more than {MAX_NESTING} deep"),
        )
        .with_primary(Span::new(source, at, at + 1), "nesting limit reached here"));
    }
    pest::set_error_detail(true);
    let mut pairs =
        UpcParser::parse(Rule::file, text).map_err(|e| syntax_error(source, text, &e))?;
    let file = pairs.next().expect("the file rule always yields one pair");
    let b = Builder { source, trivia };
    Ok(File {
        items: file
            .into_inner()
            .filter(|p| p.as_rule() != Rule::EOI)
            .map(|p| b.item(p))
            .collect(),
    })
}

fn syntax_error(source: SourceId, text: &str, err: &pest::error::Error<Rule>) -> Diagnostic {
    let (pos, mut expected) = match err.parse_attempts() {
        Some(attempts) => {
            let mut words: Vec<String> = attempts
                .expected_tokens()
                .iter()
                .map(|t| t.to_string())
                .filter(|t| !is_name_fragment(t))
                .map(|t| format!("`{t}`"))
                .collect();
            for stack in attempts.call_stacks() {
                let rule = stack.deepest.get_rule().copied().or(stack.parent);
                if let Some(w) = rule.and_then(rule_words) {
                    words.push(w.to_string());
                }
            }
            (attempts.max_position, words)
        }
        None => {
            let pos = match err.location {
                pest::error::InputLocation::Pos(p) => p,
                pest::error::InputLocation::Span((s, _)) => s,
            };
            let words = match &err.variant {
                pest::error::ErrorVariant::ParsingError { positives, .. } => positives
                    .iter()
                    .filter_map(|r| rule_words(*r))
                    .map(String::from)
                    .collect(),
                pest::error::ErrorVariant::CustomError { message } => vec![message.clone()],
            };
            (pos, words)
        }
    };
    expected.sort();
    expected.dedup();
    // "a declaration" is noise when something more specific was expected at the same place.
    if expected.len() > 1 {
        expected.retain(|w| !w.starts_with("a declaration"));
    }
    let pos = pos.min(text.len());
    // A keyword where a name belongs: point at the keyword itself.
    let word_start = text[..pos]
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || *c == '_')
        .last()
        .map_or(pos, |(i, _)| i);
    let word = &text[word_start..pos];
    if word_start < pos && KEYWORDS.contains(&word) && expected.iter().any(|w| w == "a name") {
        return Diagnostic::error("E0001", format!("syntax error: `{word}` is a keyword"))
            .with_primary(
                Span::new(source, word_start, pos),
                "expected a name, found a keyword",
            )
            .with_help(format!("choose another name, e.g. `{word}_`"));
    }
    let end = next_token_end(text, pos);
    let found = match text[pos..].chars().next() {
        None => "end of file".to_string(),
        Some('\n') | Some('\r') => "end of line".to_string(),
        Some(_) => format!("`{}`", &text[pos..end]),
    };
    let expected_text = match expected.len() {
        0 => "something else".to_string(),
        1 => expected[0].clone(),
        n => format!("{} or {}", expected[..n - 1].join(", "), expected[n - 1]),
    };
    Diagnostic::error("E0001", format!("syntax error: unexpected {found}")).with_primary(
        Span::new(source, pos, end),
        format!("expected {expected_text}"),
    )
}

/// Pieces of names and numbers (`_`, `e`, ...) that pest reports from inside atomic rules.
/// Character ranges (`0..9`), whitespace, comment starts and the builtin-rule marker are
/// dropped too.
fn is_name_fragment(token: &str) -> bool {
    let chars: Vec<char> = token.chars().collect();
    let is_range = chars.len() == 4 && chars[1] == '.' && chars[2] == '.';
    is_range
        || token.trim().is_empty()
        || token == "//"
        || token == "BUILTIN_RULE"
        || token.len() == 1 && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The reserved words; must match `keyword` in grammar/upc.pest.
pub const KEYWORDS: &[&str] = &[
    "use",
    "const",
    "block",
    "network",
    "dataset",
    "perturbation",
    "property",
    "from",
    "if",
    "else",
    "true",
    "false",
    "weights",
    "certify",
];

/// The extent of the offending token: a word, or one character.
fn next_token_end(text: &str, pos: usize) -> usize {
    let rest = &text[pos..];
    let mut chars = rest.char_indices();
    match chars.next() {
        None => pos,
        Some((_, c)) if c.is_alphanumeric() || c == '_' => {
            pos + rest
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
                .map_or(rest.len(), |(i, _)| i)
        }
        Some((_, c)) => pos + c.len_utf8(),
    }
}

/// Grammar rules described in words for "expected ..." messages.
fn rule_words(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::ident | Rule::word => "a name",
        Rule::string | Rule::string_inner => "a string",
        Rule::number => "a number",
        Rule::duration | Rule::time_unit => "a duration like `60s`",
        Rule::expr
        | Rule::or_expr
        | Rule::and_expr
        | Rule::cmp_expr
        | Rule::sum
        | Rule::product
        | Rule::unary => "an expression",
        Rule::use_decl
        | Rule::const_decl
        | Rule::block_decl
        | Rule::network_decl
        | Rule::dataset_decl
        | Rule::perturbation_decl
        | Rule::property_decl => "a declaration (`use`, `const`, `block`, `network`, `dataset`, `perturbation`, `property`)",
        Rule::layer_stmt | Rule::input_stmt => "a layer statement",
        Rule::call | Rule::if_layer => "a layer",
        Rule::call_args => "arguments `(...)`",
        Rule::arg => "an argument",
        Rule::from_clause => "`from`",
        Rule::weights_clause => "`weights`",
        Rule::t_scale | Rule::t_first | Rule::t_range | Rule::t_sample => {
            "a dataset transform (`scale`, `first`, `range`, `sample`)"
        }
        Rule::options => "options `{ ... }`",
        Rule::option => "an option",
        Rule::opt_list | Rule::opt_word => "an option value",
        Rule::module_ref | Rule::std_module => "a module (`std::NAME` or a file path string)",
        Rule::use_items | Rule::use_all => "imported names",
        Rule::list => "a list",
        Rule::boolean => "`true` or `false`",
        Rule::cmp_op => "a comparison",
        Rule::add_op | Rule::mul_op => "an operator",
        Rule::EOI => "end of file",
        _ => return None,
    })
}

struct Builder {
    source: SourceId,
    /// Per byte: is it whitespace or part of a comment (outside strings)?
    trivia: Vec<bool>,
}

/// Deeper nesting is refused before parsing, so recursion stays far from the stack limit.
const MAX_NESTING: usize = 64;

/// The offset of the first bracket nested deeper than [`MAX_NESTING`] (outside comments and
/// strings), if any.
fn too_deep(text: &str, trivia: &[bool]) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    for (i, b) in text.bytes().enumerate() {
        if trivia[i] {
            continue;
        }
        match b {
            b'"' => in_string = !in_string,
            b'\n' => in_string = false,
            b'(' | b'[' | b'{' if !in_string => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' if !in_string => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Marks whitespace and comment bytes, so spans can drop the trivia pest leaves at their end.
fn trivia_map(text: &str) -> Vec<bool> {
    let bytes = text.as_bytes();
    let mut trivia = vec![false; bytes.len()];
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            in_string = !(b == b'"' || b == b'\n');
        } else if b == b'"' {
            in_string = true;
        } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
            while i < bytes.len() && bytes[i] != b'\n' {
                trivia[i] = true;
                i += 1;
            }
            continue;
        } else if b.is_ascii_whitespace() {
            trivia[i] = true;
        }
        i += 1;
    }
    trivia
}

impl Builder {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        let mut end = s.end();
        while end > s.start() && self.trivia.get(end - 1) == Some(&true) {
            end -= 1;
        }
        Span::new(self.source, s.start(), end)
    }

    fn ident(&self, p: Pair<Rule>) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn string(&self, p: Pair<Rule>) -> StringLit {
        let span = self.span(&p);
        let inner = p.into_inner().next().map_or("", |i| i.as_str());
        StringLit {
            value: inner.to_string(),
            span,
        }
    }

    fn item(&self, p: Pair<Rule>) -> Item {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut it = p.into_inner();
        match rule {
            Rule::use_decl => {
                let m = it.next().unwrap().into_inner().next().unwrap();
                let module = match m.as_rule() {
                    Rule::std_module => ModuleRef::Std(self.ident(m.into_inner().next().unwrap())),
                    _ => ModuleRef::File(self.string(m)),
                };
                let items = match it.next() {
                    None => UseItems::All,
                    Some(u) => {
                        let inner: Vec<Pair<Rule>> = u.into_inner().collect();
                        if inner.len() == 1 && inner[0].as_rule() == Rule::use_all {
                            UseItems::All
                        } else {
                            UseItems::Names(inner.into_iter().map(|i| self.ident(i)).collect())
                        }
                    }
                };
                Item::Use(UseDecl {
                    module,
                    items,
                    span,
                })
            }
            Rule::const_decl => Item::Const(ConstDecl {
                name: self.ident(it.next().unwrap()),
                value: self.expr(it.next().unwrap()),
                span,
            }),
            Rule::block_decl => {
                let name = self.ident(it.next().unwrap());
                let mut params = Vec::new();
                let mut body = Vec::new();
                for p in it {
                    match p.as_rule() {
                        Rule::params => params = p.into_inner().map(|i| self.ident(i)).collect(),
                        Rule::input_stmt => body.push(Stmt::Input {
                            span: self.span(&p),
                            shape: self.expr(p.into_inner().next().unwrap()),
                        }),
                        _ => body.push(Stmt::Layer(self.layer_stmt(p))),
                    }
                }
                Item::Block(BlockDecl {
                    name,
                    params,
                    body,
                    span,
                })
            }
            Rule::network_decl => Item::Network(NetworkDecl {
                name: self.ident(it.next().unwrap()),
                model: self.call(it.next().unwrap()),
                weights: it.next().map(|w| self.expr(w.into_inner().next().unwrap())),
                span,
            }),
            Rule::dataset_decl => Item::Dataset(DatasetDecl {
                name: self.ident(it.next().unwrap()),
                source: self.call(it.next().unwrap()),
                transforms: it.map(|t| self.transform(t)).collect(),
                span,
            }),
            Rule::perturbation_decl => {
                let name = self.ident(it.next().unwrap());
                let kind = match it.next().unwrap().as_str() {
                    "universal" => PerturbationKind::Universal,
                    _ => PerturbationKind::Samplewise,
                };
                let mut next = it.next().unwrap();
                let per_channel = next.as_rule() == Rule::per_channel;
                if per_channel {
                    next = it.next().unwrap();
                }
                Item::Perturbation(PerturbationDecl {
                    name,
                    kind,
                    per_channel,
                    eps: self.expr(next),
                    span,
                })
            }
            Rule::property_decl => {
                let name = self.ident(it.next().unwrap());
                let mut next = it.next().unwrap();
                let classwise = next.as_rule() == Rule::classwise;
                if classwise {
                    next = it.next().unwrap();
                }
                let (networks, network_list) = if next.as_rule() == Rule::network_list {
                    let list_span = self.span(&next);
                    (
                        next.into_inner().map(|i| self.ident(i)).collect(),
                        Some(list_span),
                    )
                } else {
                    (vec![self.ident(next)], None)
                };
                let dataset = self.ident(it.next().unwrap());
                let perturbation = self.ident(it.next().unwrap());
                let options = it
                    .next()
                    .map(|o| o.into_inner().map(|e| self.option(e)).collect())
                    .unwrap_or_default();
                Item::Property(PropertyDecl {
                    name,
                    classwise,
                    networks,
                    network_list,
                    dataset,
                    perturbation,
                    options,
                    span,
                })
            }
            r => unreachable!("unexpected item rule {r:?}"),
        }
    }

    fn layer_stmt(&self, p: Pair<Rule>) -> LayerStmt {
        let span = self.span(&p);
        let mut name = None;
        let mut layer = None;
        let mut from = Vec::new();
        for q in p.into_inner() {
            match q.as_rule() {
                Rule::ident => name = Some(self.ident(q)),
                Rule::from_clause => from = q.into_inner().map(|i| self.ident(i)).collect(),
                _ => layer = Some(self.layer_expr(q)),
            }
        }
        LayerStmt {
            name,
            layer: layer.expect("a layer statement has a layer"),
            from,
            span,
        }
    }

    fn layer_expr(&self, p: Pair<Rule>) -> LayerExpr {
        match p.as_rule() {
            Rule::if_layer => {
                let span = self.span(&p);
                let mut it = p.into_inner();
                LayerExpr::If {
                    cond: self.expr(it.next().unwrap()),
                    then: Box::new(self.layer_expr(it.next().unwrap())),
                    otherwise: Box::new(self.layer_expr(it.next().unwrap())),
                    span,
                }
            }
            _ => LayerExpr::Call(self.call(p)),
        }
    }

    fn call(&self, p: Pair<Rule>) -> Call {
        let span = self.span(&p);
        let mut it = p.into_inner();
        let callee = self.ident(it.next().unwrap());
        let args = it.next().map(|a| self.args(a)).unwrap_or_default();
        Call { callee, args, span }
    }

    fn args(&self, p: Pair<Rule>) -> Vec<Arg> {
        p.into_inner()
            .map(|a| {
                let span = self.span(&a);
                let parts: Vec<Pair<Rule>> = a.into_inner().collect();
                let mut parts = parts.into_iter();
                let (name, value) = if parts.len() == 2 {
                    (
                        Some(self.ident(parts.next().unwrap())),
                        parts.next().unwrap(),
                    )
                } else {
                    (None, parts.next().unwrap())
                };
                Arg {
                    name,
                    value: self.expr(value),
                    span,
                }
            })
            .collect()
    }

    fn transform(&self, p: Pair<Rule>) -> Transform {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut it = p.into_inner();
        let kind = match rule {
            Rule::t_scale => TransformKind::Scale(self.expr(it.next().unwrap())),
            Rule::t_first => TransformKind::First(self.expr(it.next().unwrap())),
            Rule::t_range => {
                TransformKind::Range(self.expr(it.next().unwrap()), self.expr(it.next().unwrap()))
            }
            _ => TransformKind::Sample {
                count: self.expr(it.next().unwrap()),
                seed: self.expr(it.next().unwrap()),
            },
        };
        Transform { kind, span }
    }

    fn option(&self, p: Pair<Rule>) -> OptionEntry {
        let span = self.span(&p);
        let mut it = p.into_inner();
        OptionEntry {
            key: self.ident(it.next().unwrap()),
            value: self.opt_value(it.next().unwrap()),
            span,
        }
    }

    fn opt_value(&self, p: Pair<Rule>) -> OptValue {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::opt_list => OptValue::List {
                items: p.into_inner().map(|v| self.opt_value(v)).collect(),
                span,
            },
            Rule::opt_word => {
                let mut it = p.into_inner();
                OptValue::Word {
                    word: self.ident(it.next().unwrap()),
                    args: it.next().map(|a| self.args(a)),
                    span,
                }
            }
            _ => OptValue::Expr(self.expr(p)),
        }
    }

    /// Any expression-level pair (expr, or_expr, ..., primary).
    fn expr(&self, p: Pair<Rule>) -> Expr {
        let span = self.span(&p);
        let rule = p.as_rule();
        let kind = match rule {
            Rule::expr => return self.expr(p.into_inner().next().unwrap()),
            Rule::or_expr | Rule::and_expr | Rule::sum | Rule::product | Rule::cmp_expr => {
                let mut it = p.into_inner();
                let mut lhs = self.expr(it.next().unwrap());
                while let Some(op_or_rhs) = it.next() {
                    let (op, rhs) = match rule {
                        Rule::or_expr => (BinOp::Or, op_or_rhs),
                        Rule::and_expr => (BinOp::And, op_or_rhs),
                        _ => (binop(op_or_rhs.as_str()), it.next().unwrap()),
                    };
                    let rhs = self.expr(rhs);
                    let span = lhs.span.join(rhs.span);
                    lhs = Expr {
                        kind: ExprKind::Binary(op, Box::new(lhs), Box::new(rhs)),
                        span,
                    };
                }
                return lhs;
            }
            Rule::unary => {
                let parts: Vec<Pair<Rule>> = p.into_inner().collect();
                let negs = parts.len() - 1;
                let mut e = self.expr(parts.into_iter().last().unwrap());
                for _ in 0..negs {
                    e = Expr {
                        kind: ExprKind::Neg(Box::new(e)),
                        span,
                    };
                }
                return e;
            }
            Rule::number => ExprKind::Number(p.as_str().to_string()),
            Rule::duration => {
                let mut it = p.into_inner();
                let value = it.next().unwrap().as_str().to_string();
                let unit = match it.next().unwrap().as_str() {
                    "ms" => TimeUnit::Millis,
                    "s" => TimeUnit::Seconds,
                    "min" => TimeUnit::Minutes,
                    _ => TimeUnit::Hours,
                };
                ExprKind::Duration { value, unit }
            }
            Rule::boolean => ExprKind::Bool(p.as_str() == "true"),
            Rule::string => ExprKind::Str(self.string(p).value),
            Rule::list => ExprKind::List(p.into_inner().map(|e| self.expr(e)).collect()),
            Rule::ident => ExprKind::Name(p.as_str().to_string()),
            r => unreachable!("unexpected expression rule {r:?}"),
        };
        Expr { kind, span }
    }
}

fn binop(s: &str) -> BinOp {
    match s {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "==" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        "<=" => BinOp::Le,
        ">" => BinOp::Gt,
        _ => BinOp::Ge,
    }
}
