//! Text recognition with a CTC model, and the geometry that maps its output back onto the page.
//!
//! Each detected line is sampled straight from the page into the model's input (perspective crop
//! and resize in one pass, no intermediate images), batched with lines of similar aspect ratio,
//! and decoded greedily. The timestep of every decoded character gives its position along the
//! line, which yields word boxes and per-word confidences.

use image::RgbImage;
use ndarray::{Array4, ArrayView2};

use super::Quad;
use super::det::dist;

#[derive(Clone, Debug)]
pub struct RecConfig {
    pub height: u32,
    /// Narrowest input; shorter lines are padded to this width.
    pub min_width: u32,
    /// Blank columns after every line: CTC needs a few timesteps after the last character to
    /// close it. Measured on the sample pages: CER 0.0022 without, 0.0014 with 16, when lines
    /// were read to the end of their box only; with `end_margin`'s real pixels after the line,
    /// none measured as well (docs/models.md), so it is 0.
    pub end_padding: u32,
    /// Lines per model call, grouped by similar width. On the CPU, one line per call measured
    /// fastest (no padding, better cache use: 4.6 against 4.2 pages/s with 6); batching pays
    /// where calls are expensive, as on a GPU.
    pub batch_size: usize,
    /// Widest input: a longer line is squeezed to fit, so that no detected box, however long,
    /// can ask for an unbounded tensor. Full-width lines of 200-dpi pages take about 2050.
    pub max_width: u32,
    /// Lines whose mean character confidence is below this are dropped as noise.
    pub drop_score: f32,
    /// How far each line is read past both ends of its detected box, in line heights. The
    /// detector's boxes end at the last tall glyph: a final period, comma or closing quote
    /// sits on the edge and was lost.
    pub end_margin: f32,
}

impl Default for RecConfig {
    fn default() -> Self {
        RecConfig {
            height: 48,
            min_width: 96,
            end_padding: 0,
            batch_size: 1,
            max_width: 4096,
            drop_score: 0.5,
            end_margin: 0.2,
        }
    }
}

/// A detected line ready for sampling: its quad, oriented so that the text runs from corner 0 to
/// corner 1, and its size in page pixels along and across the text.
#[derive(Clone, Copy, Debug)]
pub struct LineCrop {
    pub quad: Quad,
    pub width: f32,
    pub height: f32,
}

impl LineCrop {
    /// Tall boxes (height ≥ 1.5 × width) are read rotated by 90°, as PP-OCR does.
    pub fn new(quad: Quad) -> LineCrop {
        let [tl, tr, br, bl] = quad;
        let width = dist(tl, tr).max(dist(bl, br)).max(1.0);
        let height = dist(tl, bl).max(dist(tr, br)).max(1.0);
        if height / width >= 1.5 {
            LineCrop {
                quad: [tr, br, bl, tl],
                width: height,
                height: width,
            }
        } else {
            LineCrop {
                quad,
                width,
                height,
            }
        }
    }

    fn ratio(&self) -> f32 {
        self.width / self.height
    }

    /// The line lengthened by `margin` line heights at both ends.
    pub fn widened(&self, margin: f32) -> LineCrop {
        let extra = margin * self.height / self.width;
        LineCrop {
            quad: span_box(&self.quad, -extra, 1.0 + extra),
            width: self.width + 2.0 * margin * self.height,
            height: self.height,
        }
    }

    /// The middle of the line, at most `ratio` times as long as it is high.
    pub fn window(&self, ratio: f32) -> LineCrop {
        let length = (self.height * ratio).min(self.width);
        let margin = (1.0 - length / self.width) / 2.0;
        LineCrop {
            quad: span_box(&self.quad, margin, 1.0 - margin),
            width: length,
            height: self.height,
        }
    }

    /// The same box read the other way round: for text that is upside down.
    pub fn turned(&self) -> LineCrop {
        let [tl, tr, br, bl] = self.quad;
        LineCrop {
            quad: [br, bl, tl, tr],
            ..*self
        }
    }
}

