//! The CUDA device: NVRTC compiles the emitted source, the driver API launches it, cuBLAS does
//! the linear layers' back-substitution. Libraries are loaded at run time, so a machine without
//! CUDA gets an error here, never a failed build or a crash.

use super::{DeviceBuffer, KernelDevice, KernelSource, LaunchArgs};
use crate::engine::EngineError;
use cudarc::cublas::{result as blas_result, sys as blas_sys, CudaBlas};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::{compile_ptx_with_opts, CompileOptions};
use std::collections::HashMap;
use std::sync::Arc;

/// Threads per block of every launch.
const BLOCK: u32 = 256;

enum Slice {
    Real(CudaSlice<f64>),
    /// Held only to keep the allocation alive until freed.
    #[allow(dead_code)]
    Index(CudaSlice<i64>),
}

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: Option<CudaBlas>,
    modules: Vec<HashMap<String, CudaFunction>>,
    slots: Vec<Option<Slice>>,
    free_slots: Vec<usize>,
    name: String,
    /// Per kernel: launches and seconds, when `UPCC_PROFILE` is set (each launch synchronises).
    profile: Option<HashMap<String, (usize, f64)>>,
}

fn device_error(what: &str, e: impl std::fmt::Debug) -> EngineError {
    EngineError::Device(format!("{what}: {e:?}"))
}

impl CudaDevice {
    /// Opens device 0. Fails with a message when the driver, NVRTC or a device is missing.
    pub fn open() -> Result<Self, EngineError> {
        // SAFETY: only probes whether the shared libraries can be loaded.
        let (driver, nvrtc) = unsafe {
            (
                cudarc::driver::sys::is_culib_present(),
                cudarc::nvrtc::sys::is_culib_present(),
            )
        };
        if !driver {
            return Err(EngineError::Device(
                "no CUDA driver was found (libcuda could not be loaded)".into(),
            ));
        }
        if !nvrtc {
            return Err(EngineError::Device(
                "the CUDA runtime compiler NVRTC was not found (libnvrtc could not be loaded); \
                 add the CUDA toolkit's lib64 folder to LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let ctx =
            CudaContext::new(0).map_err(|e| device_error("no CUDA device could be opened", e))?;
        let stream = ctx.default_stream();
        // SAFETY: one stream orders every launch and copy, so per-slice events are not needed.
        unsafe { ctx.disable_event_tracking() };
        // SAFETY: probe only. `UPCC_CUBLAS=0` runs the emitted linear kernels instead.
        let wanted = std::env::var("UPCC_CUBLAS").map_or(true, |v| v != "0");
        let blas = if wanted && unsafe { blas_sys::is_culib_present() } {
            CudaBlas::new(stream.clone()).ok()
        } else {
            None
        };
        let name = ctx.name().unwrap_or_else(|_| "CUDA device".into());
        Ok(CudaDevice {
            ctx,
            stream,
            blas,
            modules: Vec::new(),
            slots: Vec::new(),
            free_slots: Vec::new(),
            name,
            profile: std::env::var_os("UPCC_PROFILE").map(|_| HashMap::new()),
        })
    }

    fn put(&mut self, slice: Slice, addr: u64, len: usize) -> DeviceBuffer {
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.slots[s] = Some(slice);
                s
            }
            None => {
                self.slots.push(Some(slice));
                self.slots.len() - 1
            }
        };
        DeviceBuffer { addr, len, slot }
    }

    fn real(&mut self, slice: CudaSlice<f64>) -> DeviceBuffer {
        let len = slice.len();
        let addr = slice.device_ptr(&self.stream).0;
        self.put(Slice::Real(slice), addr, len)
    }
}

impl CudaDevice {
    /// Adds a launch's time to the profile (synchronising first), when profiling.
    fn record(&mut self, kernel: &str, started: std::time::Instant) -> Result<(), EngineError> {
        let Some(profile) = self.profile.as_mut() else {
            return Ok(());
        };
        self.stream
            .synchronize()
            .map_err(|e| device_error(&format!("running `{kernel}`"), e))?;
        let entry = profile.entry(kernel.to_string()).or_default();
        entry.0 += 1;
        entry.1 += started.elapsed().as_secs_f64();
        Ok(())
    }
}

impl Drop for CudaDevice {
    fn drop(&mut self) {
        if let Some(profile) = &self.profile {
            let mut rows: Vec<_> = profile.iter().collect();
            rows.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
            eprintln!("UPCC_PROFILE: kernel, launches, seconds");
            for (name, (count, secs)) in rows.iter().take(25) {
                eprintln!("  {name:<16} {count:>7} {secs:>9.3}");
            }
        }
    }
}

impl KernelDevice for CudaDevice {
    fn describe(&self) -> String {
        let blas = if self.blas.is_some() {
            "cuBLAS"
        } else {
            "no cuBLAS"
        };
        format!("{} (CUDA, {blas})", self.name)
    }

    fn memory_budget(&self) -> usize {
        let _ = self.ctx.bind_to_thread();
        match cudarc::driver::result::mem_get_info() {
            // Leave room for the CUDA context, cuBLAS workspace and fragmentation.
            Ok((free, _)) => free / 10 * 6,
            Err(_) => 1 << 30,
        }
    }

