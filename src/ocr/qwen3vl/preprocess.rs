//! Image → what the vision model takes, as transformers' Qwen2-VL image processor does it:
//! `smart_resize` to multiples of 32 within the pixel limits, rescale and normalise, patches in
//! merge-block order (each 2×2 block of 16-pixel patches together, the frame repeated for the
//! two temporal slots), and the tables the exporter moved out of the graph: the learned position
//! grid resampled to this image (bilinear, corners aligned) and each patch's row and column.

use image::RgbImage;

use super::model::{PreprocessConfig, VisionConfig};
use crate::ocr::OcrError;

/// One image, ready for `vision.onnx`.
#[derive(Clone, Debug)]
pub struct VisionInput {
    /// Patch rows of `vision.patch_values()` values: `[patches, values]`, row-major.
    pub pixel_values: Vec<f32>,
    /// Patches down and across (16-pixel patches).
    pub grid: (usize, usize),
    /// The size the image was resized to, `(height, width)`.
    pub resized: (u32, u32),
    /// Four taps into the learned position grid per patch, and their weights.
    pub interp_indices: Vec<[i64; 4]>,
    pub interp_weights: Vec<[f32; 4]>,
    /// Each patch's (row, column) for the vision rotary embedding.
    pub rotary_pos_ids: Vec<[i64; 2]>,
}

impl VisionInput {
    pub fn patches(&self) -> usize {
        self.grid.0 * self.grid.1
    }

    /// Vision tokens the image becomes in the prompt (merged blocks).
    pub fn tokens(&self, vision: &VisionConfig) -> usize {
        self.patches() / (vision.merge_size * vision.merge_size)
    }
}

/// Python's `round`: halves go to the even neighbour.
fn round_half_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// The size (height, width) transformers resizes an image to: multiples of `factor`, the
/// aspect kept, the area within `[min_pixels, max_pixels]`.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: u32,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u32, u32), OcrError> {
    let (h, w, f) = (f64::from(height), f64::from(width), f64::from(factor));
    if height == 0 || width == 0 || h.max(w) / h.min(w) > 200.0 {
        return Err(OcrError::Inference(format!(
            "a {width}×{height} image is too thin for the model (aspect ratio over 200)"
        )));
    }
    let mut hb = round_half_even(h / f) * f;
    let mut wb = round_half_even(w / f) * f;
    if hb * wb > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        hb = f.max((h / beta / f).floor() * f);
        wb = f.max((w / beta / f).floor() * f);
    } else if hb * wb < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        hb = (h * beta / f).ceil() * f;
        wb = (w * beta / f).ceil() * f;
    }
    Ok((hb as u32, wb as u32))
}

/// Everything `vision.onnx` needs for `image`, resized under `max_pixels`.
pub fn vision_input(
    image: &RgbImage,
    vision: &VisionConfig,
    pre: &PreprocessConfig,
    max_pixels: u64,
) -> Result<VisionInput, OcrError> {
    let factor = vision.factor() as u32;
    let (height, width) = smart_resize(
        image.height(),
        image.width(),
        factor,
        pre.min_pixels,
        max_pixels.min(pre.max_pixels),
    )?;
    let resized;
    let image = if (width, height) == image.dimensions() {
        image
    } else {
        // Bicubic, as the processor; not bit-identical to PIL, which only matters for parity.
        resized = image::imageops::resize(
            image,
            width,
            height,
            image::imageops::FilterType::CatmullRom,
        );
        &resized
    };
    Ok(from_resized(image, vision, pre))
}

