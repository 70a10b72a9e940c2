//! The optional text-line orientation classifier: is a line upright or upside down?
//!
//! PP-OCR's legacy `cls` model reads each line scaled to 48×192 (same normalisation as
//! recognition) and answers 0° or 180°. It decides every page's orientation from a sample of its
//! lines and, where configured, turns single lines, only when confident (as in PaddleOCR).

use ndarray::Axis;

use super::rec::{LineCrop, sample_lines};

pub const HEIGHT: u32 = 48;
pub const WIDTH: u32 = 192;
/// A line is turned when the model gives 180° at least this probability.
pub const THRESHOLD: f32 = 0.9;
/// Lines per model call, and the sample of a page's longest lines that decides whether the
/// whole page is upside down.
pub const PAGE_SAMPLE: usize = 6;

/// Whether the sample's lines, weighed by how sure the model is of each, read as upside down.
pub fn mostly_turned(probs: ndarray::ArrayViewD<f32>) -> bool {
    let margin: f32 = probs
        .axis_iter(Axis(0))
        .filter(|row| row.len() == 2)
        .map(|row| row[1] - row[0])
        .sum();
    margin > 0.0
}

/// Turns the lines the model reads as upside down; `probs` is its `[n, 2]` output for `crops`.
pub fn apply(crops: &mut [LineCrop], probs: ndarray::ArrayViewD<f32>) {
    for (crop, row) in crops.iter_mut().zip(probs.axis_iter(Axis(0))) {
        if row.len() == 2 && row[1] >= THRESHOLD && row[1] > row[0] {
            *crop = crop.turned();
        }
    }
}

/// The classifier's input for `crops`.
pub fn preprocess(page: &image::RgbImage, crops: &[&LineCrop]) -> ndarray::Array4<f32> {
    sample_lines(page, crops, HEIGHT, WIDTH, WIDTH).0
}
