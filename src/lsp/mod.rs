//! `upcc lsp`: a Language Server Protocol server over stdio.
//!
//! Incremental text sync (UTF-16 ranges), diagnostics from the front end on open and change,
//! hover (shapes, network signatures, diagnostic codes), go-to-definition (names, `use`
//! imports, the standard library, which is written to a temp directory so editors can open
//! it), document symbols and completion. A request that panics is answered with an error and
//! the server keeps running on the last good analysis.

pub mod analysis;
pub mod text;

pub use analysis::{Document, EditorDiagnostic, Place, PlaceFile};

use crate::diagnostics::Severity;
use crate::semantics::loader::{normalize, std_module, STD_MODULES};
use crate::semantics::{FsLoader, Loader};
use lsp_server::{Connection, ErrorCode, Message, Notification, Request, Response};
use lsp_types as lt;
use serde_json::Value;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// Runs the server on stdin/stdout until `exit`.
pub fn run_stdio() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (connection, io_threads) = Connection::stdio();
    let capabilities = serde_json::to_value(capabilities())?;
    connection.initialize(capabilities)?;
    let mut server = Server::new();
    for msg in &connection.receiver {
        match msg {
            Message::Request(req) => {
                if connection.handle_shutdown(&req)? {
                    break;
                }
                let id = req.id.clone();
                let response = match catch_unwind(AssertUnwindSafe(|| server.request(req))) {
                    Ok(r) => r,
                    Err(_) => Response::new_err(
                        id,
                        ErrorCode::InternalError as i32,
                        "internal error while answering".into(),
                    ),
                };
                connection.sender.send(Message::Response(response))?;
            }
            Message::Notification(n) => {
                let published =
                    catch_unwind(AssertUnwindSafe(|| server.notification(n))).unwrap_or_default();
                for p in published {
                    connection.sender.send(Message::Notification(p))?;
                }
            }
            Message::Response(_) => {}
        }
    }
    drop(connection);
    io_threads.join()?;
    Ok(())
}

pub fn capabilities() -> lt::ServerCapabilities {
    lt::ServerCapabilities {
        text_document_sync: Some(lt::TextDocumentSyncCapability::Kind(
            lt::TextDocumentSyncKind::INCREMENTAL,
        )),
        hover_provider: Some(lt::HoverProviderCapability::Simple(true)),
        definition_provider: Some(lt::OneOf::Left(true)),
        document_symbol_provider: Some(lt::OneOf::Left(true)),
        completion_provider: Some(lt::CompletionOptions::default()),
        position_encoding: Some(lt::PositionEncodingKind::UTF16),
        ..Default::default()
    }
}

/// Open documents keyed by URI text.
pub struct Server {
    docs: HashMap<String, Document>,
    std_dir: Option<PathBuf>,
}

impl Default for Server {
    fn default() -> Self {
        Self::new()
    }
}

impl Server {
    pub fn new() -> Self {
        Server {
            docs: HashMap::new(),
            std_dir: write_stdlib(),
        }
    }

    /// Handles a notification; returns the diagnostics to publish.
    pub fn notification(&mut self, n: Notification) -> Vec<Notification> {
        let uri = match n.method.as_str() {
            "textDocument/didOpen" => {
                let Ok(p) = serde_json::from_value::<lt::DidOpenTextDocumentParams>(n.params)
                else {
                    return Vec::new();
                };
                let key = p.text_document.uri.as_str().to_string();
                let doc = Document::new(uri_to_path(&key), p.text_document.text);
                self.docs.insert(key.clone(), doc);
                key
            }
            "textDocument/didChange" => {
                let Ok(p) = serde_json::from_value::<lt::DidChangeTextDocumentParams>(n.params)
                else {
                    return Vec::new();
                };
                let key = p.text_document.uri.as_str().to_string();
                let Some(doc) = self.docs.get_mut(&key) else {
                    return Vec::new();
                };
                for change in p.content_changes {
                    match change.range {
                        Some(r) => text::apply_edit(
                            &mut doc.text,
                            (r.start.line, r.start.character),
                            (r.end.line, r.end.character),
                            &change.text,
                        ),
                        None => doc.text = change.text,
                    }
                }
                key
            }
            "textDocument/didClose" => {
                if let Ok(p) = serde_json::from_value::<lt::DidCloseTextDocumentParams>(n.params) {
                    let key = p.text_document.uri.as_str().to_string();
                    self.docs.remove(&key);
                    return vec![publish(&key, Vec::new())];
                }
                return Vec::new();
            }
            _ => return Vec::new(),
        };
        self.reanalyze(&uri);
        // Open documents that may import this one (their text names its file) are re-checked too.
        let file_name = self.docs[&uri]
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut dependents: Vec<String> = self
            .docs
            .iter()
            .filter(|(k, d)| **k != uri && !file_name.is_empty() && d.text.contains(&file_name))
            .map(|(k, _)| k.clone())
            .collect();
        dependents.sort();
        for other in &dependents {
            self.reanalyze(other);
        }
        std::iter::once(&uri)
            .chain(&dependents)
            .map(|key| {
                let diagnostics = self.docs[key]
                    .diagnostics
                    .iter()
                    .map(|d| self.to_lsp_diagnostic(key, d))
                    .collect();
                publish(key, diagnostics)
            })
            .collect()
    }