/// One decoded character: its class, the timestep it was emitted at, and its probability.
#[derive(Clone, Copy, Debug)]
pub struct Glyph {
    pub ch: char,
    pub step: usize,
    pub prob: f32,
}

/// A recognised line before layout: its glyphs and where its text sits in the model input.
#[derive(Clone, Debug)]
pub struct RecLine {
    pub glyphs: Vec<Glyph>,
    /// Timesteps the model produced for the padded input.
    pub steps: usize,
    /// Fraction of the padded input width covered by the line's pixels.
    pub content: f32,
}

impl RecLine {
    pub fn score(&self) -> f32 {
        if self.glyphs.is_empty() {
            return 0.0;
        }
        self.glyphs.iter().map(|g| g.prob).sum::<f32>() / self.glyphs.len() as f32
    }

    /// Where along the line (0 = start, 1 = end) the timestep `step` is centred.
    pub fn position(&self, step: f32) -> f32 {
        ((step + 0.5) / self.steps as f32 / self.content).clamp(0.0, 1.0)
    }
}

/// Widest line in a batch, relative to its narrowest: padding beyond this costs more than a
/// separate model call.
const MAX_BATCH_SPREAD: f32 = 1.1;

/// Groups crops into batches of lines with similar aspect ratio, so that little of each batch is
/// padding: at most `batch_size` lines, the widest at most `MAX_BATCH_SPREAD` times the
/// narrowest. Returns the batches as index lists into `crops`.
pub fn batches(crops: &[LineCrop], batch_size: usize, min_ratio: f32) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..crops.len()).collect();
    order.sort_by(|&a, &b| crops[a].ratio().total_cmp(&crops[b].ratio()));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for k in order {
        let width = crops[k].ratio().max(min_ratio);
        let joins = batches.last().is_some_and(|batch| {
            batch.len() < batch_size.max(1)
                && width <= crops[batch[0]].ratio().max(min_ratio) * MAX_BATCH_SPREAD
        });
        match batches.last_mut() {
            Some(batch) if joins => batch.push(k),
            _ => batches.push(vec![k]),
        }
    }
    batches
}

/// Samples the batch's lines from the page into a `[n, 3, H, W]` tensor, normalised to -1..1
/// in BGR order and zero-padded on the right. Returns the tensor and each line's content fraction.
pub fn preprocess(
    page: &RgbImage,
    crops: &[&LineCrop],
    config: &RecConfig,
) -> (Array4<f32>, Vec<f32>) {
    let h = config.height;
    let max_ratio = crops
        .iter()
        .map(|c| c.ratio())
        .fold(config.min_width as f32 / h as f32, f32::max);
    let batch_w =
        (h as f32 * max_ratio).ceil().min(config.max_width as f32) as u32 + config.end_padding;
    let (input, widths) = sample_lines(page, crops, h, batch_w, batch_w - config.end_padding);
    let contents = widths.iter().map(|&w| w as f32 / batch_w as f32).collect();
    (input, contents)
}

/// Samples lines into a `[n, 3, height, width]` tensor: each line scaled to `height`, keeping
/// its aspect ratio up to `max_content` columns (longer lines are squeezed), normalised to -1..1
/// in BGR order, zero-padded on the right. Returns the tensor and the width each line took.
pub fn sample_lines(
    page: &RgbImage,
    crops: &[&LineCrop],
    height: u32,
    width: u32,
    max_content: u32,
) -> (Array4<f32>, Vec<u32>) {
    let (h, batch_w) = (height, width);
    let mut input = Array4::<f32>::zeros((crops.len(), 3, h as usize, batch_w as usize));
    let mut widths = Vec::with_capacity(crops.len());
    let plane = h as usize * batch_w as usize;
    let Some(out) = input.as_slice_mut() else {
        return (input, widths);
    };
    for (i, crop) in crops.iter().enumerate() {
        let w = ((h as f32 * crop.ratio()).ceil() as u32).clamp(1, max_content.min(batch_w));
        widths.push(w);
        // Detected boxes are rectangles, so the map from the model input to the page is affine:
        // one step right or down in the input is a fixed step on the page.
        let [tl, tr, _, bl] = crop.quad;
        let across = ((tr.0 - tl.0) / w as f32, (tr.1 - tl.1) / w as f32);
        let down = ((bl.0 - tl.0) / h as f32, (bl.1 - tl.1) / h as f32);
        let line = &mut out[i * 3 * plane..(i + 1) * 3 * plane];
        for y in 0..h as usize {
            let fy = y as f32 + 0.5;
            // Pixel centres: the -0.5 turns a position into a sampling coordinate.
            let row = (tl.0 + fy * down.0 - 0.5, tl.1 + fy * down.1 - 0.5);
            for x in 0..w as usize {
                let fx = x as f32 + 0.5;
                let (sx, sy) = (row.0 + fx * across.0, row.1 + fx * across.1);
                let px = bilinear(page, sx, sy);
                let at = y * batch_w as usize + x;
                // Tensor channels are BGR: channel c takes RGB channel 2 - c.
                for c in 0..3 {
                    line[c * plane + at] = px[2 - c] * (1.0 / 127.5) - 1.0;
                }
            }
        }
    }
    (input, widths)
}

