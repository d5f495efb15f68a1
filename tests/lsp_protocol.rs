//! Drives `upcc lsp` over stdio with Content-Length framing and checks every reply.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

struct Client {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Client {
    fn start() -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_upcc"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn upcc lsp");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, messages) = channel();
        std::thread::spawn(move || loop {
            let mut length = None;
            loop {
                let mut line = String::new();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(n) = line.strip_prefix("Content-Length: ") {
                    length = n.parse::<usize>().ok();
                }
            }
            let mut body = vec![0; length.expect("Content-Length header")];
            if stdout.read_exact(&mut body).is_err() {
                return;
            }
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        });
        Client {
            child,
            stdin,
            messages,
            next_id: 1,
        }
    }

    fn send(&mut self, msg: Value) {
        let body = msg.to_string();
        write!(self.stdin, "Content-Length: {}\r\n\r\n{}", body.len(), body).unwrap();
        self.stdin.flush().unwrap();
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its response (notifications in between are skipped).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let msg = self.recv();
            if msg["id"] == json!(id) {
                return msg;
            }
        }
    }

    fn recv(&mut self) -> Value {
        self.messages
            .recv_timeout(Duration::from_secs(60))
            .expect("server answered")
    }

    /// The next publishDiagnostics notification.
    fn diagnostics(&mut self) -> Value {
        loop {
            let msg = self.recv();
            if msg["method"] == "textDocument/publishDiagnostics" {
                return msg["params"].clone();
            }
        }
    }
}

const BROKEN: &str = "// é𝔸 UTF-16 test
use std::nets::conv_small

block tiny() {
    input [1, 4, 4]
    flat = flatten
    fc = linear(16, 3)
}

network small = tiny()
const label = \"é𝔸\" network big = conv_smal()
";

const URI: &str = "file:///nonexistent-upcc-lsp-test/a.upc";

fn pos(line: u32, character: u32) -> Value {
    json!({"line": line, "character": character})
}

fn at(line: u32, character: u32) -> Value {
    json!({"textDocument": {"uri": URI}, "position": pos(line, character)})
}

#[test]
fn initialize_diagnose_fix_hover_definition_shutdown() {
    let mut c = Client::start();
    let init = c.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    let caps = &init["result"]["capabilities"];
    assert_eq!(caps["textDocumentSync"], json!(2), "incremental sync");
    assert_eq!(caps["hoverProvider"], json!(true));
    assert_eq!(caps["definitionProvider"], json!(true));
    c.notify("initialized", json!({}));

    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "upc", "version": 1, "text": BROKEN}}),
    );
    let published = c.diagnostics();
    assert_eq!(published["uri"], URI);
    let diags = published["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["code"], "E0101");
    assert_eq!(d["severity"], 1);
    // UTF-16 columns: `"é𝔸"` is 5 units (7 bytes) before `conv_smal`.
    assert_eq!(d["range"]["start"], pos(10, 34));
    assert_eq!(d["range"]["end"], pos(10, 43));
    let message = d["message"].as_str().unwrap();
    assert!(message.starts_with("cannot find `conv_smal` in this scope"));
    assert!(message.contains("help: did you mean `conv_small`?"));

    // Hover on the diagnostic explains its code.
    let hover = c.request("textDocument/hover", at(10, 36));
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(text.contains("E0101"), "{text}");

    // Insert the missing `l` (an incremental edit at UTF-16 column 43).
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2},
               "contentChanges": [{"range": {"start": pos(10, 43), "end": pos(10, 43)}, "text": "l"}]}),
    );
    let fixed = c.diagnostics();
    assert_eq!(fixed["diagnostics"], json!([]), "{fixed}");

    // Hover on a network: its signature.
    let hover = c.request("textDocument/hover", at(10, 36));
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(text.contains("[1, 28, 28] → [10]"), "{text}");
    let hover = c.request("textDocument/hover", at(9, 9));
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(text.contains("network small: [1, 4, 4] → [3]"), "{text}");
    // Hover on a layer: its inferred shape.
    let hover = c.request("textDocument/hover", at(5, 5));
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(text.contains("`flat` in `small`: reshape → [16]"), "{text}");
    let hover = c.request("textDocument/hover", at(6, 5));
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(text.contains("`fc` in `small`: linear → [3]"), "{text}");

    // Definition of a local block.
    let def = c.request("textDocument/definition", at(9, 17));
    assert_eq!(def["result"]["uri"], URI);
    assert_eq!(def["result"]["range"]["start"], pos(3, 6));
    assert_eq!(def["result"]["range"]["end"], pos(3, 10));
    // Definition of a stdlib block through its `use`: a file holding the stdlib text.
    let def = c.request("textDocument/definition", at(10, 36));
    let uri = def["result"]["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("file://") && uri.ends_with("/nets.upc"),
        "{uri}"
    );
    let path = uri.strip_prefix("file://").unwrap();
    let stdlib = std::fs::read_to_string(path).unwrap();
    let line = def["result"]["range"]["start"]["line"].as_u64().unwrap() as usize;
    assert!(stdlib
        .lines()
        .nth(line)
        .unwrap()
        .contains("block conv_small()"));
    // Definition on the `use` line's imported name goes to the same place.
    let def2 = c.request("textDocument/definition", at(1, 18));
    assert_eq!(def2["result"], def["result"]);

    // Document symbols list the items, blocks with their layers.
    let symbols = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": URI}}),
    );
    let names: Vec<&str> = symbols["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["tiny", "small", "label", "big"]);
    assert_eq!(symbols["result"][0]["children"][1]["name"], "fc");

    // Completion offers keywords, layers and names in scope.
    let completion = c.request("textDocument/completion", at(6, 4));
    let labels: Vec<&str> = completion["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["label"].as_str().unwrap())
        .collect();
    for want in ["network", "conv2d", "relu", "tiny", "conv_small"] {
        assert!(labels.contains(&want), "{want} missing from {labels:?}");
    }

    // Breaking the file again: new diagnostics, and hover still answers from the last good analysis.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 3},
               "contentChanges": [{"range": {"start": pos(6, 0), "end": pos(6, 0)}, "text": "    oops = = (\n"}]}),
    );
    let broken = c.diagnostics();
    assert!(!broken["diagnostics"].as_array().unwrap().is_empty());
    let hover = c.request("textDocument/hover", at(10, 9));
    let text = hover["result"]["contents"]["value"].as_str().unwrap();
    assert!(text.contains("network small: [1, 4, 4] → [3]"), "{text}");

    let shutdown = c.request("shutdown", Value::Null);
    assert_eq!(shutdown["result"], Value::Null);
    assert!(shutdown.get("error").is_none());
    c.notify("exit", Value::Null);
    let status = c.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

