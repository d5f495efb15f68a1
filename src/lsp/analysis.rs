//! One open document: its text, the latest front-end diagnostics, and the last good analysis
//! (AST and checked program) that hover, definition, symbols and completion answer from.

use super::text::{offset_of, position_of, word_at};
use crate::diagnostics::{codes, Diagnostic, Severity};
use crate::semantics::loader::{normalize, std_module, STD_MODULES};
use crate::semantics::{check_source, CheckedProgram, Loader};
use crate::source::{SourceId, SourceMap, Span};
use crate::syntax::{ast, parse, KEYWORDS};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Built-in layers and dataset sources, for completion and hover: the checker's own lists.
pub use crate::semantics::{BUILTIN_LAYERS as LAYERS, DATASET_SOURCES as SOURCES};
/// Words that are keywords only in context (perturbation and property clauses), not reserved.
pub const CONTEXTUAL_KEYWORDS: &[&str] = &[
    "input",
    "universal",
    "samplewise",
    "linf",
    "eps",
    "per_channel",
    "accuracy",
    "classwise",
    "of",
    "on",
    "under",
];

/// Words the editor offers and names as keywords: the reserved words, then the contextual ones.
fn keywords() -> impl Iterator<Item = &'static str> {
    KEYWORDS.iter().chain(CONTEXTUAL_KEYWORDS).copied()
}

/// A place in a file: path (`None` = the document itself) and LSP range.
#[derive(Clone, Debug, PartialEq)]
pub struct Place {
    pub file: PlaceFile,
    pub start: (u32, u32),
    pub end: (u32, u32),
}

#[derive(Clone, Debug, PartialEq)]
pub enum PlaceFile {
    /// The analysed document.
    This,
    /// A file on disk (or an open document) at this path.
    Path(PathBuf),
    /// An embedded standard-library module (`nets`, `data`).
    Std(String),
}

/// A diagnostic converted to LSP ranges, with the text the editor shows.
#[derive(Clone, Debug, PartialEq)]
pub struct EditorDiagnostic {
    pub start: (u32, u32),
    pub end: (u32, u32),
    pub severity: Severity,
    pub code: &'static str,
    /// Message, then `help:` and `note:` lines as the CLI prints them.
    pub message: String,
    /// Secondary labels (and primary labels outside this document).
    pub related: Vec<(Place, String)>,
}

/// What the last successful parse and check produced.
#[derive(Clone, Debug, Default)]
struct GoodAnalysis {
    /// The text the AST spans refer to.
    text: String,
    file: Option<ast::File>,
    program: Option<CheckedProgram>,
}

pub struct Document {
    pub path: PathBuf,
    pub text: String,
    pub diagnostics: Vec<EditorDiagnostic>,
    good: GoodAnalysis,
}

impl Document {
    pub fn new(path: PathBuf, text: String) -> Self {
        Document {
            path,
            text,
            diagnostics: Vec::new(),
            good: GoodAnalysis::default(),
        }
    }

    /// Re-checks the current text; `loader` serves imported `.upc` files. Diagnostics always
    /// reflect the current text; the AST and program are replaced only when they are good.
    pub fn analyze(&mut self, loader: &dyn Loader) {
        if let Ok(file) = parse(SourceId(0), &self.text) {
            self.good.text = self.text.clone();
            self.good.file = Some(file);
        }
        let overlay = Overlay {
            root: normalize(&self.path),
            text: &self.text,
            inner: loader,
        };
        let (sources, result) = check_source(&self.path, &overlay);
        let diags = match result {
            Ok(program) => {
                let warnings = program.warnings.clone();
                // The program's spans refer to this text: keep both together.
                self.good.text = self.text.clone();
                if let Ok(file) = parse(SourceId(0), &self.text) {
                    self.good.file = Some(file);
                }
                self.good.program = Some(program);
                warnings
            }
            Err(d) => d.items,
        };
        let root = root_source(&sources, &self.path);
        self.diagnostics = diags
            .iter()
            .map(|d| convert(&sources, root, d, &self.text))
            .collect();
    }

