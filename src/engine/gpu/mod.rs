//! The kernel back end: bound propagation as kernels emitted from the IR, run on a
//! [`KernelDevice`]. The CUDA device (feature `cuda` or `cuda-12`) compiles them with NVRTC; tests compile the
//! same source for the host through `host_shim.h` and check it against the CPU engine, which is
//! the oracle.
//!
//! # What runs on the device
//! IBP for every node, CROWN intermediate bounds (one row per IBP-unstable neuron and sign,
//! batched over neurons and samples; rows seeded at one position of a conv are pulled back over
//! its receptive-field windows, see [`window`]), ReLU relaxation, batched back-substitution
//! (linear through cuBLAS where the device has it, convolutions transposed), concretisation, and
//! the final CROWN margin pass. α-CROWN's slope optimisation runs on the CPU from the device's intermediate bounds.
//! Arithmetic is f64 with the CPU engine's rounding margins ([`crate::engine::cpu::SAFETY_REL`]),
//! so the results agree with the CPU engine to rounding, and every bound stays sound.
//!
//! # Kernel ABI
//! Every kernel is `extern "C" __global__ void name(double* p0, …, double* p7,
//! const long long* idx, long long cols, long long total)` and runs one thread per `t < total`.
//! Tensors are feature-major: F features over `cols` columns (samples, or functional rows) put
//! element (f, c) at `f * cols + c`, so threads of consecutive columns touch consecutive memory.
//! What each pointer means is written above each kernel in [`codegen`].
//!
//! # Memory plan
//! Before a batch is launched, [`plan`] bounds its peak device memory: per sample the intervals of
//! every node, per functional row the largest set of functionals alive at once during
//! back-substitution. Samples and rows are chunked so the peak stays within the device's budget.

pub mod codegen;
#[cfg(feature = "cuda-backend")]
pub mod cuda;
pub mod plan;
mod run;
pub mod window;

pub use run::{margin_bounds_on, KernelEngine};

use super::EngineError;

/// The host shim that lets emitted kernels compile as C++ (for tests without a GPU).
pub const HOST_SHIM: &str = include_str!("host_shim.h");

/// The CUDA C source of one graph's kernels and their names.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelSource {
    pub source: String,
    pub kernels: Vec<String>,
}

/// A device allocation: `len` elements of f64 (or i64 for index buffers) at address `addr`.
#[derive(Debug)]
pub struct DeviceBuffer {
    pub addr: u64,
    pub len: usize,
    pub slot: usize,
}

/// Arguments of one launch, in the kernel ABI's order.
#[derive(Clone, Copy, Debug, Default)]
pub struct LaunchArgs {
    pub pointers: [u64; 8],
    pub idx: u64,
    pub cols: i64,
    pub total: i64,
}

/// Where the kernels run. Buffers are zero-filled on allocation; every call may fail with
/// [`EngineError::Device`].
pub trait KernelDevice {
    /// The device, in words, for reports.
    fn describe(&self) -> String;
    /// Bytes the engine may allocate at once.
    fn memory_budget(&self) -> usize;
    /// Compiles and loads one source; returns the module's handle.
    fn load(&mut self, source: &KernelSource) -> Result<usize, EngineError>;
    fn alloc(&mut self, len: usize) -> Result<DeviceBuffer, EngineError>;
    /// A buffer that the next launch overwrites in full; devices may skip the zero fill.
    fn alloc_output(&mut self, len: usize) -> Result<DeviceBuffer, EngineError> {
        self.alloc(len)
    }
    fn upload(&mut self, data: &[f64]) -> Result<DeviceBuffer, EngineError>;
    fn upload_index(&mut self, data: &[i64]) -> Result<DeviceBuffer, EngineError>;
    fn download(&mut self, buffer: &DeviceBuffer) -> Result<Vec<f64>, EngineError>;
    fn free(&mut self, buffer: DeviceBuffer);
    fn launch(&mut self, module: usize, kernel: &str, args: LaunchArgs) -> Result<(), EngineError>;
    /// Column-major `C[m×n] = A[m×k] · B[n×k]ᵀ` with leading dimensions `lda`, `ldb`, `ldc`, by a
    /// BLAS of the device; `Ok(false)` when it has none (the emitted kernel runs instead).
    #[allow(clippy::too_many_arguments)]
    fn gemm_nt(
        &mut self,
        _m: usize,
        _n: usize,
        _k: usize,
        _a: u64,
        _lda: usize,
        _b: u64,
        _ldb: usize,
        _c: u64,
        _ldc: usize,
    ) -> Result<bool, EngineError> {
        Ok(false)
    }
}

