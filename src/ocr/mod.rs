//! The OCR engine port: an [`Engine`] turns one page image into a [`PageResult`].
//!
//! Engines are `Send + Sync` and used through `Arc<dyn Engine>`, so the worker and the CLI never
//! know which one runs. [`runtime`] holds what every ONNX engine shares.

pub mod lang;
mod model;
pub mod order;
pub mod ppocr;
pub mod qwen3vl;
pub mod runtime;

pub use model::{BBox, Block, Line, PageFailure, PageResult, PageSource, Word};

use image::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    /// The ONNX Runtime library is missing, the wrong version, or a device cannot be used.
    #[error("{0}")]
    Runtime(String),
    /// A model file is missing or cannot be loaded.
    #[error("model: {0}")]
    Model(String),
    /// Running a model failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The page asks for something the loaded models cannot do (a script they lack).
    #[error("{0}")]
    Unsupported(String),
}

/// What a task asks of the engine for each of its pages.
#[derive(Clone, Debug, Default)]
pub struct PageOptions {
    /// The scripts the page is written in; `None` takes the engine's configured `ocr.lang`.
    /// Engines that cannot limit their output to scripts ignore it.
    pub lang: Option<lang::Lang>,
}

impl From<ort::Error> for OcrError {
    fn from(e: ort::Error) -> Self {
        OcrError::Inference(e.to_string())
    }
}

pub trait Engine: Send + Sync {
    /// A short stable name: `ppocr`, `qwen3vl`.
    fn name(&self) -> &'static str;

    /// ISO 639 codes of the languages the loaded models read.
    fn languages(&self) -> &[&'static str];

    /// Recognises one page. Blocks, lines and words come back in reading order.
    fn recognize(&self, page: &RgbImage, options: &PageOptions) -> Result<PageResult, OcrError>;

    /// How many pages are worth recognising at once (more only queue for the same sessions).
    fn parallelism(&self) -> usize {
        1
    }
}

/// Loads the configured engine on `device`.
pub fn load_engine(
    config: &crate::config::OcrConfig,
    device: runtime::Device,
) -> Result<std::sync::Arc<dyn Engine>, OcrError> {
    match config.engine {
        crate::config::EngineKind::Ppocr => {
            let mut options = ppocr::PpOcrConfig::new(&config.models_dir);
            options.model_set = config.model_set.clone();
            options.classify_orientation = config.classify_orientation;
            options.lang = config.lang.clone();
            options.session.device = device;
            if config.threads > 0 {
                options.sessions = config.threads;
            }
            if let runtime::Device::Cuda(_) = device {
                // A GPU runs one stream of work well; batches give it enough to do.
                options.sessions = 2;
                options.rec.batch_size = options.rec.batch_size.max(8);
            }
            Ok(std::sync::Arc::new(ppocr::PpOcr::load(
                &config.runtime_library(),
                options,
            )?))
        }
        crate::config::EngineKind::Qwen3vl => Ok(std::sync::Arc::new(qwen3vl::load_configured(
            config, device,
        )?)),
    }
}
