//! Qwen3-VL: a vision-language model exported to ONNX by `tools/qwen3vl_export`, read one page
//! at a time.
//!
//! The page is resized under `max_pixels` and cut into patches ([`preprocess`]); the prompt
//! holds one image token per 2×2 block of patches ([`prompt`]); greedy decoding runs with the
//! KV cache on the model's device and DeepStack features on the prefill ([`generate`]); the
//! answer, HTML with a `data-bbox` per block, becomes the page model ([`html`]). Everything the
//! model needs to know about itself comes from `ocrd-model.json`, so the tiny test export and
//! the real 2B/4B/8B exports run the same code.

pub mod generate;
pub mod html;
pub mod model;
pub mod preprocess;
pub mod prompt;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::RgbImage;
use tokenizers::Tokenizer;

use super::runtime::{self, Device, SessionOptions};
use super::{Engine, OcrError, PageOptions, PageResult};
pub use generate::{Generation, Sessions, VisionOutput};
pub use model::ModelConfig;
pub use preprocess::VisionInput;
pub use prompt::Prompt;

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct Qwen3VlOptions {
    pub model_dir: PathBuf,
    pub session: SessionOptions,
    /// Largest image the model sees (the model's own limit applies too).
    pub max_pixels: u64,
    pub max_new_tokens: usize,
    /// Empty: the model's default prompt.
    pub prompt: String,
}

pub struct Qwen3Vl {
    config: ModelConfig,
    tokenizer: Tokenizer,
    sessions: Mutex<Sessions>,
    options: Qwen3VlOptions,
}

/// A page read by the model: the answer and how it was produced.
#[derive(Clone, Debug)]
pub struct Answer {
    pub text: String,
    pub generation: Generation,
    pub input: (u32, u32),
}

impl Qwen3Vl {
    pub fn load(library: &Path, options: Qwen3VlOptions) -> Result<Qwen3Vl, OcrError> {
        let dir = &options.model_dir;
        let file = |name: &str| dir.join(name);
        let missing = |what: &str| {
            OcrError::Model(format!(
                "{what} not found in {}: export a model there with tools/qwen3vl_export (see README)",
                dir.display()
            ))
        };
        let json = std::fs::read_to_string(file("ocrd-model.json"))
            .map_err(|_| missing("ocrd-model.json"))?;
        let config: ModelConfig = serde_json::from_str(&json)
            .map_err(|e| OcrError::Model(format!("{}: {e}", file("ocrd-model.json").display())))?;
        if config.format != 1 {
            return Err(OcrError::Model(format!(
                "{}: format {} is not one this ocrd reads (1); export the model again",
                file("ocrd-model.json").display(),
                config.format
            )));
        }
        let tokenizer = Tokenizer::from_file(file("tokenizer.json"))
            .map_err(|e| OcrError::Model(format!("{}: {e}", file("tokenizer.json").display())))?;
        let env = runtime::environment(library)?;
        let session = |name: &str| runtime::session(env, &file(name), &options.session);
        let sessions = Sessions {
            vision: session("vision.onnx")?,
            embed: session("embed_tokens.onnx")?,
            decoder: session("decoder.onnx")?,
            device: options.session.device,
        };
        Ok(Qwen3Vl {
            config,
            tokenizer,
            sessions: Mutex::new(sessions),
            options,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The prompt in use.
    pub fn prompt(&self) -> &str {
        if self.options.prompt.is_empty() {
            &self.config.prompt
        } else {
            &self.options.prompt
        }
    }

    /// What the vision model takes for `page`.
    pub fn vision_input(&self, page: &RgbImage) -> Result<VisionInput, OcrError> {
        preprocess::vision_input(
            page,
            &self.config.vision,
            &self.config.preprocess,
            self.options.max_pixels,
        )
    }

    /// The prompt for an image input.
    pub fn prompt_for(&self, input: &VisionInput) -> Result<Prompt, OcrError> {
        let ids = prompt::prompt_ids(
            &self.tokenizer,
            &self.config.tokens,
            input.tokens(&self.config.vision),
            self.prompt(),
        )?;
        let m = self.config.vision.merge_size;
        let (positions, rope_delta) = prompt::rope_positions(
            &ids,
            self.config.tokens.image_pad,
            (input.grid.0 / m, input.grid.1 / m),
        );
        Ok(Prompt {
            ids,
            positions,
            rope_delta,
        })
    }

    /// Runs the sessions under their lock.
    pub fn with_sessions<T>(
        &self,
        f: impl FnOnce(&mut Sessions, &ModelConfig) -> Result<T, OcrError>,
    ) -> Result<T, OcrError> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut sessions, &self.config)
    }

    /// Greedy generation for an image input, up to `max_new_tokens`.
    pub fn generate(&self, input: &VisionInput, max_new_tokens: usize) -> Result<Answer, OcrError> {
        let prompt = self.prompt_for(input)?;
        // Byte-level tokens can split a character: the stream only gives whole ones.
        let mut stream = self.tokenizer.decode_stream(true);
        let mut text = String::new();
        let mut bad = None;
        let generation = self.with_sessions(|sessions, config| {
            let image = sessions.vision(input, config)?;
            sessions.generate(
                config,
                &prompt,
                &image,
                max_new_tokens,
                |token| match stream.step(token) {
                    Ok(Some(piece)) => text.push_str(&piece),
                    Ok(None) => {}
                    Err(e) => bad = Some(e.to_string()),
                },
            )
        })?;
        if let Some(e) = bad {
            return Err(OcrError::Inference(format!("detokenising: {e}")));
        }
        Ok(Answer {
            text,
            generation,
            input: input.resized,
        })
    }
}

impl Engine for Qwen3Vl {
    fn name(&self) -> &'static str {
        "qwen3vl"
    }

    fn languages(&self) -> &[&'static str] {
        // Qwen3-VL reads 32 languages; these are the ones its model card leads with.
        &["en", "zh", "ja", "ko", "de", "fr", "es"]
    }

    fn recognize(&self, page: &RgbImage, _: &PageOptions) -> Result<PageResult, OcrError> {
        let input = self.vision_input(page)?;
        let answer = self.generate(&input, self.options.max_new_tokens)?;
        if !answer.generation.finished {
            tracing::warn!(
                tokens = answer.generation.tokens.len(),
                "qwen3vl: the answer hit ocr.qwen3vl.max_new_tokens; the page may be cut short"
            );
        }
        let frame = html::Frame {
            scale: self.config.bbox_scale,
            seen: (input.resized.1, input.resized.0),
            page: page.dimensions(),
        };
        Ok(html::parse(
            &answer.text,
            frame,
            answer.generation.confidence,
        ))
    }
}

/// The engine from configuration, on `device`.
pub fn load_configured(
    config: &crate::config::OcrConfig,
    device: Device,
) -> Result<Qwen3Vl, OcrError> {
    let q = &config.qwen3vl;
    Qwen3Vl::load(
        &config.runtime_library(),
        Qwen3VlOptions {
            model_dir: config.qwen3vl_dir(),
            session: SessionOptions {
                device,
                intra_threads: config.threads,
            },
            max_pixels: q.max_pixels,
            max_new_tokens: q.max_new_tokens,
            prompt: q.prompt.clone(),
        },
    )
}