    /// Markdown hover text at an LSP position.
    pub fn hover(&self, line: u32, character: u32) -> Option<String> {
        let mut parts = Vec::new();
        for d in &self.diagnostics {
            if (d.start..=d.end).contains(&(line, character)) {
                if let Some(text) = codes::explain(d.code) {
                    parts.push(format!("```text\n{}```", text));
                }
            }
        }
        if let Some(word) = self.word(line, character) {
            if let Some(text) = self.describe(&word, offset_of(&self.text, line, character)) {
                parts.insert(0, text);
            }
        }
        (!parts.is_empty()).then(|| parts.join("\n\n---\n\n"))
    }

    fn word(&self, line: u32, character: u32) -> Option<String> {
        let offset = offset_of(&self.text, line, character);
        word_at(&self.text, offset).map(|(a, b)| self.text[a..b].to_string())
    }

    /// Where the name (or `use` module) under the position is defined.
    pub fn definition(&self, line: u32, character: u32, loader: &dyn Loader) -> Option<Place> {
        let offset = offset_of(&self.text, line, character);
        let file = self.good.file.as_ref()?;
        // On a `use` module reference: the module itself.
        for item in &file.items {
            if let ast::Item::Use(u) = item {
                let span = match &u.module {
                    ast::ModuleRef::Std(id) => id.span,
                    ast::ModuleRef::File(s) => s.span,
                };
                if contains(span, offset) {
                    return Some(Place {
                        file: self.module_file(&u.module)?,
                        start: (0, 0),
                        end: (0, 0),
                    });
                }
            }
        }
        let word = self.word(line, character)?;
        self.resolve(&word, offset, loader)
    }

    fn resolve(&self, name: &str, offset: usize, loader: &dyn Loader) -> Option<Place> {
        let file = self.good.file.as_ref()?;
        let here = |span: Span| self.place(PlaceFile::This, &self.good.text, span);
        if let Some(block) = enclosing_block(file, offset) {
            if let Some(p) = block.params.iter().find(|p| p.name == name) {
                return Some(here(p.span));
            }
            for stmt in &block.body {
                if let ast::Stmt::Layer(l) = stmt {
                    if let Some(n) = l.name.as_ref().filter(|n| n.name == name) {
                        return Some(here(n.span));
                    }
                }
            }
        }
        if let Some(n) = file
            .items
            .iter()
            .filter_map(|i| i.name())
            .find(|n| n.name == name)
        {
            return Some(here(n.span));
        }
        for item in &file.items {
            let ast::Item::Use(u) = item else { continue };
            let imported = match &u.items {
                ast::UseItems::All => true,
                ast::UseItems::Names(names) => names.iter().any(|n| n.name == name),
            };
            if !imported {
                continue;
            }
            let Some(target) = self.module_file(&u.module) else {
                continue;
            };
            let text = match &target {
                PlaceFile::Std(m) => std_module(m).map(str::to_string),
                PlaceFile::Path(p) => loader.read(p).ok(),
                PlaceFile::This => None,
            };
            let Some(text) = text else { continue };
            let Ok(module) = parse(SourceId(0), &text) else {
                continue;
            };
            if let Some(n) = module
                .items
                .iter()
                .filter_map(|i| i.name())
                .find(|n| n.name == name)
            {
                return Some(self.place(target, &text, n.span));
            }
        }
        None
    }

    fn module_file(&self, module: &ast::ModuleRef) -> Option<PlaceFile> {
        match module {
            ast::ModuleRef::Std(id) => STD_MODULES
                .contains(&id.name.as_str())
                .then(|| PlaceFile::Std(id.name.clone())),
            ast::ModuleRef::File(s) => {
                let dir = self.path.parent().unwrap_or(Path::new(""));
                Some(PlaceFile::Path(normalize(&dir.join(&s.value))))
            }
        }
    }

    fn place(&self, file: PlaceFile, text: &str, span: Span) -> Place {
        Place {
            file,
            start: position_of(text, span.start),
            end: position_of(text, span.end),
        }
    }

