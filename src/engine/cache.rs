//! Intermediate-bound caching. The intermediate bounds of one (network, sample, δ box, method
//! family) are computed once and shared by universal and sample-wise certification and by every
//! property of a run; optionally they persist on disk, keyed by content hashes. A disk entry is
//! trusted only if its magic, version, key, shapes and checksum all match; anything else is
//! ignored and rebuilt.

use super::cpu::Interval;
use super::EngineError;
use super::{DeltaBox, RowPrecision};
use crate::ir::{dump, Graph, Op};
use ndarray::{Array1, ArrayView2};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Pre-activation bounds of every ReLU (and the output interval) of one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Intermediate {
    pub(crate) bounds: Vec<Option<Interval>>,
}

pub type CacheKey = [u8; 32];

const MAGIC: &[u8; 8] = b"UPCCIB01";

/// Counters, for reports and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: usize,
    pub disk_hits: usize,
    pub computed: usize,
    /// Disk entries found corrupt or stale and rebuilt.
    pub rejected: usize,
}

#[derive(Default)]
pub struct BoundCache {
    enabled: bool,
    memory: Mutex<HashMap<CacheKey, Arc<Intermediate>>>,
    dir: Option<PathBuf>,
    memory_hits: AtomicUsize,
    disk_hits: AtomicUsize,
    computed: AtomicUsize,
    rejected: AtomicUsize,
}

impl BoundCache {
    /// No caching at all (`--no-cache`).
    pub fn disabled() -> Self {
        BoundCache::default()
    }

    /// Reuse within this process.
    pub fn in_memory() -> Self {
        BoundCache {
            enabled: true,
            ..BoundCache::default()
        }
    }

    /// Reuse within this process and across runs through files in `dir` (created if needed).
    pub fn on_disk(dir: impl Into<PathBuf>) -> Self {
        BoundCache {
            enabled: true,
            dir: Some(dir.into()),
            ..BoundCache::default()
        }
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            memory_hits: self.memory_hits.load(Ordering::Relaxed),
            disk_hits: self.disk_hits.load(Ordering::Relaxed),
            computed: self.computed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
        }
    }

    /// One key per sample; `None` when caching is disabled.
    pub(crate) fn keys(
        &self,
        graph: &Graph,
        inputs: ArrayView2<f64>,
        delta: &DeltaBox,
        crown: bool,
        rows: RowPrecision,
    ) -> Option<Vec<CacheKey>> {
        if !self.enabled {
            return None;
        }
        let mut base = Sha256::new();
        // Entries written by another upcc version are never trusted.
        base.update(env!("CARGO_PKG_VERSION").as_bytes());
        base.update(graph_hash(graph));
        base.update(if crown { b"crown" } else { b"ibp__" });
        base.update(rows.name().as_bytes());
        hash_f64s(&mut base, delta.lo.iter());
        hash_f64s(&mut base, delta.hi.iter());
        Some(
            inputs
                .rows()
                .into_iter()
                .map(|x| {
                    let mut h = base.clone();
                    hash_f64s(&mut h, x.iter());
                    h.finalize().into()
                })
                .collect(),
        )
    }

    pub(crate) fn get_or_compute(
        &self,
        key: Option<&CacheKey>,
        graph: &Graph,
        compute: impl FnOnce() -> Result<Intermediate, EngineError>,
    ) -> Result<Arc<Intermediate>, EngineError> {
        let Some(key) = key else {
            return compute().map(Arc::new);
        };
        if let Some(hit) = self.lookup(key, graph) {
            return Ok(hit);
        }
        Ok(self.store(key, compute()?))
    }

    /// The entry for `key` from memory, else from disk (a bad disk entry counts as rejected).
    pub(crate) fn lookup(&self, key: &CacheKey, graph: &Graph) -> Option<Arc<Intermediate>> {
        if let Some(hit) = self.memory.lock().expect("cache lock").get(key) {
            self.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Some(hit.clone());
        }
        let dir = self.dir.as_ref()?;
        match read_entry(&entry_path(dir, key), key, graph) {
            Some(found) => {
                self.disk_hits.fetch_add(1, Ordering::Relaxed);
                let found = Arc::new(found);
                self.memory
                    .lock()
                    .expect("cache lock")
                    .insert(*key, found.clone());
                Some(found)
            }
            None => {
                if entry_path(dir, key).exists() {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                }
                None
            }
        }
    }

    /// Records a freshly computed entry in memory and, when enabled, on disk.
    pub(crate) fn store(&self, key: &CacheKey, value: Intermediate) -> Arc<Intermediate> {
        let value = Arc::new(value);
        self.computed.fetch_add(1, Ordering::Relaxed);
        if let Some(dir) = &self.dir {
            // A cache that cannot be written only costs time; never an error.
            let _ = write_entry(dir, key, &value);
        }
        self.memory
            .lock()
            .expect("cache lock")
            .insert(*key, value.clone());
        value
    }
}