    fn reanalyze(&mut self, uri: &str) {
        let Some(mut doc) = self.docs.remove(uri) else {
            return;
        };
        doc.analyze(&OpenDocs(&self.docs));
        self.docs.insert(uri.to_string(), doc);
    }

    /// Answers a request (never panics on bad parameters: those get an error response).
    pub fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        let result = match req.method.as_str() {
            "textDocument/hover" => self.with_position(req.params, |_, _, doc, pos| {
                let text = doc.hover(pos.line, pos.character)?;
                serde_json::to_value(lt::Hover {
                    contents: lt::HoverContents::Markup(lt::MarkupContent {
                        kind: lt::MarkupKind::Markdown,
                        value: text,
                    }),
                    range: None,
                })
                .ok()
            }),
            "textDocument/definition" => self.with_position(req.params, |s, uri, doc, pos| {
                let loader = OpenDocs(&s.docs);
                let place = doc.definition(pos.line, pos.character, &loader)?;
                let location = s.location(uri, &place)?;
                serde_json::to_value(lt::GotoDefinitionResponse::Scalar(location)).ok()
            }),
            "textDocument/documentSymbol" => {
                match serde_json::from_value::<lt::DocumentSymbolParams>(req.params) {
                    Ok(p) => Ok(self
                        .docs
                        .get(p.text_document.uri.as_str())
                        .map(|d| {
                            let symbols: Vec<lt::DocumentSymbol> =
                                d.symbols().iter().map(to_lsp_symbol).collect();
                            serde_json::to_value(lt::DocumentSymbolResponse::Nested(symbols))
                                .unwrap_or(Value::Null)
                        })
                        .unwrap_or(Value::Null)),
                    Err(e) => Err(e.to_string()),
                }
            }
            "textDocument/completion" => self.with_position(req.params, |s, _, doc, _| {
                let items: Vec<lt::CompletionItem> = doc
                    .completions(&OpenDocs(&s.docs))
                    .into_iter()
                    .map(|(label, kind)| lt::CompletionItem {
                        label,
                        kind: Some(completion_kind(kind)),
                        detail: Some(kind.to_string()),
                        ..Default::default()
                    })
                    .collect();
                serde_json::to_value(lt::CompletionResponse::Array(items)).ok()
            }),
            _ => {
                return Response::new_err(
                    id,
                    ErrorCode::MethodNotFound as i32,
                    format!("unsupported request `{}`", req.method),
                )
            }
        };
        match result {
            Ok(v) => Response::new_ok(id, v),
            Err(e) => Response::new_err(id, ErrorCode::InvalidParams as i32, e),
        }
    }

    fn with_position(
        &self,
        params: Value,
        f: impl FnOnce(&Server, &str, &Document, lt::Position) -> Option<Value>,
    ) -> Result<Value, String> {
        let p: lt::TextDocumentPositionParams =
            serde_json::from_value(params).map_err(|e| e.to_string())?;
        let uri = p.text_document.uri.as_str();
        Ok(self
            .docs
            .get(uri)
            .and_then(|doc| f(self, uri, doc, p.position))
            .unwrap_or(Value::Null))
    }

    fn location(&self, this_uri: &str, place: &Place) -> Option<lt::Location> {
        let uri = match &place.file {
            PlaceFile::This => this_uri.to_string(),
            PlaceFile::Path(p) => path_to_uri(p),
            PlaceFile::Std(m) => path_to_uri(&self.std_dir.as_ref()?.join(format!("{m}.upc"))),
        };
        Some(lt::Location {
            uri: uri.parse().ok()?,
            range: range(place.start, place.end),
        })
    }

    fn to_lsp_diagnostic(&self, uri: &str, d: &EditorDiagnostic) -> lt::Diagnostic {
        let related: Vec<lt::DiagnosticRelatedInformation> = d
            .related
            .iter()
            .filter_map(|(place, message)| {
                Some(lt::DiagnosticRelatedInformation {
                    location: self.location(uri, place)?,
                    message: if message.is_empty() {
                        "related".into()
                    } else {
                        message.clone()
                    },
                })
            })
            .collect();
        lt::Diagnostic {
            range: range(d.start, d.end),
            severity: Some(match d.severity {
                Severity::Error => lt::DiagnosticSeverity::ERROR,
                Severity::Warning => lt::DiagnosticSeverity::WARNING,
                Severity::Note => lt::DiagnosticSeverity::INFORMATION,
            }),
            code: Some(lt::NumberOrString::String(d.code.to_string())),
            source: Some("upcc".into()),
            message: d.message.clone(),
            related_information: (!related.is_empty()).then_some(related),
            ..Default::default()
        }
    }
}

