//! The three ONNX sessions and greedy decoding.
//!
//! Vision first (image embeddings and one DeepStack feature per layer), then the prompt's
//! embeddings with the image rows replaced, then one prefill over the whole prompt (DeepStack
//! added to the image rows after the first decoder layers) and one decoder run per new token.
//! The key/value cache goes from each run's outputs to the next run's inputs through an
//! `IoBinding`, bound to the device the model runs on: on CUDA it never leaves the GPU; only
//! the last position's logits come back to the host.

use std::time::{Duration, Instant};

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{DynValue, Tensor};

use super::model::ModelConfig;
use super::preprocess::VisionInput;
use super::prompt::Prompt;
use crate::ocr::OcrError;
use crate::ocr::runtime::Device;

pub struct Sessions {
    pub vision: Session,
    pub embed: Session,
    pub decoder: Session,
    pub device: Device,
}

/// What the vision model makes of one image: `[tokens, hidden]` embeddings and
/// `[deepstack layers, tokens, hidden]` features, row-major.
pub struct VisionOutput {
    pub embeds: Vec<f32>,
    pub deepstack: Vec<f32>,
    pub tokens: usize,
}

/// The tokens generated for one page, and where the time went.
#[derive(Clone, Debug)]
pub struct Generation {
    pub tokens: Vec<u32>,
    /// Vision, embeddings and the prefill run.
    pub prefill: Duration,
    /// Every decoding step after the first token.
    pub decode: Duration,
    /// Whether it stopped at an end-of-sequence token (rather than at the token limit).
    pub finished: bool,
    /// The mean probability the model gave the tokens it chose (1 for an empty answer).
    pub confidence: f32,
}

fn tensor<T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static>(
    shape: Vec<usize>,
    data: Vec<T>,
) -> Result<DynValue, OcrError> {
    Ok(Tensor::from_array((shape, data))?.into_dyn())
}

impl Sessions {
    pub fn vision(
        &mut self,
        input: &VisionInput,
        config: &ModelConfig,
    ) -> Result<VisionOutput, OcrError> {
        let n = input.patches();
        let inputs = vec![
            (
                "pixel_values",
                tensor(
                    vec![n, config.vision.patch_values()],
                    input.pixel_values.clone(),
                )?,
            ),
            (
                "interp_indices",
                tensor(vec![n, 4], input.interp_indices.concat())?,
            ),
            (
                "interp_weights",
                tensor(vec![n, 4], input.interp_weights.concat())?,
            ),
            (
                "rotary_pos_ids",
                tensor(vec![n, 2], input.rotary_pos_ids.concat())?,
            ),
        ];
        let outputs = self.vision.run(inputs)?;
        let (_, embeds) = outputs["image_embeds"].try_extract_tensor::<f32>()?;
        let (_, deepstack) = outputs["deepstack_embeds"].try_extract_tensor::<f32>()?;
        Ok(VisionOutput {
            embeds: embeds.to_vec(),
            deepstack: deepstack.to_vec(),
            tokens: input.tokens(&config.vision),
        })
    }

    fn embed(&mut self, ids: &[u32]) -> Result<Vec<f32>, OcrError> {
        let ids: Vec<i64> = ids.iter().map(|&id| i64::from(id)).collect();
        let outputs = self
            .embed
            .run(vec![("input_ids", tensor(vec![1, ids.len()], ids)?)])?;
        let (_, embeds) = outputs["inputs_embeds"].try_extract_tensor::<f32>()?;
        Ok(embeds.to_vec())
    }