/// The device a run asks for (`upcc verify --device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    Cpu,
    /// CUDA or an error.
    Cuda,
    /// CUDA when a device is found, else the CPU.
    Auto,
}

/// The engine a run computes its bounds with.
pub enum BoundEngine {
    Cpu,
    #[cfg(feature = "cuda-backend")]
    Cuda(Box<std::sync::Mutex<KernelEngine<cuda::CudaDevice>>>),
}

impl BoundEngine {
    /// Opens the chosen device. `Err` (for `Cuda` only) says why no CUDA device can be used;
    /// the note (for `Auto`) says why the CPU was chosen.
    pub fn open(choice: DeviceChoice) -> Result<(BoundEngine, Option<String>), String> {
        if choice == DeviceChoice::Cpu {
            return Ok((BoundEngine::Cpu, None));
        }
        let why = match Self::open_cuda() {
            Ok(engine) => return Ok((engine, None)),
            Err(why) => why,
        };
        match choice {
            DeviceChoice::Cuda => Err(why),
            _ => Ok((
                BoundEngine::Cpu,
                Some(format!("{why}; using the CPU engine")),
            )),
        }
    }

    #[cfg(feature = "cuda-backend")]
    fn open_cuda() -> Result<BoundEngine, String> {
        match cuda::CudaDevice::open() {
            Ok(device) => Ok(BoundEngine::Cuda(Box::new(std::sync::Mutex::new(
                KernelEngine::new(device),
            )))),
            Err(e) => Err(match e {
                EngineError::Device(m) => m,
                other => other.to_string(),
            }),
        }
    }

    #[cfg(not(feature = "cuda-backend"))]
    fn open_cuda() -> Result<BoundEngine, String> {
        Err(
            "no CUDA device or driver can be used: this upcc was built without the `cuda` \
             feature (rebuild with `cargo build --release --features cuda`)"
                .into(),
        )
    }

    /// The device, in words.
    pub fn describe(&self) -> String {
        match self {
            BoundEngine::Cpu => format!("CPU ({} threads)", rayon::current_num_threads()),
            #[cfg(feature = "cuda-backend")]
            BoundEngine::Cuda(engine) => engine.lock().expect("engine lock").device.describe(),
        }
    }

    /// The scalar this engine's window rows are computed in when `requested`: the kernels' are
    /// always `f64`.
    pub fn window_rows(&self, requested: super::RowPrecision) -> super::RowPrecision {
        match self {
            BoundEngine::Cpu => requested,
            #[cfg(feature = "cuda-backend")]
            BoundEngine::Cuda(_) => super::RowPrecision::F64,
        }
    }

    /// [`crate::engine::cpu::margin_bounds_cached`] on this engine's device (the kernels' rows
    /// are always `f64`).
    pub fn margin_bounds_cached(
        &self,
        graph: &crate::ir::Graph,
        inputs: ndarray::ArrayView2<f64>,
        labels: &[usize],
        delta: &super::DeltaBox,
        method: &super::BoundMethod,
        (cache, rows): (&super::BoundCache, super::RowPrecision),
    ) -> Result<super::MarginBounds, EngineError> {
        match self {
            BoundEngine::Cpu => {
                let cached = (cache, rows);
                super::cpu::margin_bounds_cached(graph, inputs, labels, delta, method, cached)
            }
            #[cfg(feature = "cuda-backend")]
            BoundEngine::Cuda(engine) => {
                let mut engine = engine.lock().expect("engine lock");
                margin_bounds_on(&mut engine, graph, inputs, labels, delta, method, cache)
            }
        }
    }
}