    /// Hover text for a name: shapes and signatures from the last good program.
    fn describe(&self, word: &str, offset: usize) -> Option<String> {
        let file = self.good.file.as_ref()?;
        let program = self.good.program.as_ref();
        if let Some(block) = enclosing_block(file, offset) {
            let is_layer = block.body.iter().any(|s| {
                matches!(s, ast::Stmt::Layer(l) if l.name.as_ref().is_some_and(|n| n.name == word))
            });
            if is_layer {
                return Some(self.describe_layer(file, program, &block.name.name, word));
            }
            if block.params.iter().any(|p| p.name == word) {
                return Some(format!("parameter `{word}` of block `{}`", block.name.name));
            }
        }
        let item = file
            .items
            .iter()
            .find(|i| i.name().is_some_and(|n| n.name == word));
        if let Some(program) = program {
            if let Some(net) = program.networks.iter().find(|n| n.name == word) {
                return Some(format!(
                    "```upc\nnetwork {}: {} → [{}]\n```\n{} layers, {} parameters, {} ReLUs",
                    net.name,
                    shape(&net.input_shape),
                    net.num_classes,
                    net.layers.len(),
                    net.parameter_count(),
                    net.relu_count()
                ));
            }
            if let Some(d) = program.datasets.iter().find(|d| d.name == word) {
                return Some(format!(
                    "dataset `{}`: {} samples of shape {}",
                    d.name,
                    d.len(),
                    shape(&d.data.shape)
                ));
            }
            if let Some(p) = program.perturbations.iter().find(|p| p.name == word) {
                return Some(format!(
                    "perturbation `{}`: {:?} ℓ∞, {} radius/radii",
                    p.name,
                    p.kind,
                    p.eps.len()
                ));
            }
        }
        // A block (local or imported): the signature of the networks built from it.
        let users: Vec<String> = file
            .items
            .iter()
            .filter_map(|i| match i {
                ast::Item::Network(n) if n.model.callee.name == word => Some(n.name.name.clone()),
                _ => None,
            })
            .filter_map(|n| {
                let net = program?.networks.iter().find(|x| x.name == n)?;
                Some(format!(
                    "{} → [{}] (as `{}`)",
                    shape(&net.input_shape),
                    net.num_classes,
                    net.name
                ))
            })
            .collect();
        if !users.is_empty() {
            return Some(format!("```upc\nblock {word}\n```\n{}", users.join("\n\n")));
        }
        if let Some(item) = item {
            return Some(format!("{} `{word}`", item.kind_word()));
        }
        if LAYERS.contains(&word) {
            return Some(format!("built-in layer `{word}`"));
        }
        if keywords().any(|k| k == word) {
            return Some(format!("keyword `{word}`"));
        }
        None
    }

    fn describe_layer(
        &self,
        file: &ast::File,
        program: Option<&CheckedProgram>,
        block: &str,
        layer: &str,
    ) -> String {
        let mut lines = Vec::new();
        for net in program.map(|p| p.networks.as_slice()).unwrap_or(&[]) {
            let direct = file.items.iter().any(|i| {
                matches!(i, ast::Item::Network(n) if n.name.name == net.name && n.model.callee.name == block)
            });
            let suffix = format!(".{layer}");
            for l in &net.layers {
                if (direct && l.name == layer) || (!direct && l.name.ends_with(&suffix)) {
                    lines.push(format!(
                        "`{}` in `{}`: {} → {}",
                        l.name,
                        net.name,
                        l.kind,
                        shape(&l.shape)
                    ));
                }
            }
        }
        if lines.is_empty() {
            format!("layer `{layer}` of block `{block}` (no checked network uses it)")
        } else {
            format!("layer `{layer}`\n\n{}", lines.join("\n\n"))
        }
    }

    /// Outline: top-level items, with the layers of blocks as children.
    pub fn symbols(&self) -> Vec<Symbol> {
        let Some(file) = &self.good.file else {
            return Vec::new();
        };
        let text = &self.good.text;
        let range = |s: Span| (position_of(text, s.start), position_of(text, s.end));
        file.items
            .iter()
            .filter_map(|item| {
                let name = item.name()?;
                let (span, children) = match item {
                    ast::Item::Use(_) => return None,
                    ast::Item::Const(d) => (d.span, Vec::new()),
                    ast::Item::Network(d) => (d.span, Vec::new()),
                    ast::Item::Dataset(d) => (d.span, Vec::new()),
                    ast::Item::Perturbation(d) => (d.span, Vec::new()),
                    ast::Item::Property(d) => (d.span, Vec::new()),
                    ast::Item::Block(b) => (
                        b.span,
                        b.body
                            .iter()
                            .filter_map(|s| match s {
                                ast::Stmt::Layer(l) => l.name.as_ref().map(|n| Symbol {
                                    name: n.name.clone(),
                                    kind: "layer",
                                    range: range(l.span),
                                    selection: range(n.span),
                                    children: Vec::new(),
                                }),
                                ast::Stmt::Input { .. } => None,
                            })
                            .collect(),
                    ),
                };
                Some(Symbol {
                    name: name.name.clone(),
                    kind: item.kind_word(),
                    range: range(span),
                    selection: range(name.span),
                    children,
                })
            })
            .collect()
    }