/// [`vision_input`] for an image already at a size the model takes.
fn from_resized(image: &RgbImage, vision: &VisionConfig, pre: &PreprocessConfig) -> VisionInput {
    let (p, m, t) = (
        vision.patch_size,
        vision.merge_size,
        vision.temporal_patch_size,
    );
    let (gh, gw) = (image.height() as usize / p, image.width() as usize / p);
    let values = vision.patch_values();
    let mut pixel_values = vec![0f32; gh * gw * values];
    // As the processor: rescale by 1/255 in f32, then normalise.
    let scale = 1.0f32 / 255.0;
    let patches = merge_block_order(gh, gw, m);
    for (row, &(pr, pc)) in patches.iter().enumerate() {
        let out = &mut pixel_values[row * values..(row + 1) * values];
        for c in 0..3 {
            for y in 0..p {
                for x in 0..p {
                    let px = image.get_pixel((pc * p + x) as u32, (pr * p + y) as u32)[c];
                    let v = (f32::from(px) * scale - pre.mean[c]) / pre.std[c];
                    for frame in 0..t {
                        out[((c * t + frame) * p + y) * p + x] = v;
                    }
                }
            }
        }
    }
    let side = vision.num_grid_per_side;
    let taps = |index: usize, size: usize| -> [(i64, f32); 2] {
        // `linspace(0, side - 1, size)[index]`, in f32 as torch computes it.
        let src = index as f32 * (side - 1) as f32 / (size.max(2) - 1) as f32;
        let floor = src.floor();
        [0.0f32, 1.0].map(|offset| {
            let tap = ((floor + offset) as i64).clamp(0, side as i64 - 1);
            (tap, (1.0 - (src - floor - offset).abs()).max(0.0))
        })
    };
    let mut interp_indices = Vec::with_capacity(patches.len());
    let mut interp_weights = Vec::with_capacity(patches.len());
    for &(r, c) in &patches {
        let (h, w) = (taps(r, gh), taps(c, gw));
        let mut indices = [0i64; 4];
        let mut weights = [0f32; 4];
        for (i, (hi, hw)) in h.iter().enumerate() {
            for (j, (wi, ww)) in w.iter().enumerate() {
                indices[i * 2 + j] = hi * side as i64 + wi;
                weights[i * 2 + j] = hw * ww;
            }
        }
        interp_indices.push(indices);
        interp_weights.push(weights);
    }
    VisionInput {
        pixel_values,
        grid: (gh, gw),
        resized: (image.height(), image.width()),
        interp_indices,
        interp_weights,
        rotary_pos_ids: patches.iter().map(|&(r, c)| [r as i64, c as i64]).collect(),
    }
}

/// Patch (row, column) in the order the model takes them: block by block (`m`×`m` patches),
/// row-major inside a block.
fn merge_block_order(gh: usize, gw: usize, m: usize) -> Vec<(usize, usize)> {
    let mut order = Vec::with_capacity(gh * gw);
    for bh in 0..gh / m {
        for bw in 0..gw / m {
            for ih in 0..m {
                for iw in 0..m {
                    order.push((bh * m + ih, bw * m + iw));
                }
            }
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_rounds_like_python_and_keeps_the_limits() {
        let r = |h, w| smart_resize(h, w, 32, 1024, 65536).unwrap();
        assert_eq!(r(64, 64), (64, 64));
        assert_eq!(r(90, 150), (96, 160));
        // 80 / 32 = 2.5 rounds to 2 (half to even), 112 / 32 = 3.5 to 4.
        assert_eq!(r(80, 112), (64, 128));
        // Too large: scaled into max_pixels.
        let (h, w) = r(1000, 700);
        assert!(
            u64::from(h) * u64::from(w) <= 65536 && h % 32 == 0 && w % 32 == 0,
            "{h}×{w}"
        );
        // Too small: scaled up to min_pixels.
        assert_eq!(r(10, 10), (32, 32));
        assert!(smart_resize(10, 3000, 32, 1024, 65536).is_err());
    }

    #[test]
    fn patches_come_block_by_block() {
        assert_eq!(
            merge_block_order(2, 4, 2),
            [
                (0, 0),
                (0, 1),
                (1, 0),
                (1, 1),
                (0, 2),
                (0, 3),
                (1, 2),
                (1, 3)
            ]
        );
    }
}
