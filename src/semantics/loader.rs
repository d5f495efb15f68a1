//! Where `.upc` sources come from: the disk, memory (tests, editors), and the embedded stdlib.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// Reads `.upc` source files.
pub trait Loader {
    fn read(&self, path: &Path) -> std::io::Result<String>;
}

/// Reads from the file system.
pub struct FsLoader;

impl Loader for FsLoader {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

/// Serves sources from a map (paths compared after [`normalize`]).
#[derive(Default)]
pub struct MemoryLoader {
    pub files: HashMap<PathBuf, String>,
}

impl MemoryLoader {
    pub fn with(mut self, path: impl AsRef<Path>, text: impl Into<String>) -> Self {
        self.files.insert(normalize(path.as_ref()), text.into());
        self
    }
}

impl Loader for MemoryLoader {
    fn read(&self, path: &Path) -> std::io::Result<String> {
        self.files
            .get(&normalize(path))
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"))
    }
}

/// Lexically removes `.` and `..` components (no IO), so one file has one key.
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            c => out.push(c.as_os_str()),
        }
    }
    out
}

/// The embedded standard library: `use std::NAME` reads `stdlib/NAME.upc`.
pub fn std_module(name: &str) -> Option<&'static str> {
    match name {
        "nets" => Some(include_str!("../../stdlib/nets.upc")),
        "data" => Some(include_str!("../../stdlib/data.upc")),
        _ => None,
    }
}

pub const STD_MODULES: &[&str] = &["data", "nets"];