/// Bilinear sample with edge replication.
fn bilinear(img: &RgbImage, x: f32, y: f32) -> [f32; 3] {
    let (width, height) = img.dimensions();
    let x = x.clamp(0.0, (width - 1) as f32);
    let y = y.clamp(0.0, (height - 1) as f32);
    let (x0, y0) = (x as usize, y as usize);
    let (x1, y1) = (
        (x0 + 1).min(width as usize - 1),
        (y0 + 1).min(height as usize - 1),
    );
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let raw = img.as_raw();
    let stride = width as usize * 3;
    let (r0, r1) = (y0 * stride, y1 * stride);
    std::array::from_fn(|k| {
        let a = raw[r0 + x0 * 3 + k] as f32;
        let b = raw[r0 + x1 * 3 + k] as f32;
        let c = raw[r1 + x0 * 3 + k] as f32;
        let d = raw[r1 + x1 * 3 + k] as f32;
        let top = a + (b - a) * fx;
        top + (c + (d - c) * fx - top) * fy
    })
}

/// Greedy CTC decoding of one line's `[T, C]` probabilities: the best class per step, repeats
/// collapsed, blanks (class 0) dropped. `classes[k - 1]` is the character of class `k`; only
/// classes with `allowed[k]` compete (the blank always does), so a character of a script the
/// page cannot contain never wins a step.
pub fn decode(probs: ArrayView2<f32>, classes: &[char], allowed: &[bool], content: f32) -> RecLine {
    // Softmax rows sum to 1, so a class above one half is the best one and the scan can stop
    // there: for the blank class, which most timesteps are, that is the first element. Checked
    // on the first row, in case a model's output is not normalised.
    let normalised = probs
        .outer_iter()
        .next()
        .is_some_and(|row| (row.sum() - 1.0).abs() < 1e-2);
    let mut glyphs = Vec::new();
    let mut previous = 0usize;
    for (step, row) in probs.outer_iter().enumerate() {
        let mut best = (0usize, f32::MIN);
        for (k, &p) in row.iter().enumerate() {
            if p > best.1 && (k == 0 || allowed.get(k).copied().unwrap_or(true)) {
                best = (k, p);
                if normalised && p > 0.5 {
                    break;
                }
            }
        }
        let (best, prob) = best;
        if best != 0
            && best != previous
            && let Some(&ch) = classes.get(best - 1)
        {
            glyphs.push(Glyph { ch, step, prob });
        }
        previous = best;
    }
    RecLine {
        glyphs,
        steps: probs.nrows().max(1),
        content: content.max(1e-3),
    }
}

/// A word of a recognised line: its text, its span along the line (0..1) and its confidence.
#[derive(Clone, Debug, PartialEq)]
pub struct WordSpan {
    pub text: String,
    pub start: f32,
    pub end: f32,
    pub confidence: f32,
}

/// A gap between characters of at least this many character pitches is a word space the model
/// did not emit. Measured on the sample sets: at 2.2, wide letters (`m`, `w`) split words
/// (`Co mmittee`) more often than real spaces were found.
const SPLIT_GAP: f32 = 3.0;