    /// Where the key/value cache lives between runs.
    fn cache_memory(&self) -> Result<MemoryInfo<'static>, OcrError> {
        Ok(match self.device {
            Device::Cpu => MemoryInfo::new(
                AllocationDevice::CPU,
                0,
                AllocatorType::Device,
                MemoryType::Default,
            )?,
            Device::Cuda(id) => MemoryInfo::new(
                AllocationDevice::CUDA,
                id as i32,
                AllocatorType::Device,
                MemoryType::Default,
            )?,
        })
    }

    /// The prompt's embeddings with the image rows replaced, and the dense DeepStack input
    /// (`[layers, 1, len, hidden]`: the features at the image rows, zero elsewhere).
    fn prompt_inputs(
        &mut self,
        config: &ModelConfig,
        ids: &[u32],
        image: &VisionOutput,
        with_deepstack: bool,
    ) -> Result<(Vec<f32>, Vec<f32>), OcrError> {
        let hidden = config.text.hidden_size;
        let mut embeds = self.embed(ids)?;
        let layers = config.vision.deepstack_layers;
        let mut deepstack = vec![0f32; layers * ids.len() * hidden];
        let rows: Vec<usize> = (0..ids.len())
            .filter(|&i| ids[i] == config.tokens.image_pad)
            .collect();
        if rows.len() != image.tokens {
            return Err(OcrError::Inference(format!(
                "the prompt has {} image tokens for {} image embeddings",
                rows.len(),
                image.tokens
            )));
        }
        for (k, &row) in rows.iter().enumerate() {
            embeds[row * hidden..(row + 1) * hidden]
                .copy_from_slice(&image.embeds[k * hidden..(k + 1) * hidden]);
            if with_deepstack {
                for layer in 0..layers {
                    let from = (layer * image.tokens + k) * hidden;
                    let to = (layer * ids.len() + row) * hidden;
                    deepstack[to..to + hidden]
                        .copy_from_slice(&image.deepstack[from..from + hidden]);
                }
            }
        }
        Ok((embeds, deepstack))
    }

    /// One decoder run over `len` new positions after `past` cached ones; the last position's
    /// logits, and the cache to continue from.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &mut self,
        config: &ModelConfig,
        embeds: Vec<f32>,
        positions: [Vec<i64>; 3],
        deepstack: Vec<f32>,
        past_len: usize,
        cache: Vec<DynValue>,
    ) -> Result<(Vec<f32>, Vec<DynValue>), OcrError> {
        let t = &config.text;
        let len = positions[0].len();
        let mut binding = self.decoder.create_binding()?;
        binding.bind_input(
            "inputs_embeds",
            &Tensor::from_array((vec![1, len, t.hidden_size], embeds))?,
        )?;
        binding.bind_input(
            "attention_mask",
            &Tensor::from_array((vec![1, past_len + len], vec![1i64; past_len + len]))?,
        )?;
        binding.bind_input(
            "position_ids",
            &Tensor::from_array((vec![3, 1, len], positions.concat()))?,
        )?;
        binding.bind_input(
            "deepstack",
            &Tensor::from_array((
                vec![config.vision.deepstack_layers, 1, len, t.hidden_size],
                deepstack,
            ))?,
        )?;
        let names = |prefix: &str| -> Vec<String> {
            (0..t.layers)
                .flat_map(|i| ["key", "value"].map(|kind| format!("{prefix}.{i}.{kind}")))
                .collect()
        };
        for (name, value) in names("past_key_values").into_iter().zip(&cache) {
            binding.bind_input(name, value)?;
        }
        let memory = self.cache_memory()?;
        for name in names("present") {
            binding.bind_output_to_device(name, &memory)?;
        }
        let host = MemoryInfo::new(
            AllocationDevice::CPU,
            0,
            AllocatorType::Device,
            MemoryType::CPUOutput,
        )?;
        binding.bind_output_to_device("logits", &host)?;
        let mut outputs = self.decoder.run_binding(&binding)?;
        let (_, logits) = outputs["logits"].try_extract_tensor::<f32>()?;
        let logits = logits.to_vec();
        let cache = names("present")
            .iter()
            .map(|name| {
                outputs
                    .remove(name)
                    .ok_or_else(|| OcrError::Inference(format!("the decoder gave no {name}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((logits, cache))
    }

    fn empty_cache(&self, config: &ModelConfig) -> Result<Vec<DynValue>, OcrError> {
        let t = &config.text;
        (0..t.layers * 2)
            .map(|_| tensor(vec![1, t.kv_heads, 0, t.head_dim], Vec::<f32>::new()))
            .collect()
    }

    /// The logits after the prompt, with or without DeepStack (to show that it is wired).
    pub fn prefill_logits(
        &mut self,
        config: &ModelConfig,
        prompt: &Prompt,
        image: &VisionOutput,
        with_deepstack: bool,
    ) -> Result<Vec<f32>, OcrError> {
        let (embeds, deepstack) = self.prompt_inputs(config, &prompt.ids, image, with_deepstack)?;
        let cache = self.empty_cache(config)?;
        let positions = prompt.positions.clone();
        Ok(self.step(config, embeds, positions, deepstack, 0, cache)?.0)
    }

    /// Greedy decoding after `prompt` until an end-of-sequence token or `max_new_tokens`.
    /// `on_token` sees each token as it comes.
    pub fn generate(
        &mut self,
        config: &ModelConfig,
        prompt: &Prompt,
        image: &VisionOutput,
        max_new_tokens: usize,
        mut on_token: impl FnMut(u32),
    ) -> Result<Generation, OcrError> {
        let started = Instant::now();
        let ids = &prompt.ids;
        let (embeds, deepstack) = self.prompt_inputs(config, ids, image, true)?;
        let cache = self.empty_cache(config)?;
        let positions = prompt.positions.clone();
        let (mut logits, mut cache) = self.step(config, embeds, positions, deepstack, 0, cache)?;
        let prefill = started.elapsed();
        let started = Instant::now();
        let hidden = config.text.hidden_size;
        let layers = config.vision.deepstack_layers;
        let mut tokens = Vec::new();
        let mut length = ids.len();
        let mut finished = false;
        let mut probability = 0f64;
        while tokens.len() < max_new_tokens {
            let token = argmax(&logits);
            if config.tokens.eos.contains(&token) {
                finished = true;
                break;
            }
            probability += f64::from(chosen_probability(&logits, token));
            tokens.push(token);
            on_token(token);
            if tokens.len() == max_new_tokens {
                break;
            }
            let position = length as i64 + prompt.rope_delta;
            let embeds = self.embed(&[token])?;
            (logits, cache) = self.step(
                config,
                embeds,
                [vec![position], vec![position], vec![position]],
                vec![0.0; layers * hidden],
                length,
                cache,
            )?;
            length += 1;
        }
        let confidence = if tokens.is_empty() {
            1.0
        } else {
            (probability / tokens.len() as f64) as f32
        };
        Ok(Generation {
            tokens,
            prefill,
            decode: started.elapsed(),
            finished,
            confidence,
        })
    }
}

/// The softmax probability of `token`.
fn chosen_probability(logits: &[f32], token: u32) -> f32 {
    let max = logits[token as usize];
    let sum: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    1.0 / sum
}

/// The index of the largest logit; the first of equals, as `torch.argmax`.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}
