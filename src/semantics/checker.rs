//! Module loading, scopes, constant evaluation, perturbations and properties.

use super::loader::{normalize, std_module, Loader, STD_MODULES};
use super::value::{Exact, Rational, Value};
use super::*;
use crate::diagnostics::{Diagnostic, Diagnostics};
use crate::source::{SourceId, SourceMap, Span};
use crate::syntax::{self, ast};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A declared item: module index and item index in that module's file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct ItemRef {
    pub module: usize,
    pub index: usize,
}

pub(super) struct Module {
    pub file: Rc<ast::File>,
    /// Directory that relative paths in this module resolve against (`None` for the stdlib).
    pub dir: Option<PathBuf>,
    pub scope: HashMap<String, ItemRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum ModuleKey {
    Std(String),
    File(PathBuf),
}

pub(super) struct Checker<'a> {
    loader: &'a dyn Loader,
    pub sources: SourceMap,
    pub diags: Diagnostics,
    pub modules: Vec<Module>,
    module_keys: HashMap<ModuleKey, usize>,
    loading: Vec<ModuleKey>,
    consts: HashMap<ItemRef, Option<Value>>,
    consts_in_progress: HashSet<ItemRef>,
    pub networks: HashMap<ItemRef, Option<usize>>,
    pub datasets: HashMap<ItemRef, Option<usize>>,
    perturbations: HashMap<ItemRef, Option<usize>>,
    pub program: CheckedProgram,
}

/// Largest accepted size, count or dimension (larger ones are surely mistakes).
pub(super) const MAX_SIZE: usize = 1 << 24;
/// Largest accepted number of elements of one tensor.
pub(super) const MAX_ELEMENTS: usize = 1 << 32;

/// Local names while evaluating inside a block: its parameters.
pub(super) type Locals = HashMap<String, Value>;

pub(super) fn check(
    path: &Path,
    loader: &dyn Loader,
) -> (SourceMap, Result<CheckedProgram, Diagnostics>) {
    let mut c = Checker {
        loader,
        sources: SourceMap::new(),
        diags: Diagnostics::default(),
        modules: Vec::new(),
        module_keys: HashMap::new(),
        loading: Vec::new(),
        consts: HashMap::new(),
        consts_in_progress: HashSet::new(),
        networks: HashMap::new(),
        datasets: HashMap::new(),
        perturbations: HashMap::new(),
        program: CheckedProgram {
            networks: Vec::new(),
            datasets: Vec::new(),
            perturbations: Vec::new(),
            properties: Vec::new(),
            warnings: Vec::new(),
        },
    };
    let key = ModuleKey::File(normalize(path));
    let text = match loader.read(path) {
        Ok(t) => t,
        Err(e) => {
            let d = Diagnostic::error("E0301", format!("cannot read `{}`: {e}", path.display()));
            return (c.sources, Err(Diagnostics { items: vec![d] }));
        }
    };
    let root = c.load_module(
        key,
        path.display().to_string(),
        Some(path.to_path_buf()),
        text,
    );
    c.check_root(root);
    let Checker {
        sources,
        diags,
        mut program,
        ..
    } = c;
    let items = dedup(diags.items);
    if items.iter().any(Diagnostic::is_error) {
        (sources, Err(Diagnostics { items }))
    } else {
        program.warnings = items;
        (sources, Ok(program))
    }
}