/// Splits a line into words at spaces, and also at gaps between characters much wider than the
/// line's usual character pitch: PP-OCR models often drop the space class between words
/// (`theFuture`), and the timesteps still show the gap.
pub fn words(line: &RecLine) -> Vec<WordSpan> {
    let glyphs: Vec<&Glyph> = line.glyphs.iter().filter(|g| g.ch != ' ').collect();
    if glyphs.is_empty() {
        return Vec::new();
    }
    let pitch = median_pitch(&line.glyphs);
    let mut groups: Vec<Vec<&Glyph>> = vec![vec![glyphs[0]]];
    let mut last_step = glyphs[0].step;
    for g in line.glyphs.iter().skip_while(|g| g.step <= glyphs[0].step) {
        if g.ch == ' ' {
            if groups.last().is_some_and(|w| !w.is_empty()) {
                groups.push(Vec::new());
            }
            continue;
        }
        let gap = (g.step - last_step) as f32;
        if pitch.is_some_and(|p| gap >= SPLIT_GAP * p)
            && groups.last().is_some_and(|w| !w.is_empty())
        {
            groups.push(Vec::new());
        }
        if let Some(word) = groups.last_mut() {
            word.push(g);
        }
        last_step = g.step;
    }
    let half = pitch.unwrap_or(1.0) / 2.0;
    // One timestep as a fraction of the line: the narrowest a word can be.
    let step = 1.0 / (line.steps as f32 * line.content);
    groups
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(|w| {
            let first = w[0].step as f32;
            let last = w[w.len() - 1].step as f32;
            let end = line.position(last + half);
            WordSpan {
                text: w.iter().map(|g| g.ch).collect(),
                // A last character emitted in the padding after the line still gets a box.
                start: line.position(first - half).min((end - step).max(0.0)),
                end,
                confidence: w.iter().map(|g| g.prob).sum::<f32>() / w.len() as f32,
            }
        })
        .collect()
}

/// The median step distance between consecutive characters inside words, if there are enough.
fn median_pitch(glyphs: &[Glyph]) -> Option<f32> {
    let mut gaps: Vec<usize> = glyphs
        .windows(2)
        .filter(|w| w[0].ch != ' ' && w[1].ch != ' ')
        .map(|w| w[1].step - w[0].step)
        .collect();
    if gaps.len() < 4 {
        return None;
    }
    gaps.sort_unstable();
    Some(gaps[gaps.len() / 2] as f32)
}

