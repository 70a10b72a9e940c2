//! The optional text-line orientation classifier: is a line upright or upside down?
//!
//! PP-OCR's legacy `cls` model reads each line scaled to 48×192 (same normalisation as
//! recognition) and answers 0° or 180°. A line is turned only when the model is confident, as in
//! PaddleOCR.

use ndarray::Axis;

use super::rec::{LineCrop, sample_lines};

pub const HEIGHT: u32 = 48;
pub const WIDTH: u32 = 192;
/// A line is turned when the model gives 180° at least this probability.
pub const THRESHOLD: f32 = 0.9;

/// Turns the lines the model reads as upside down; `probs` is its `[n, 2]` output for `crops`.
/// Returns how many it turned.
pub fn apply(crops: &mut [LineCrop], probs: ndarray::ArrayViewD<f32>) -> usize {
    let mut turned = 0;
    for (crop, row) in crops.iter_mut().zip(probs.axis_iter(Axis(0))) {
        if row.len() == 2 && row[1] >= THRESHOLD && row[1] > row[0] {
            *crop = crop.turned();
            turned += 1;
        }
    }
    turned
}

/// The classifier's input for `crops`.
pub fn preprocess(page: &image::RgbImage, crops: &[&LineCrop]) -> ndarray::Array4<f32> {
    sample_lines(page, crops, HEIGHT, WIDTH, WIDTH).0
}
