//! `ocrd-model.json`: what `tools/qwen3vl_export` writes about an export.

use serde::Deserialize;

#[derive(Clone, Debug, Deserialize)]
pub struct ModelConfig {
    pub format: u32,
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub tokens: TokenIds,
    pub preprocess: PreprocessConfig,
    /// The default instruction.
    pub prompt: String,
    /// Boxes in the model's answers are on a grid of this many units over the image.
    pub bbox_scale: u32,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TextConfig {
    pub hidden_size: usize,
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct VisionConfig {
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    /// The learned position grid is this many entries a side.
    pub num_grid_per_side: usize,
    pub deepstack_layers: usize,
}

#[derive(Clone, Debug, Deserialize)]
pub struct TokenIds {
    pub image_pad: u32,
    pub vision_start: u32,
    pub vision_end: u32,
    pub im_start: u32,
    pub im_end: u32,
    pub eos: Vec<u32>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PreprocessConfig {
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl VisionConfig {
    /// Pixels a side of one vision token (a merged block of patches).
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// Values per patch row of `pixel_values`: channels × frames × patch².
    pub fn patch_values(&self) -> usize {
        3 * self.temporal_patch_size * self.patch_size * self.patch_size
    }
}