/// The page-pixel box of the part of the line between fractions `start` and `end` of its length.
pub fn span_box(quad: &Quad, start: f32, end: f32) -> [(f32, f32); 4] {
    let [tl, tr, br, bl] = *quad;
    let lerp =
        |a: (f32, f32), b: (f32, f32), t: f32| (a.0 + (b.0 - a.0) * t, a.1 + (b.1 - a.1) * t);
    [
        lerp(tl, tr, start),
        lerp(tl, tr, end),
        lerp(bl, br, end),
        lerp(bl, br, start),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn one_hot(seq: &[usize], classes: usize) -> Array2<f32> {
        let mut a = Array2::<f32>::zeros((seq.len(), classes));
        for (t, &k) in seq.iter().enumerate() {
            a[[t, k]] = 0.9;
        }
        a
    }

    #[test]
    fn ctc_collapses_repeats_and_drops_blanks() {
        let classes = ['a', 'b', ' '];
        let probs = one_hot(&[0, 1, 1, 0, 1, 2, 2, 3, 0, 2], 4);
        let line = decode(probs.view(), &classes, &[], 1.0);
        let text: String = line.glyphs.iter().map(|g| g.ch).collect();
        assert_eq!(text, "aab b");
        assert_eq!(line.glyphs[0].step, 1);
        assert_eq!(line.glyphs[2].step, 5);
    }

    #[test]
    fn words_split_at_spaces_and_wide_gaps() {
        let g = |ch, step| Glyph {
            ch,
            step,
            prob: 0.9,
        };
        // "ab cd" with an explicit space, then "ef" after a gap four times the pitch.
        let line = RecLine {
            glyphs: vec![
                g('a', 0),
                g('b', 2),
                g(' ', 3),
                g('c', 4),
                g('d', 6),
                g('e', 14),
                g('f', 16),
            ],
            steps: 20,
            content: 1.0,
        };
        let words = words(&line);
        let texts: Vec<&str> = words.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(texts, ["ab", "cd", "ef"]);
        assert!(words[0].start < words[0].end && words[0].end <= words[1].start);
        assert!(words[2].end <= 1.0);
    }

    #[test]
    fn early_stop_decodes_like_a_full_scan() {
        // Softmax-like rows (sum 1) where the best class is sometimes below one half.
        let rows = [
            [0.9, 0.05, 0.05, 0.0],
            [0.2, 0.45, 0.35, 0.0],
            [0.1, 0.1, 0.7, 0.1],
            [0.3, 0.3, 0.05, 0.35],
        ];
        let probs = Array2::from_shape_fn((4, 4), |(t, k)| rows[t][k]);
        let scaled = probs.mapv(|p| p * 3.0); // not normalised: must fall back to a full scan
        let classes = ['a', 'b', 'c'];
        let text = |l: RecLine| l.glyphs.iter().map(|g| g.ch).collect::<String>();
        assert_eq!(text(decode(probs.view(), &classes, &[], 1.0)), "abc");
        assert_eq!(text(decode(scaled.view(), &classes, &[], 1.0)), "abc");
    }

    #[test]
    fn masked_classes_lose_to_the_best_allowed_one() {
        // Step 1 prefers `月` (0.6) over `a` (0.3): masked, `a` wins; the blank stays allowed.
        let rows = [[0.9, 0.05, 0.05], [0.1, 0.3, 0.6], [0.8, 0.1, 0.1]];
        let probs = Array2::from_shape_fn((3, 3), |(t, k)| rows[t][k]);
        let classes = ['a', '月'];
        let text = |l: RecLine| l.glyphs.iter().map(|g| g.ch).collect::<String>();
        assert_eq!(text(decode(probs.view(), &classes, &[], 1.0)), "月");
        let latin = [true, true, false];
        let line = decode(probs.view(), &classes, &latin, 1.0);
        assert!((line.glyphs[0].prob - 0.3).abs() < 1e-6);
        assert_eq!(text(line), "a");
    }

    #[test]
    fn batches_hold_lines_of_similar_width() {
        let crop = |w: f32| LineCrop::new([(0.0, 0.0), (w, 0.0), (w, 10.0), (0.0, 10.0)]);
        let crops: Vec<LineCrop> = [50.0, 20.0, 21.0, 100.0, 52.0, 22.0].map(crop).into();
        let got = batches(&crops, 2, 1.0);
        assert_eq!(got, vec![vec![1, 2], vec![5], vec![0, 4], vec![3]]);
        // Below the minimum width every line pads to the same width: one batch.
        assert_eq!(batches(&crops[1..3], 6, 50.0).len(), 1);
    }

    #[test]
    fn an_endless_line_is_squeezed_into_a_bounded_input() {
        let page = RgbImage::new(64, 8);
        let crop = LineCrop::new([(0.0, 0.0), (5.0e6, 0.0), (5.0e6, 4.0), (0.0, 4.0)]);
        let config = RecConfig::default();
        let (input, contents) = preprocess(&page, &[&crop], &config);
        assert_eq!(
            input.shape()[3],
            (config.max_width + config.end_padding) as usize
        );
        // The whole line, squeezed into the widest input.
        let columns = contents[0] * input.shape()[3] as f32;
        assert!((columns - config.max_width as f32).abs() < 0.5, "{columns}");
    }

    #[test]
    fn tall_boxes_are_read_rotated() {
        let crop = LineCrop::new([(0.0, 0.0), (10.0, 0.0), (10.0, 100.0), (0.0, 100.0)]);
        assert_eq!((crop.width, crop.height), (100.0, 10.0));
        assert_eq!(crop.quad[0], (10.0, 0.0));
    }
}