    /// Completion candidates: keywords, built-in layers and sources, and every name in scope.
    pub fn completions(&self, loader: &dyn Loader) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> = Vec::new();
        out.extend(keywords().map(|k| (k.to_string(), "keyword")));
        out.extend(LAYERS.iter().map(|k| (k.to_string(), "layer")));
        out.extend(SOURCES.iter().map(|k| (k.to_string(), "source")));
        if let Some(file) = &self.good.file {
            for item in &file.items {
                if let Some(n) = item.name() {
                    out.push((n.name.clone(), item.kind_word()));
                }
                if let ast::Item::Use(u) = item {
                    match &u.items {
                        ast::UseItems::Names(names) => {
                            out.extend(names.iter().map(|n| (n.name.clone(), "import")))
                        }
                        ast::UseItems::All => out.extend(self.module_names(&u.module, loader)),
                    }
                }
            }
        }
        let mut seen = HashMap::new();
        out.retain(|(n, _)| seen.insert(n.clone(), ()).is_none());
        out
    }

    fn module_names(
        &self,
        module: &ast::ModuleRef,
        loader: &dyn Loader,
    ) -> Vec<(String, &'static str)> {
        let text = match self.module_file(module) {
            Some(PlaceFile::Std(m)) => std_module(&m).map(str::to_string),
            Some(PlaceFile::Path(p)) => loader.read(&p).ok(),
            _ => None,
        };
        let Some(Ok(file)) = text.map(|t| parse(SourceId(0), &t)) else {
            return Vec::new();
        };
        file.items
            .iter()
            .filter_map(|i| Some((i.name()?.name.clone(), i.kind_word())))
            .collect()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Symbol {
    pub name: String,
    pub kind: &'static str,
    pub range: ((u32, u32), (u32, u32)),
    pub selection: ((u32, u32), (u32, u32)),
    pub children: Vec<Symbol>,
}

fn shape(dims: &[usize]) -> String {
    let inner: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", inner.join(", "))
}

fn contains(span: Span, offset: usize) -> bool {
    span.start <= offset && offset <= span.end
}

fn enclosing_block(file: &ast::File, offset: usize) -> Option<&ast::BlockDecl> {
    file.items.iter().find_map(|i| match i {
        ast::Item::Block(b) if contains(b.span, offset) => Some(b),
        _ => None,
    })
}

/// The source id of the document in the check's source map (the first file, by path).
fn root_source(sources: &SourceMap, path: &Path) -> SourceId {
    let want = normalize(path);
    sources
        .files()
        .find(|(_, f)| f.path.as_deref().map(normalize).as_ref() == Some(&want))
        .map_or(SourceId(0), |(id, _)| id)
}

fn source_place(sources: &SourceMap, root: SourceId, span: Span) -> Place {
    let file = if span.source == root {
        PlaceFile::This
    } else {
        let f = sources.get(span.source);
        match &f.path {
            Some(p) => PlaceFile::Path(p.clone()),
            None => PlaceFile::Std(
                f.name
                    .trim_start_matches("<stdlib>/")
                    .trim_end_matches(".upc")
                    .to_string(),
            ),
        }
    };
    Place {
        file,
        start: sources.lsp_position(span.source, span.start),
        end: sources.lsp_position(span.source, span.end),
    }
}

fn convert(sources: &SourceMap, root: SourceId, d: &Diagnostic, text: &str) -> EditorDiagnostic {
    let valid = |s: &Span| (s.source.0 as usize) < sources.files().count();
    let primary = d.labels.iter().find(|l| l.primary && valid(&l.span));
    let (start, end) = match primary {
        Some(l) if l.span.source == root => (
            sources.lsp_position(root, l.span.start),
            sources.lsp_position(root, l.span.end),
        ),
        // Errors without a place in this document sit at its start.
        _ => (
            (0, 0),
            position_of(text, text.find('\n').unwrap_or(text.len())),
        ),
    };
    let mut message = d.message.clone();
    if let Some(l) = primary.filter(|l| !l.message.is_empty()) {
        message.push_str(&format!("\n{}", l.message));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    for note in &d.notes {
        message.push_str(&format!("\nnote: {note}"));
    }
    let related = d
        .labels
        .iter()
        .filter(|l| valid(&l.span) && (!l.primary || l.span.source != root))
        .map(|l| (source_place(sources, root, l.span), l.message.clone()))
        .collect();
    EditorDiagnostic {
        start,
        end,
        severity: d.severity,
        code: d.code,
        message,
        related,
    }
}

/// Serves the document's current text for its own path, everything else from `inner`.
struct Overlay<'a> {
    root: PathBuf,
    text: &'a str,
    inner: &'a dyn Loader,
}

impl Loader for Overlay<'_> {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        if normalize(path) == self.root {
            Ok(self.text.to_string())
        } else {
            self.inner.read(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::MemoryLoader;

    const LIB: &str = "block mlp(w) {\n    input [4]\n    fc1 = linear(4, w)\n    act = relu\n    fc2 = linear(w, 2) from act\n}\n";
    const MAIN: &str = "use \"lib.upc\"::{mlp}\nconst width = 8\nnetwork net = mlp(width)\n";

    fn doc(text: &str) -> (Document, MemoryLoader) {
        let loader = MemoryLoader::default().with("/p/lib.upc", LIB);
        let mut d = Document::new(PathBuf::from("/p/main.upc"), text.to_string());
        d.analyze(&loader);
        (d, loader)
    }

    #[test]
    fn file_imports_resolve_and_networks_have_signatures() {
        let (d, loader) = doc(MAIN);
        assert_eq!(d.diagnostics, Vec::new());
        // `mlp` in `network net = mlp(width)` → lib.upc line 0, `mlp` at columns 6..9.
        let place = d.definition(2, 15, &loader).unwrap();
        assert_eq!(place.file, PlaceFile::Path(PathBuf::from("/p/lib.upc")));
        assert_eq!((place.start, place.end), ((0, 6), (0, 9)));
        // `width` → the constant.
        let place = d.definition(2, 19, &loader).unwrap();
        assert_eq!((place.file, place.start), (PlaceFile::This, (1, 6)));
        // The module string of the `use` → the file itself.
        let place = d.definition(0, 7, &loader).unwrap();
        assert_eq!(place.file, PlaceFile::Path(PathBuf::from("/p/lib.upc")));
        let hover = d.hover(2, 9).unwrap();
        assert!(hover.contains("network net: [4] → [2]"), "{hover}");
        // 4·8 + 8 + 8·2 + 2 weights and biases.
        assert!(hover.contains("58 parameters"), "{hover}");
    }

    #[test]
    fn errors_in_imported_files_point_there() {
        let loader = MemoryLoader::default().with("/p/lib.upc", LIB.replace("relu", "reluu"));
        let mut d = Document::new(PathBuf::from("/p/main.upc"), MAIN.to_string());
        d.analyze(&loader);
        assert!(!d.diagnostics.is_empty());
        let in_lib = d.diagnostics.iter().find(|x| {
            x.related.iter().any(|(p, _)| {
                p.file == PlaceFile::Path(PathBuf::from("/p/lib.upc")) && p.start == (3, 10)
            })
        });
        assert!(in_lib.is_some(), "{:?}", d.diagnostics);
    }

    #[test]
    fn layers_inside_blocks_resolve_locally() {
        let text = format!("{LIB}network net = mlp(3)\n");
        let (d, loader) = doc(&text);
        assert_eq!(d.diagnostics, Vec::new());
        // `act` after `from` on line 4 → the layer statement on line 3.
        let place = d.definition(4, 30, &loader).unwrap();
        assert_eq!(
            (place.file, place.start, place.end),
            (PlaceFile::This, (3, 4), (3, 7))
        );
        // `w` → the block parameter.
        let place = d.definition(2, 21, &loader).unwrap();
        assert_eq!(place.start, (0, 10));
        let hover = d.hover(2, 5).unwrap();
        assert!(hover.contains("`fc1` in `net`: linear → [3]"), "{hover}");
        let symbols = d.symbols();
        assert_eq!(symbols[0].name, "mlp");
        let layers: Vec<_> = symbols[0]
            .children
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(layers, ["fc1", "act", "fc2"]);
    }
}