/// Drops repeated diagnostics (the same error found by two passes).
fn dedup(items: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::new();
    for d in items {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

impl<'a> Checker<'a> {
    pub fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    // ---------------------------------------------------------------- modules and scopes

    fn load_module(
        &mut self,
        key: ModuleKey,
        name: String,
        path: Option<PathBuf>,
        text: String,
    ) -> usize {
        let source = self.sources.add(name, path.clone(), text);
        let file = match syntax::parse(source, &self.sources.get(source).text) {
            Ok(f) => f,
            Err(d) => {
                self.error(d);
                ast::File { items: Vec::new() }
            }
        };
        let index = self.modules.len();
        self.modules.push(Module {
            file: Rc::new(file),
            dir: path.map(|p| p.parent().map(Path::to_path_buf).unwrap_or_default()),
            scope: HashMap::new(),
        });
        self.module_keys.insert(key.clone(), index);
        self.loading.push(key);
        self.build_scope(index, source);
        self.loading.pop();
        index
    }

    fn build_scope(&mut self, module: usize, _source: SourceId) {
        let file = self.modules[module].file.clone();
        let mut defined: HashMap<String, Span> = HashMap::new();
        for (index, item) in file.items.iter().enumerate() {
            if let Some(name) = item.name() {
                if let Some(prev) = defined.get(&name.name) {
                    self.error(
                        Diagnostic::error(
                            "E0104",
                            format!("`{}` is defined more than once", name.name),
                        )
                        .with_primary(name.span, "redefined here")
                        .with_secondary(*prev, "first defined here"),
                    );
                    continue;
                }
                defined.insert(name.name.clone(), name.span);
                self.modules[module]
                    .scope
                    .insert(name.name.clone(), ItemRef { module, index });
            }
        }
        for item in &file.items {
            if let ast::Item::Use(u) = item {
                self.import(module, u, &mut defined);
            }
        }
    }

    fn import(&mut self, module: usize, u: &ast::UseDecl, defined: &mut HashMap<String, Span>) {
        let Some(target) = self.resolve_module(module, u) else {
            return;
        };
        let names: Vec<(String, Span)> = match &u.items {
            ast::UseItems::All => {
                let file = self.modules[target].file.clone();
                file.items
                    .iter()
                    .filter_map(|i| i.name())
                    .map(|n| (n.name.clone(), u.span))
                    .collect()
            }
            ast::UseItems::Names(ns) => ns.iter().map(|n| (n.name.clone(), n.span)).collect(),
        };
        for (name, span) in names {
            let Some(item) = self.modules[target].scope.get(&name).copied() else {
                let available: Vec<String> = self.module_item_names(target);
                let mut d =
                    Diagnostic::error("E0107", format!("module has no item named `{name}`"))
                        .with_primary(span, "not found in the imported module");
                if let Some(s) = closest(&name, available.iter().map(String::as_str)) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                self.error(d);
                continue;
            };
            if let Some(prev) = defined.get(&name) {
                if self.modules[module].scope.get(&name) == Some(&item) {
                    continue;
                }
                self.error(
                    Diagnostic::error("E0104", format!("`{name}` is defined more than once"))
                        .with_primary(span, "imported here")
                        .with_secondary(*prev, "also defined here"),
                );
                continue;
            }
            defined.insert(name.clone(), span);
            self.modules[module].scope.insert(name, item);
        }
    }

    fn module_item_names(&self, module: usize) -> Vec<String> {
        let mut v: Vec<String> = self.modules[module]
            .file
            .items
            .iter()
            .filter_map(|i| i.name().map(|n| n.name.clone()))
            .collect();
        v.sort();
        v
    }

    fn resolve_module(&mut self, from: usize, u: &ast::UseDecl) -> Option<usize> {
        let (key, name, path, text_result, span) = match &u.module {
            ast::ModuleRef::Std(id) => {
                let Some(text) = std_module(&id.name) else {
                    let mut d = Diagnostic::error(
                        "E0106",
                        format!("unknown standard module `std::{}`", id.name),
                    )
                    .with_primary(id.span, "not in the standard library")
                    .with_note(format!("standard modules: {}", STD_MODULES.join(", ")));
                    if let Some(s) = closest(&id.name, STD_MODULES.iter().copied()) {
                        d = d.with_help(format!("did you mean `std::{s}`?"));
                    }
                    self.error(d);
                    return None;
                };
                (
                    ModuleKey::Std(id.name.clone()),
                    format!("<stdlib>/{}.upc", id.name),
                    None,
                    Ok(text.to_string()),
                    id.span,
                )
            }
            ast::ModuleRef::File(s) => {
                let Some(dir) = self.modules[from].dir.clone() else {
                    self.error(
                        Diagnostic::error("E0106", "the standard library cannot import files")
                            .with_primary(s.span, "file import in a standard module"),
                    );
                    return None;
                };
                let path = normalize(&dir.join(&s.value));
                let text = if self
                    .module_keys
                    .contains_key(&ModuleKey::File(path.clone()))
                {
                    Ok(String::new())
                } else {
                    self.loader.read(&path)
                };
                (
                    ModuleKey::File(path.clone()),
                    path.display().to_string(),
                    Some(path),
                    text,
                    s.span,
                )
            }
        };
        if let Some(pos) = self.loading.iter().position(|k| *k == key) {
            let chain: Vec<String> = self.loading[pos..]
                .iter()
                .chain(std::iter::once(&key))
                .map(|k| match k {
                    ModuleKey::Std(n) => format!("std::{n}"),
                    ModuleKey::File(p) => p.display().to_string(),
                })
                .collect();
            self.error(
                Diagnostic::error("E0105", "import cycle")
                    .with_primary(
                        span,
                        "this import leads back to a file that is still being imported",
                    )
                    .with_note(format!("cycle: {}", chain.join(" → "))),
            );
            return None;
        }
        if let Some(&m) = self.module_keys.get(&key) {
            return Some(m);
        }
        match text_result {
            Ok(text) => Some(self.load_module(key, name, path, text)),
            Err(e) => {
                self.error(
                    Diagnostic::error("E0106", format!("cannot read imported file `{name}`: {e}"))
                        .with_primary(span, "imported here"),
                );
                None
            }
        }
    }

    pub fn item(&self, r: ItemRef) -> &ast::Item {
        &self.modules[r.module].file.items[r.index]
    }

    /// Looks a top-level name up in a module's scope, reporting E0101 if absent.
    pub fn lookup(&mut self, module: usize, id: &ast::Ident) -> Option<ItemRef> {
        if let Some(r) = self.modules[module].scope.get(&id.name) {
            return Some(*r);
        }
        let names: Vec<String> = self.modules[module].scope.keys().cloned().collect();
        let mut d = Diagnostic::error("E0101", format!("cannot find `{}` in this scope", id.name))
            .with_primary(id.span, "not found");
        if let Some(s) = closest(&id.name, names.iter().map(String::as_str)) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        self.error(d);
        None
    }

    /// Looks a name up and requires a given kind of item (E0102 otherwise).
    fn lookup_kind(&mut self, module: usize, id: &ast::Ident, want: &str) -> Option<ItemRef> {
        let r = self.lookup(module, id)?;
        let kind = self.item(r).kind_word();
        if kind != want {
            let decl = self.item(r).name().map(|n| n.span);
            let mut d =
                Diagnostic::error("E0102", format!("`{}` is a {kind}, not a {want}", id.name))
                    .with_primary(id.span, format!("expected a {want}"));
            if let Some(s) = decl {
                d = d.with_secondary(s, format!("`{}` is declared here", id.name));
            }
            self.error(d);
            return None;
        }
        Some(r)
    }

    // ---------------------------------------------------------------- root

    fn check_root(&mut self, root: usize) {
        let file = self.modules[root].file.clone();
        for (index, item) in file.items.iter().enumerate() {
            let r = ItemRef {
                module: root,
                index,
            };
            let is_duplicate = self.modules[root]
                .scope
                .get(item.name().map_or("", |n| n.name.as_str()))
                != Some(&r);
            if is_duplicate && !matches!(item, ast::Item::Use(_)) {
                continue; // already reported
            }
            match item {
                ast::Item::Use(_) => {}
                ast::Item::Const(_) => {
                    self.const_value(r);
                }
                ast::Item::Block(b) => self.precheck_block(root, b),
                ast::Item::Network(_) => {
                    self.network(r);
                }
                ast::Item::Dataset(_) => {
                    self.dataset(r);
                }
                ast::Item::Perturbation(_) => {
                    self.perturbation(r);
                }
                ast::Item::Property(p) => self.property(root, p),
            }
        }
    }

    // ---------------------------------------------------------------- constants

    pub fn const_value(&mut self, r: ItemRef) -> Option<Value> {
        if let Some(v) = self.consts.get(&r) {
            return v.clone();
        }
        let ast::Item::Const(c) = self.item(r).clone() else {
            return None;
        };
        if !self.consts_in_progress.insert(r) {
            self.error(
                Diagnostic::error(
                    "E0108",
                    format!("constant `{}` is defined in terms of itself", c.name.name),
                )
                .with_primary(c.name.span, "cyclic definition"),
            );
            return None;
        }
        let v = self.eval(r.module, &c.value, &Locals::new());
        self.consts_in_progress.remove(&r);
        self.consts.insert(r, v.clone());
        v
    }

    /// Evaluates an expression; `None` after reporting an error.
    pub fn eval(&mut self, module: usize, e: &ast::Expr, locals: &Locals) -> Option<Value> {
        use ast::ExprKind as K;
        Some(match &e.kind {
            K::Number(t) => Value::Num(self.number(t, e.span)?),
            K::Duration { value, unit } => {
                let v = self.number(value, e.span)?;
                let factor = match unit {
                    ast::TimeUnit::Millis => Rational::new(1, 1000),
                    ast::TimeUnit::Seconds => Some(Rational::int(1)),
                    ast::TimeUnit::Minutes => Some(Rational::int(60)),
                    ast::TimeUnit::Hours => Some(Rational::int(3600)),
                };
                Value::Duration(self.checked(factor.and_then(|f| v.checked_mul(f)), e.span)?)
            }
            K::Bool(b) => Value::Bool(*b),
            K::Str(s) => Value::Str(s.clone()),
            K::List(items) => {
                let mut out = Vec::new();
                let mut ok = true;
                for i in items {
                    match self.eval(module, i, locals) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Value::List(out)
            }
            K::Name(n) => {
                if let Some(v) = locals.get(n) {
                    return Some(v.clone());
                }
                let id = ast::Ident {
                    name: n.clone(),
                    span: e.span,
                };
                let r = self.lookup(module, &id)?;
                match self.item(r) {
                    ast::Item::Const(_) => return self.const_value(r),
                    other => {
                        let kind = other.kind_word();
                        self.error(
                            Diagnostic::error(
                                "E0102",
                                format!("`{n}` is a {kind}, not a constant"),
                            )
                            .with_primary(e.span, "expected a value"),
                        );
                        return None;
                    }
                }
            }
            K::Neg(inner) => match self.eval(module, inner, locals)? {
                Value::Num(r) => Value::Num(self.checked(Rational::int(0).checked_sub(r), e.span)?),
                other => return self.type_error(e.span, "a number", &other),
            },
            K::Binary(op, l, r) => {
                let lv = self.eval(module, l, locals);
                let rv = self.eval(module, r, locals);
                let (lv, rv) = (lv?, rv?);
                self.binary(*op, lv, rv, e.span, l.span, r.span)?
            }
        })
    }

    fn number(&mut self, text: &str, span: Span) -> Option<Rational> {
        match Rational::parse_decimal(text) {
            Some(r) => Some(r),
            None => {
                self.error(
                    Diagnostic::error("E0203", format!("the number `{text}` is too large"))
                        .with_primary(span, "exceeds the exact arithmetic range"),
                );
                None
            }
        }
    }

    fn checked(&mut self, r: Option<Rational>, span: Span) -> Option<Rational> {
        if r.is_none() {
            self.error(
                Diagnostic::error("E0203", "arithmetic overflow in a constant expression")
                    .with_primary(span, "the exact value does not fit in 128 bits"),
            );
        }
        r
    }

    pub fn type_error<T>(&mut self, span: Span, want: &str, got: &Value) -> Option<T> {
        self.error(
            Diagnostic::error(
                "E0201",
                format!("expected {want}, found {}", got.type_name()),
            )
            .with_primary(span, format!("this is {}", got.type_name())),
        );
        None
    }

    fn binary(
        &mut self,
        op: ast::BinOp,
        l: Value,
        r: Value,
        span: Span,
        lspan: Span,
        rspan: Span,
    ) -> Option<Value> {
        use ast::BinOp as B;
        match (op, l, r) {
            (B::And | B::Or, Value::Bool(a), Value::Bool(b)) => {
                Some(Value::Bool(if op == B::And { a && b } else { a || b }))
            }
            (B::And | B::Or, Value::Bool(_), other) => self.type_error(rspan, "a boolean", &other),
            (B::And | B::Or, other, _) => self.type_error(lspan, "a boolean", &other),
            (B::Eq, a, b) => Some(Value::Bool(a == b)),
            (B::Ne, a, b) => Some(Value::Bool(a != b)),
            (_, Value::Num(a), Value::Num(b)) => match op {
                B::Add => Some(Value::Num(self.checked(a.checked_add(b), span)?)),
                B::Sub => Some(Value::Num(self.checked(a.checked_sub(b), span)?)),
                B::Mul => Some(Value::Num(self.checked(a.checked_mul(b), span)?)),
                B::Div => {
                    if b.num == 0 {
                        self.error(
                            Diagnostic::error("E0202", "division by zero")
                                .with_primary(rspan, "this is zero"),
                        );
                        return None;
                    }
                    Some(Value::Num(self.checked(a.checked_div(b), span)?))
                }
                _ => {
                    let Some(ord) = a.cmp_value(b) else {
                        return self.checked(None, span).map(Value::Num);
                    };
                    Some(Value::Bool(match op {
                        B::Lt => ord.is_lt(),
                        B::Le => ord.is_le(),
                        B::Gt => ord.is_gt(),
                        _ => ord.is_ge(),
                    }))
                }
            },
            (_, Value::Num(_), other) => self.type_error(rspan, "a number", &other),
            (_, other, _) => self.type_error(lspan, "a number", &other),
        }
    }

    // ---------------------------------------------------------------- typed value helpers

    /// A non-negative integer (E0204 otherwise).
    /// A seed: any integer in `0..2^64`.
    pub fn as_seed(&mut self, v: &Value, span: Span) -> Option<u64> {
        match v {
            Value::Num(r) if r.is_integer() && r.num >= 0 && r.num <= u64::MAX as i128 => {
                Some(r.num as u64)
            }
            Value::Num(r) => {
                self.error(
                    Diagnostic::error(
                        "E0204",
                        format!("the seed must be an integer in 0..2^64, found {r}"),
                    )
                    .with_primary(span, format!("this is {r}")),
                );
                None
            }
            other => self.type_error(span, "an integer (the seed)", other),
        }
    }

    /// A non-negative integer up to `MAX_SIZE` (sizes, counts, dimensions).
    pub fn as_usize(&mut self, v: &Value, span: Span, what: &str) -> Option<usize> {
        match v {
            Value::Num(r) if r.is_integer() && r.num >= 0 => {
                match usize::try_from(r.num).ok().filter(|n| *n <= MAX_SIZE) {
                    Some(n) => Some(n),
                    None => {
                        self.error(
                            Diagnostic::error(
                                "E0203",
                                format!("{what} is too large (at most {MAX_SIZE})"),
                            )
                            .with_primary(span, "too large"),
                        );
                        None
                    }
                }
            }
            Value::Num(r) => {
                self.error(
                    Diagnostic::error(
                        "E0204",
                        format!("{what} must be a non-negative integer, found {r}"),
                    )
                    .with_primary(span, format!("this is {r}")),
                );
                None
            }
            other => self.type_error(span, &format!("an integer ({what})"), other),
        }
    }

    /// A positive integer.
    pub fn as_positive(&mut self, v: &Value, span: Span, what: &str) -> Option<usize> {
        let n = self.as_usize(v, span, what)?;
        if n == 0 {
            self.error(
                Diagnostic::error("E0204", format!("{what} must be at least 1, found 0"))
                    .with_primary(span, "this is 0"),
            );
            return None;
        }
        Some(n)
    }

    pub fn as_shape(&mut self, v: &Value, span: Span, what: &str) -> Option<Vec<usize>> {
        match v {
            Value::List(items) if !items.is_empty() => {
                let dims: Vec<Option<usize>> = items
                    .iter()
                    .map(|d| self.as_positive(d, span, "a dimension"))
                    .collect();
                let dims: Vec<usize> = dims.into_iter().collect::<Option<_>>()?;
                self.check_numel(&dims, span)?;
                Some(dims)
            }
            Value::List(_) => {
                self.error(
                    Diagnostic::error("E0204", format!("{what} must not be empty"))
                        .with_primary(span, "empty shape"),
                );
                None
            }
            other => self.type_error(
                span,
                &format!("a shape list like [1, 28, 28] ({what})"),
                other,
            ),
        }
    }

    /// Refuses tensors of more than `MAX_ELEMENTS` values (E0203).
    pub fn check_numel(&mut self, shape: &[usize], span: Span) -> Option<usize> {
        let n = shape
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|n| *n <= MAX_ELEMENTS);
        if n.is_none() {
            self.error(
                Diagnostic::error(
                    "E0203",
                    format!(
                        "shape {} has more than 2^32 elements",
                        value::shape_str(shape)
                    ),
                )
                .with_primary(span, "too large"),
            );
        }
        n
    }

    pub fn as_string(&mut self, v: &Value, span: Span) -> Option<String> {
        match v {
            Value::Str(s) => Some(s.clone()),
            other => self.type_error(span, "a file path string", other),
        }
    }

    /// Resolves a path written in `module` against that module's directory.
    pub fn resolve_path(&self, module: usize, p: &str) -> PathBuf {
        match &self.modules[module].dir {
            Some(d) => d.join(p),
            None => PathBuf::from(p),
        }
    }

    // ---------------------------------------------------------------- perturbations

    pub fn perturbation(&mut self, r: ItemRef) -> Option<usize> {
        if let Some(v) = self.perturbations.get(&r) {
            return *v;
        }
        let ast::Item::Perturbation(p) = self.item(r).clone() else {
            return None;
        };
        let result = self.check_perturbation(r.module, &p);
        let idx = result.map(|cp| {
            self.program.perturbations.push(cp);
            self.program.perturbations.len() - 1
        });
        self.perturbations.insert(r, idx);
        idx
    }

    fn check_perturbation(
        &mut self,
        module: usize,
        p: &ast::PerturbationDecl,
    ) -> Option<CheckedPerturbation> {
        // Evaluate element-wise when the ε is a literal list, so errors point at the element.
        let elems: Vec<(Option<Value>, Span)> = match &p.eps.kind {
            ast::ExprKind::List(items) => items
                .iter()
                .map(|i| (self.eval(module, i, &Locals::new()), i.span))
                .collect(),
            _ => {
                let v = self.eval(module, &p.eps, &Locals::new());
                match v {
                    Some(Value::List(vs)) if !p.per_channel => {
                        vs.into_iter().map(|v| (Some(v), p.eps.span)).collect()
                    }
                    v => vec![(v, p.eps.span)],
                }
            }
        };
        if elems.is_empty() {
            self.error(
                Diagnostic::error("E0205", "the ε list is empty")
                    .with_primary(p.eps.span, "give at least one radius"),
            );
            return None;
        }
        let mut eps = Vec::new();
        let mut ok = true;
        if p.per_channel {
            // A list of numbers is one per-channel radius; a list of lists is a sweep of them.
            let all_lists = elems.iter().all(|(v, _)| matches!(v, Some(Value::List(_))));
            if all_lists {
                for (v, span) in elems {
                    let Some(Value::List(cs)) = v else {
                        unreachable!()
                    };
                    let rs: Vec<Option<Exact>> = cs.iter().map(|c| self.epsilon(c, span)).collect();
                    match rs.into_iter().collect::<Option<Vec<_>>>() {
                        Some(rs) => eps.push(Epsilon::PerChannel(rs)),
                        None => ok = false,
                    }
                }
            } else {
                let rs: Vec<Option<Exact>> = elems
                    .iter()
                    .map(|(v, span)| v.as_ref().and_then(|v| self.epsilon(v, *span)))
                    .collect();
                match rs.into_iter().collect::<Option<Vec<_>>>() {
                    Some(rs) => eps.push(Epsilon::PerChannel(rs)),
                    None => ok = false,
                }
            }
        } else {
            for (v, span) in elems {
                match v.as_ref().and_then(|v| self.epsilon(v, span)) {
                    Some(e) => eps.push(Epsilon::Uniform(e)),
                    None => ok = false,
                }
            }
        }
        if !ok {
            return None;
        }
        Some(CheckedPerturbation {
            name: p.name.name.clone(),
            span: p.span,
            kind: match p.kind {
                ast::PerturbationKind::Universal => PerturbationKind::Universal,
                ast::PerturbationKind::Samplewise => PerturbationKind::Samplewise,
            },
            eps,
        })
    }

    fn epsilon(&mut self, v: &Value, span: Span) -> Option<Exact> {
        match v {
            Value::Num(r) if r.num < 0 => {
                self.error(
                    Diagnostic::error("E0205", format!("ε must not be negative, found {r}"))
                        .with_primary(span, "negative radius")
                        .with_help("ε is the radius of the ℓ∞ ball, in pixel units (e.g. 8/255)"),
                );
                None
            }
            Value::Num(r) => match Exact::from_rational(*r) {
                Some(e) => Some(e),
                None => {
                    self.error(
                        Diagnostic::error("E0203", "ε does not fit a 64-bit fraction")
                            .with_primary(span, "too large"),
                    );
                    None
                }
            },
            other => {
                self.error(
                    Diagnostic::error(
                        "E0206",
                        format!("ε must be a number, found {}", other.type_name()),
                    )
                    .with_primary(span, "not a number")
                    .with_help(
                        "write ε as an exact fraction such as 8/255, or a list [2/255, 4/255]",
                    ),
                );
                None
            }
        }
    }

    // ---------------------------------------------------------------- properties

    fn property(&mut self, module: usize, p: &ast::PropertyDecl) {
        let nets: Vec<Option<usize>> = p
            .networks
            .iter()
            .map(|n| {
                self.lookup_kind(module, n, "network")
                    .and_then(|r| self.network(r))
            })
            .collect();
        let data = self
            .lookup_kind(module, &p.dataset, "dataset")
            .and_then(|r| self.dataset(r));
        let pert = self
            .lookup_kind(module, &p.perturbation, "perturbation")
            .and_then(|r| self.perturbation(r));
        let options = self.options(module, &p.options);
        let nets: Option<Vec<usize>> = nets.into_iter().collect();
        let (Some(nets), Some(data), Some(pert), Some(options)) = (nets, data, pert, options)
        else {
            return;
        };
        let dataset = &self.program.datasets[data];
        let mut errors = Vec::new();
        if let (false, Some(list)) = (p.classwise, p.network_list) {
            errors.push(
                Diagnostic::error(
                    "E0114",
                    "a list of networks is only for `certify classwise accuracy`",
                )
                .with_primary(list, "certified accuracy is of one network")
                .with_help("write one property per network, or make this a class-wise scan"),
            );
        }
        let first = &self.program.networks[nets[0]];
        for (ident, &net) in p.networks.iter().zip(&nets).skip(1) {
            let network = &self.program.networks[net];
            if network.num_classes != first.num_classes {
                errors.push(
                    Diagnostic::error(
                        "E0114",
                        format!(
                            "network `{}` has {} classes but `{}` has {}",
                            network.name, network.num_classes, first.name, first.num_classes
                        ),
                    )
                    .with_primary(ident.span, "every network of a scan needs the same classes"),
                );
            }
        }
        if !p.classwise && !dataset.labeled {
            errors.push(
                Diagnostic::error("E0113", format!("dataset `{}` has no labels", dataset.name))
                    .with_primary(p.dataset.span, "certified accuracy needs labelled samples")
                    .with_help(
                        "noise inputs are for `certify classwise accuracy` (the backdoor scan)",
                    ),
            );
        }
        for (ident, &net) in p.networks.iter().zip(&nets) {
            errors.extend(self.property_network_errors(p, ident, net, data, pert));
        }
        let ok = errors.is_empty();
        for d in errors {
            self.error(d);
        }
        if ok {
            self.program.properties.push(CheckedProperty {
                name: p.name.name.clone(),
                span: p.span,
                kind: if p.classwise {
                    PropertyKind::Classwise
                } else {
                    PropertyKind::Accuracy
                },
                networks: nets,
                dataset: data,
                perturbation: pert,
                options,
            });
        }
    }

    /// What makes one network unfit for a property's dataset and perturbation.
    fn property_network_errors(
        &self,
        p: &ast::PropertyDecl,
        ident: &ast::Ident,
        net: usize,
        data: usize,
        pert: usize,
    ) -> Vec<Diagnostic> {
        let network = &self.program.networks[net];
        let dataset = &self.program.datasets[data];
        let perturbation = &self.program.perturbations[pert];
        let mut errors = Vec::new();
        if network.graph.is_none() {
            errors.push(
                Diagnostic::error(
                    "E0310",
                    format!("network `{}` has no weights", network.name),
                )
                .with_primary(ident.span, "cannot be certified without weights")
                .with_secondary(network.span, "declared here without `weights`")
                .with_help("add `weights \"file.safetensors\"` to the network declaration"),
            );
        }
        if dataset.data.shape != network.input_shape {
            errors.push(
                Diagnostic::error(
                    "E0218",
                    format!(
                        "dataset `{}` has samples of shape {} but network `{}` expects {}",
                        dataset.name,
                        value::shape_str(&dataset.data.shape),
                        network.name,
                        value::shape_str(&network.input_shape)
                    ),
                )
                .with_primary(p.dataset.span, "shape does not match the network input")
                .with_secondary(dataset.span, "dataset declared here")
                .with_secondary(network.span, "network declared here"),
            );
        }
        if let Some((i, &label)) = dataset
            .data
            .labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l >= network.num_classes)
        {
            errors.push(
                Diagnostic::error(
                    "E0308",
                    format!(
                        "label {label} of sample {i} in `{}` is out of range: network `{}` has {} classes",
                        dataset.name, network.name, network.num_classes
                    ),
                )
                .with_primary(p.dataset.span, "labels must be below the class count")
                .with_secondary(dataset.span, "dataset declared here"),
            );
        }
        let channels = network.input_shape.first().copied().unwrap_or(0);
        for e in &perturbation.eps {
            if let Epsilon::PerChannel(v) = e {
                if v.len() != channels {
                    errors.push(
                        Diagnostic::error(
                            "E0219",
                            format!(
                                "per-channel ε has {} values but network `{}` has {channels} input channels",
                                v.len(),
                                network.name
                            ),
                        )
                        .with_primary(p.perturbation.span, "channel count differs")
                        .with_secondary(perturbation.span, "perturbation declared here"),
                    );
                    break;
                }
            }
        }
        errors
    }

    fn options(&mut self, module: usize, entries: &[ast::OptionEntry]) -> Option<PropertyOptions> {
        const KEYS: &[&str] = &["bounds", "solver", "confidence", "compare", "attacks"];
        let mut o = PropertyOptions::default();
        let mut seen: HashMap<String, Span> = HashMap::new();
        let mut ok = true;
        for e in entries {
            let key = e.key.name.as_str();
            if let Some(prev) = seen.insert(key.to_string(), e.key.span) {
                self.error(
                    Diagnostic::error("E0111", format!("option `{key}` is given twice"))
                        .with_primary(e.key.span, "repeated")
                        .with_secondary(prev, "first given here"),
                );
                ok = false;
                continue;
            }
            let r = match key {
                "bounds" => self.opt_bounds(module, &e.value).map(|b| o.bounds = b),
                "solver" => self.opt_solver(module, &e.value).map(|s| o.solver = s),
                "confidence" => self.opt_confidence(module, &e.value).map(|c| {
                    o.xi = (c.den - c.num) as f64 / c.den as f64;
                    o.confidence = c;
                }),
                "compare" => match &e.value {
                    ast::OptValue::Word {
                        word, args: None, ..
                    } if word.name == "samplewise" => {
                        o.compare_samplewise = true;
                        Some(())
                    }
                    ast::OptValue::Word {
                        word, args: None, ..
                    } if word.name == "none" => Some(()),
                    v => self.bad_option(v.span(), "compare", &["samplewise", "none"]),
                },
                "attacks" => self.opt_attacks(&e.value).map(|a| o.attacks = a),
                _ => {
                    let mut d = Diagnostic::error("E0111", format!("unknown option `{key}`"))
                        .with_primary(e.key.span, "not a property option")
                        .with_note(format!("options: {}", KEYS.join(", ")));
                    if let Some(s) = closest(key, KEYS.iter().copied()) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    }
                    self.error(d);
                    None
                }
            };
            ok &= r.is_some();
        }
        ok.then_some(o)
    }

    fn bad_option<T>(&mut self, span: Span, key: &str, allowed: &[&str]) -> Option<T> {
        let list: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
        self.error(
            Diagnostic::error("E0112", format!("invalid value for option `{key}`"))
                .with_primary(span, format!("expected one of {}", list.join(", "))),
        );
        None
    }

    fn opt_bounds(&mut self, module: usize, v: &ast::OptValue) -> Option<BoundsOption> {
        const ALLOWED: &[&str] = &["ibp", "crown", "alpha-crown"];
        let ast::OptValue::Word { word, args, .. } = v else {
            return self.bad_option(v.span(), "bounds", ALLOWED);
        };
        match (word.name.as_str(), args) {
            ("ibp", None) => Some(BoundsOption::Ibp),
            ("crown", None) => Some(BoundsOption::Crown),
            ("alpha-crown", args) => {
                let mut iterations = 20;
                let mut learning_rate = 0.1;
                for a in args.iter().flatten() {
                    let val = self.eval(module, &a.value, &Locals::new())?;
                    match a.name.as_ref().map(|n| n.name.as_str()) {
                        Some("iterations") => {
                            iterations = self.as_positive(&val, a.value.span, "iterations")?
                        }
                        Some("lr") => match val {
                            Value::Num(r) if r.num > 0 => learning_rate = r.to_f64(),
                            _ => {
                                return self.bad_option(a.value.span, "lr", &["a positive number"])
                            }
                        },
                        _ => {
                            return self.bad_option(
                                a.span,
                                "alpha-crown",
                                &["iterations: N", "lr: X"],
                            )
                        }
                    }
                }
                Some(BoundsOption::AlphaCrown {
                    iterations,
                    learning_rate,
                })
            }
            _ => self.bad_option(v.span(), "bounds", ALLOWED),
        }
    }

    fn opt_solver(&mut self, module: usize, v: &ast::OptValue) -> Option<SolverOption> {
        const ALLOWED: &[&str] = &["microlp(time_limit: 60s)", "highs(time_limit: 60s)"];
        let ast::OptValue::Word { word, args, .. } = v else {
            return self.bad_option(v.span(), "solver", ALLOWED);
        };
        let kind = match word.name.as_str() {
            "microlp" => SolverKind::Microlp,
            "highs" => SolverKind::Highs,
            _ => return self.bad_option(v.span(), "solver", ALLOWED),
        };
        let mut time_limit = Duration::from_secs(60);
        for a in args.iter().flatten() {
            if a.name.as_ref().map(|n| n.name.as_str()) != Some("time_limit") {
                return self.bad_option(a.span, "solver", ALLOWED);
            }
            match self.eval(module, &a.value, &Locals::new())? {
                Value::Duration(r) if r.num > 0 => {
                    time_limit = Duration::from_secs_f64(r.to_f64().min(1e9))
                }
                _ => {
                    return self.bad_option(
                        a.value.span,
                        "time_limit",
                        &["a positive duration like 60s"],
                    )
                }
            }
        }
        Some(SolverOption { kind, time_limit })
    }

    fn opt_confidence(&mut self, module: usize, v: &ast::OptValue) -> Option<Exact> {
        let val = match v {
            ast::OptValue::Expr(e) => self.eval(module, e, &Locals::new())?,
            ast::OptValue::Word {
                word, args: None, ..
            } => {
                let e = ast::Expr {
                    kind: ast::ExprKind::Name(word.name.clone()),
                    span: word.span,
                };
                self.eval(module, &e, &Locals::new())?
            }
            _ => return self.bad_option(v.span(), "confidence", &["a number in (0, 1)"]),
        };
        match val {
            Value::Num(r) if r.num > 0 && r.num < r.den => match Exact::from_rational(r) {
                Some(e) => Some(e),
                None => self.bad_option(v.span(), "confidence", &["a number in (0, 1)"]),
            },
            _ => self.bad_option(v.span(), "confidence", &["a number in (0, 1)"]),
        }
    }

    fn opt_attacks(&mut self, v: &ast::OptValue) -> Option<Vec<Attack>> {
        const ALLOWED: &[&str] = &["pgd", "df_uap", "cos_uap", "adv_uap", "samplewise_pgd"];
        let ast::OptValue::List { items, .. } = v else {
            return self.bad_option(v.span(), "attacks", &["a list such as [pgd, df_uap]"]);
        };
        let mut out = Vec::new();
        for i in items {
            let a = match i {
                ast::OptValue::Word {
                    word, args: None, ..
                } => match word.name.as_str() {
                    "pgd" => Some(Attack::Pgd),
                    "df_uap" => Some(Attack::DfUap),
                    "cos_uap" => Some(Attack::CosUap),
                    "adv_uap" => Some(Attack::AdvUap),
                    "samplewise_pgd" => Some(Attack::SamplewisePgd),
                    _ => None,
                },
                _ => None,
            };
            match a {
                Some(a) if !out.contains(&a) => out.push(a),
                Some(_) => {}
                None => return self.bad_option(i.span(), "attacks", ALLOWED),
            }
        }
        Some(out)
    }
}

/// The candidate closest to `name` by edit distance, if reasonably close.
pub(super) fn closest<'s>(
    name: &str,
    candidates: impl Iterator<Item = &'s str>,
) -> Option<&'s str> {
    let limit = (name.len() / 3).max(1);
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}