mod random_edits {
    use super::*;
    use proptest::prelude::*;

    const FRAGMENTS: &[&str] = &[
        "",
        "l",
        "\n",
        "(",
        ")",
        "{",
        "}",
        "[",
        "]",
        "\"",
        "é",
        "𝔸",
        "conv2d(1, 2, kernel: 3)",
        "network n = tiny()",
        "use std::nets::*",
        "use \"missing.upc\"",
        "block b(x) {",
        "99999999999999999999",
        "input [0]",
        " from flat",
        "//",
        "relu",
        "=",
        ",",
    ];

    fn edit() -> impl Strategy<Value = (u32, u32, u32, u32, usize)> {
        (0u32..14, 0u32..50, 0u32..14, 0u32..50, 0..FRAGMENTS.len())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

        /// Random range edits (any positions, also past line ends or inside surrogate pairs)
        /// never kill the server: every edit gets diagnostics and requests keep being answered.
        #[test]
        fn server_survives_random_edits(edits in prop::collection::vec(edit(), 1..25)) {
            let mut c = Client::start();
            c.request("initialize", json!({"processId": null, "rootUri": null, "capabilities": {}}));
            c.notify("initialized", json!({}));
            c.notify("textDocument/didOpen", json!({"textDocument":
                {"uri": URI, "languageId": "upc", "version": 1, "text": BROKEN}}));
            c.diagnostics();
            for (version, (l1, c1, l2, c2, f)) in edits.into_iter().enumerate() {
                c.notify("textDocument/didChange", json!({
                    "textDocument": {"uri": URI, "version": version + 2},
                    "contentChanges": [{"range": {"start": pos(l1, c1), "end": pos(l2, c2)},
                                        "text": FRAGMENTS[f]}]}));
                let published = c.diagnostics();
                prop_assert!(published["diagnostics"].is_array());
                for method in ["textDocument/hover", "textDocument/definition", "textDocument/completion"] {
                    let reply = c.request(method, at(l1, c1));
                    prop_assert!(reply.get("error").is_none(), "{method}: {reply}");
                }
            }
            let symbols = c.request("textDocument/documentSymbol", json!({"textDocument": {"uri": URI}}));
            prop_assert!(symbols.get("error").is_none());
            c.request("shutdown", Value::Null);
            c.notify("exit", Value::Null);
            prop_assert!(c.child.wait().unwrap().success());
        }
    }
}

/// Editing an open file re-checks the open files that import it.
#[test]
fn importers_are_rechecked_when_an_import_changes() {
    let lib_uri = "file:///nonexistent-upcc-lsp-test/lib.upc";
    let main_uri = "file:///nonexistent-upcc-lsp-test/main.upc";
    let mut c = Client::start();
    c.request(
        "initialize",
        json!({"processId": null, "rootUri": null, "capabilities": {}}),
    );
    c.notify("initialized", json!({}));
    let lib = "block mlp() {\n    input [4]\n    fc = linear(4, 2)\n}\n";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": lib_uri, "languageId": "upc", "version": 1, "text": lib}}),
    );
    assert_eq!(c.diagnostics()["diagnostics"], json!([]));
    let main = "use \"lib.upc\"::{mlp}\nnetwork net = mlp()\n";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": main_uri, "languageId": "upc", "version": 1, "text": main}}),
    );
    let published = c.diagnostics();
    assert_eq!(published["uri"], main_uri);
    assert_eq!(published["diagnostics"], json!([]));
    // Rename the block in lib.upc: main.upc's import breaks.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": lib_uri, "version": 2},
               "contentChanges": [{"range": {"start": pos(0, 6), "end": pos(0, 9)}, "text": "mlp2"}]}),
    );
    let first = c.diagnostics();
    assert_eq!(first["uri"], lib_uri);
    assert_eq!(first["diagnostics"], json!([]));
    let second = c.diagnostics();
    assert_eq!(second["uri"], main_uri);
    assert!(
        !second["diagnostics"].as_array().unwrap().is_empty(),
        "{second}"
    );
    c.request("shutdown", Value::Null);
    c.notify("exit", Value::Null);
    assert!(c.child.wait().unwrap().success());
}