    fn load(&mut self, source: &KernelSource) -> Result<usize, EngineError> {
        let options = CompileOptions {
            name: Some("upcc_kernels.cu".into()),
            ..CompileOptions::default()
        };
        let ptx = compile_ptx_with_opts(&source.source, options)
            .map_err(|e| device_error("NVRTC could not compile the emitted kernels", e))?;
        let module = self
            .ctx
            .load_module(ptx)
            .map_err(|e| device_error("loading the compiled kernels", e))?;
        let mut functions = HashMap::new();
        for name in &source.kernels {
            let f = module
                .load_function(name)
                .map_err(|e| device_error(&format!("kernel `{name}`"), e))?;
            functions.insert(name.clone(), f);
        }
        self.modules.push(functions);
        Ok(self.modules.len() - 1)
    }

    fn alloc(&mut self, len: usize) -> Result<DeviceBuffer, EngineError> {
        let slice = self
            .stream
            .alloc_zeros::<f64>(len)
            .map_err(|e| device_error(&format!("allocating {len} doubles"), e))?;
        Ok(self.real(slice))
    }

    fn alloc_output(&mut self, len: usize) -> Result<DeviceBuffer, EngineError> {
        // SAFETY: the engine only asks for this when the next kernel writes every element.
        let slice = unsafe { self.stream.alloc::<f64>(len) }
            .map_err(|e| device_error(&format!("allocating {len} doubles"), e))?;
        Ok(self.real(slice))
    }

    fn upload(&mut self, data: &[f64]) -> Result<DeviceBuffer, EngineError> {
        let slice = self
            .stream
            .clone_htod(data)
            .map_err(|e| device_error("copying to the device", e))?;
        Ok(self.real(slice))
    }

    fn upload_index(&mut self, data: &[i64]) -> Result<DeviceBuffer, EngineError> {
        let slice = self
            .stream
            .clone_htod(data)
            .map_err(|e| device_error("copying to the device", e))?;
        let len = slice.len();
        let addr = slice.device_ptr(&self.stream).0;
        Ok(self.put(Slice::Index(slice), addr, len))
    }

    fn download(&mut self, buffer: &DeviceBuffer) -> Result<Vec<f64>, EngineError> {
        match &self.slots[buffer.slot] {
            Some(Slice::Real(s)) => self
                .stream
                .clone_dtoh(s)
                .map_err(|e| device_error("copying from the device", e)),
            _ => Err(EngineError::Device("download of a non-f64 buffer".into())),
        }
    }

    fn free(&mut self, buffer: DeviceBuffer) {
        if self.slots[buffer.slot].take().is_some() {
            self.free_slots.push(buffer.slot);
        }
    }

    fn launch(&mut self, module: usize, kernel: &str, args: LaunchArgs) -> Result<(), EngineError> {
        let f = self.modules[module]
            .get(kernel)
            .ok_or_else(|| EngineError::Device(format!("no kernel `{kernel}`")))?;
        let blocks = (args.total as u64).div_ceil(BLOCK as u64);
        let grid = u32::try_from(blocks)
            .map_err(|_| EngineError::Device(format!("`{kernel}`: grid of {blocks} blocks")))?;
        let config = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let started = std::time::Instant::now();
        let mut builder = self.stream.launch_builder(f);
        for p in &args.pointers {
            builder.arg(p);
        }
        builder.arg(&args.idx).arg(&args.cols).arg(&args.total);
        // SAFETY: every pointer is a live allocation of this device sized by the engine's plan,
        // and the argument list matches the kernel ABI.
        unsafe { builder.launch(config) }
            .map_err(|e| device_error(&format!("launching `{kernel}`"), e))?;
        self.record(kernel, started)
    }

    fn gemm_nt(
        &mut self,
        m: usize,
        n: usize,
        k: usize,
        a: u64,
        lda: usize,
        b: u64,
        ldb: usize,
        c: u64,
        ldc: usize,
    ) -> Result<bool, EngineError> {
        let Some(blas) = &self.blas else {
            return Ok(false);
        };
        let dims: Result<Vec<i32>, _> = [m, n, k, lda, ldb, ldc]
            .iter()
            .map(|&v| i32::try_from(v))
            .collect();
        let Ok(dims) = dims else {
            return Ok(false);
        };
        let (alpha, beta) = (1.0f64, 0.0f64);
        let started = std::time::Instant::now();
        // SAFETY: a, b, c are live device allocations of at least lda·k, ldb·k and ldc·n doubles.
        unsafe {
            blas_result::dgemm(
                *blas.handle(),
                blas_sys::cublasOperation_t::CUBLAS_OP_N,
                blas_sys::cublasOperation_t::CUBLAS_OP_T,
                dims[0],
                dims[1],
                dims[2],
                &alpha,
                a as *const f64,
                dims[3],
                b as *const f64,
                dims[4],
                &beta,
                c as *mut f64,
                dims[5],
            )
        }
        .map_err(|e| device_error("cuBLAS dgemm", e))?;
        self.record("cublas_dgemm", started)?;
        Ok(true)
    }
}
