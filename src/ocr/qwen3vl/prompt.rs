//! The prompt as token ids, and its 3-D rope positions.
//!
//! The Instruct chat template with one image and no system message:
//! `<|im_start|>user\n<|vision_start|><|image_pad|>×n<|vision_end|>{prompt}<|im_end|>\n<|im_start|>assistant\n`.
//! Special tokens are spliced in as ids; the text between them is encoded on its own, as the
//! tokenizer splits on special tokens first.

use tokenizers::Tokenizer;

/// A prompt ready for the decoder: its ids, their rope positions `[time, height, width]`, and
/// the delta that continues them while decoding (token `k` after the prompt sits at
/// `ids.len() + k + rope_delta` on every axis).
#[derive(Clone, Debug)]
pub struct Prompt {
    pub ids: Vec<u32>,
    pub positions: [Vec<i64>; 3],
    pub rope_delta: i64,
}

use super::model::TokenIds;
use crate::ocr::OcrError;

pub fn prompt_ids(
    tokenizer: &Tokenizer,
    tokens: &TokenIds,
    image_tokens: usize,
    prompt: &str,
) -> Result<Vec<u32>, OcrError> {
    let text = |s: &str| -> Result<Vec<u32>, OcrError> {
        tokenizer
            .encode(s, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| OcrError::Model(format!("tokenizer: {e}")))
    };
    let mut ids = vec![tokens.im_start];
    ids.extend(text("user\n")?);
    ids.push(tokens.vision_start);
    ids.extend(std::iter::repeat_n(tokens.image_pad, image_tokens));
    ids.push(tokens.vision_end);
    ids.extend(text(prompt)?);
    ids.push(tokens.im_end);
    ids.extend(text("\n")?);
    ids.push(tokens.im_start);
    ids.extend(text("assistant\n")?);
    Ok(ids)
}

/// Rope positions `[3][len]` (time, height, width) for a prompt with one image whose merged
/// grid is `blocks` (rows, columns), and the delta that continues them while decoding: token
/// `k` after the prompt sits at `len + k + delta` on every axis.
///
/// Text advances all three axes together; the image's tokens sit on a grid from where the text
/// left off, and the text after it resumes past the larger side of that grid.
pub fn rope_positions(ids: &[u32], image_pad: u32, blocks: (usize, usize)) -> ([Vec<i64>; 3], i64) {
    let mut positions: [Vec<i64>; 3] = Default::default();
    let mut next = 0i64;
    let mut i = 0;
    while i < ids.len() {
        if ids[i] == image_pad {
            let run = ids[i..].iter().take_while(|&&id| id == image_pad).count();
            for row in 0..blocks.0 {
                for col in 0..blocks.1 {
                    positions[0].push(next);
                    positions[1].push(next + row as i64);
                    positions[2].push(next + col as i64);
                }
            }
            // A run of pads that does not match the grid cannot come from prompt_ids.
            debug_assert_eq!(run, blocks.0 * blocks.1);
            next += blocks.0.max(blocks.1) as i64;
            i += run;
        } else {
            for axis in &mut positions {
                axis.push(next);
            }
            next += 1;
            i += 1;
        }
    }
    let max = positions.iter().flatten().copied().max().unwrap_or(-1);
    (positions, max + 1 - ids.len() as i64)
}