fn hash_f64s<'a>(h: &mut Sha256, values: impl Iterator<Item = &'a f64>) {
    for v in values {
        h.update(v.to_le_bytes());
    }
}

/// Content hash of a graph: structure (the dump) and every parameter bit.
pub fn graph_hash(graph: &Graph) -> CacheKey {
    let mut h = Sha256::new();
    h.update(dump(graph).as_bytes());
    for node in &graph.nodes {
        match &node.op {
            Op::Linear { weight, bias } => {
                hash_f64s(&mut h, weight.iter());
                hash_f64s(&mut h, bias.iter());
            }
            Op::Conv2d { weight, bias, .. } => {
                hash_f64s(&mut h, weight.iter());
                hash_f64s(&mut h, bias.iter());
            }
            Op::ChannelAffine { scale, shift } => {
                hash_f64s(&mut h, scale.iter());
                hash_f64s(&mut h, shift.iter());
            }
            _ => {}
        }
    }
    h.finalize().into()
}

fn entry_path(dir: &Path, key: &CacheKey) -> PathBuf {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("{hex}.bounds"))
}

/// Layout: MAGIC, key, node count, then per node a present flag, length and l/u values (f64
/// LE), then the SHA-256 of everything before it.
fn encode(key: &CacheKey, value: &Intermediate) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.bounds.len() as u64).to_le_bytes());
    for b in &value.bounds {
        match b {
            None => out.push(0),
            Some((l, u)) => {
                out.push(1);
                out.extend_from_slice(&(l.len() as u64).to_le_bytes());
                for v in l.iter().chain(u.iter()) {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn f64s(&mut self, n: usize) -> Option<Array1<f64>> {
        let raw = self.take(n.checked_mul(8)?)?;
        let v: Array1<f64> = raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        v.iter().all(|x| x.is_finite()).then_some(v)
    }
}

/// Decodes an entry, or `None` when it is corrupt, truncated or does not fit `graph` and `key`.
fn decode(bytes: &[u8], key: &CacheKey, graph: &Graph) -> Option<Intermediate> {
    if bytes.len() < 32 {
        return None;
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != digest {
        return None;
    }
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    if r.take(8)? != MAGIC || r.take(32)? != key {
        return None;
    }
    let count = r.u64()? as usize;
    if count != graph.nodes.len() {
        return None;
    }
    let mut bounds = Vec::with_capacity(count);
    for node in &graph.nodes {
        match r.take(1)?[0] {
            0 => bounds.push(None),
            1 => {
                let len = r.u64()? as usize;
                if len != node.numel() {
                    return None;
                }
                let l = r.f64s(len)?;
                let u = r.f64s(len)?;
                bounds.push(Some((l, u)));
            }
            _ => return None,
        }
    }
    (r.pos == body.len()).then_some(Intermediate { bounds })
}

fn read_entry(path: &Path, key: &CacheKey, graph: &Graph) -> Option<Intermediate> {
    decode(&std::fs::read(path).ok()?, key, graph)
}

fn write_entry(dir: &Path, key: &CacheKey, value: &Intermediate) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = entry_path(dir, key);
    // Unique per process and per write, so parallel writers of one key never share a temp file.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, encode(key, value))?;
    std::fs::rename(tmp, path)
}