fn publish(uri: &str, diagnostics: Vec<lt::Diagnostic>) -> Notification {
    let params = serde_json::json!({ "uri": uri, "diagnostics": diagnostics });
    Notification::new("textDocument/publishDiagnostics".into(), params)
}

fn range(start: (u32, u32), end: (u32, u32)) -> lt::Range {
    lt::Range::new(
        lt::Position::new(start.0, start.1),
        lt::Position::new(end.0, end.1),
    )
}

fn completion_kind(kind: &str) -> lt::CompletionItemKind {
    match kind {
        "keyword" => lt::CompletionItemKind::KEYWORD,
        "layer" | "source" => lt::CompletionItemKind::FUNCTION,
        "block" => lt::CompletionItemKind::CLASS,
        "constant" => lt::CompletionItemKind::CONSTANT,
        "import" => lt::CompletionItemKind::REFERENCE,
        _ => lt::CompletionItemKind::VARIABLE,
    }
}

#[allow(deprecated)]
fn to_lsp_symbol(s: &analysis::Symbol) -> lt::DocumentSymbol {
    lt::DocumentSymbol {
        name: s.name.clone(),
        detail: Some(s.kind.to_string()),
        kind: match s.kind {
            "block" => lt::SymbolKind::CLASS,
            "network" => lt::SymbolKind::OBJECT,
            "constant" => lt::SymbolKind::CONSTANT,
            "layer" => lt::SymbolKind::FIELD,
            "property" => lt::SymbolKind::PROPERTY,
            _ => lt::SymbolKind::VARIABLE,
        },
        tags: None,
        deprecated: None,
        range: range(s.range.0, s.range.1),
        selection_range: range(s.selection.0, s.selection.1),
        children: (!s.children.is_empty()).then(|| s.children.iter().map(to_lsp_symbol).collect()),
    }
}

/// Open documents first, then the disk.
struct OpenDocs<'a>(&'a HashMap<String, Document>);

impl Loader for OpenDocs<'_> {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        let want = normalize(path);
        match self.0.values().find(|d| normalize(&d.path) == want) {
            Some(d) => Ok(d.text.clone()),
            None => FsLoader.read(path),
        }
    }
}

/// Writes the embedded stdlib under the temp directory (for go-to-definition targets).
fn write_stdlib() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("upcc-std-{}", env!("CARGO_PKG_VERSION")));
    std::fs::create_dir_all(&dir).ok()?;
    for m in STD_MODULES {
        let file = dir.join(format!("{m}.upc"));
        let text = std_module(m)?;
        if std::fs::read_to_string(&file).ok().as_deref() != Some(text) {
            std::fs::write(&file, text).ok()?;
        }
    }
    Some(dir)
}

/// `file:///a/b%20c.upc` → `/a/b c.upc`; other schemes keep their text as a relative path.
pub fn uri_to_path(uri: &str) -> PathBuf {
    match uri.strip_prefix("file://") {
        Some(rest) => PathBuf::from(percent_decode(rest)),
        None => PathBuf::from(uri.replace([':', '/'], "_")),
    }
}

pub fn path_to_uri(path: &Path) -> String {
    let mut out = String::from("file://");
    let text = path.to_string_lossy();
    if !text.starts_with('/') {
        out.push('/');
    }
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        let p = Path::new("/tmp/a b/ü.upc");
        let uri = path_to_uri(p);
        assert_eq!(uri, "file:///tmp/a%20b/%C3%BC.upc");
        assert_eq!(uri_to_path(&uri), p);
        assert_eq!(uri_to_path("file:///x%2"), Path::new("/x%2"));
    }
}
