//! ONNX Runtime: one environment per process, loaded at run time from the configured shared
//! library (`scripts/fetch-models.sh` puts it in `models/runtime/`), and sessions on the CPU or
//! on one CUDA device.
//!
//! ONNX Runtime allows a single environment per process, even after the first is dropped, so it
//! lives in a process-wide `OnceLock`; the first caller's library path wins.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::OcrError;

/// Where to run a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(u32),
}

/// How sessions are built.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    pub device: Device,
    /// Threads inside one operator; 0 lets ONNX Runtime use every core.
    pub intra_threads: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            device: Device::Cpu,
            intra_threads: 0,
        }
    }
}

/// The library path `scripts/fetch-models.sh` installs, under the models directory.
pub fn default_library(models_dir: &Path) -> PathBuf {
    models_dir.join("runtime").join("libonnxruntime.so")
}

/// The GPU build `scripts/fetch-models.sh --gpu` installs, with CUDA and cuDNN beside it.
pub fn default_gpu_library(models_dir: &Path) -> PathBuf {
    models_dir.join("runtime-gpu").join("libonnxruntime.so")
}

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
/// The directory of the loaded library: CUDA and cuDNN may sit beside it, as pip lays them out.
static LIBRARY_DIR: OnceLock<PathBuf> = OnceLock::new();
static CUDA_PRELOADED: OnceLock<Result<(), String>> = OnceLock::new();

/// Loads the CUDA and cuDNN libraries that `fetch-models.sh --gpu` put beside the runtime
/// (`nvidia/cu13/lib`, `nvidia/cudnn/lib`), once, so no `LD_LIBRARY_PATH` is needed. Where
/// they are not there, the system's are used.
fn preload_cuda() -> Result<(), OcrError> {
    let loaded = CUDA_PRELOADED.get_or_init(|| {
        let Some(dir) = LIBRARY_DIR.get() else {
            return Ok(());
        };
        let (cuda, cudnn) = (dir.join("nvidia/cu13/lib"), dir.join("nvidia/cudnn/lib"));
        let cuda = cuda.is_dir().then_some(cuda);
        let cudnn = cudnn.is_dir().then_some(cudnn);
        ort::ep::cuda::preload_dylibs(cuda.as_deref(), cudnn.as_deref()).map_err(|e| {
            format!(
                "cannot load the CUDA libraries in {}: {e}; they need the NVIDIA driver's \
                 libcuda.so.1 (driver 580 or newer): is it installed?",
                dir.join("nvidia").display()
            )
        })
    });
    loaded.clone().map_err(OcrError::Runtime)
}

/// Loads the ONNX Runtime library once per process.
pub fn environment(library: &Path) -> Result<&'static Environment, OcrError> {
    let loaded = ENVIRONMENT.get_or_init(|| {
        if !library.exists() {
            return Err(format!(
                "ONNX Runtime library {} not found; run scripts/fetch-models.sh (or set ocr.runtime)",
                library.display()
            ));
        }
        if let Some(dir) = library.parent() {
            let _ = LIBRARY_DIR.set(dir.to_path_buf());
        }
        ort::init_from(library)
            .map_err(|e| {
                format!(
                    "cannot load ONNX Runtime from {}: {e}; run scripts/fetch-models.sh to install the supported version",
                    library.display()
                )
            })?
            .with_name("ocrd")
            .build()
            .map_err(|e| format!("cannot start ONNX Runtime: {e}"))
    });
    loaded.as_ref().map_err(|e| OcrError::Runtime(e.clone()))
}

/// Builds a session for `model` on the requested device. A CUDA request that cannot be met is an
/// error: a GPU worker must never fall back to the CPU silently.
pub fn session(
    env: &Environment,
    model: &Path,
    options: &SessionOptions,
) -> Result<Session, OcrError> {
    if !model.exists() {
        return Err(OcrError::Model(format!(
            "{} not found; run scripts/fetch-models.sh",
            model.display()
        )));
    }
    let fail = |e: String| OcrError::Model(format!("{}: {e}", model.display()));
    let mut builder = Session::builder(env)
        .map_err(|e| fail(e.to_string()))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| fail(e.to_string()))?
        .with_intra_threads(options.intra_threads)
        .map_err(|e| fail(e.to_string()))?;
    if let Device::Cuda(id) = options.device {
        preload_cuda()?;
        let cuda = ort::ep::CUDA::default()
            .with_device_id(id as i32)
            .build()
            .error_on_failure();
        builder = builder
            .with_execution_providers([cuda])
            .map_err(|e| OcrError::Runtime(format!("CUDA device {id} cannot be used: {e}")))?;
    }
    builder
        .commit_from_file(model)
        .map_err(|e| fail(e.to_string()))
}
