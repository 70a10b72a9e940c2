//! PP-OCR (PaddleOCR) through ONNX Runtime: DB text detection, then CTC recognition of each
//! detected line, then reading order. The default CPU engine.
//!
//! Sessions live in small pools: a session runs one request at a time, so concurrent pages (or
//! recognition batches of one page) each take a session of their own and run in parallel.

pub mod cls;
pub mod det;
pub mod rec;

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use image::RgbImage;
use ndarray::Axis;
use ort::session::Session;
use ort::value::TensorRef;

use super::order::{self, Piece};
use super::runtime::{self, SessionOptions};
use super::{BBox, Engine, OcrError, PageResult, PageSource, Word};
use det::DetConfig;
use rec::{LineCrop, RecConfig};

/// Corners of a text box in page pixels: top-left, top-right, bottom-right, bottom-left.
pub type Quad = [(f32, f32); 4];

/// The model set used unless configured otherwise; chosen by measurement (docs/models.md).
pub const DEFAULT_MODEL_SET: &str = "v6-tiny";

#[derive(Clone, Debug)]
pub struct PpOcrConfig {
    /// The directory `scripts/fetch-models.sh` fills: `ppocr/<set>/{det,rec}.onnx`, `dict.txt`.
    pub models_dir: PathBuf,
    pub model_set: String,
    pub det: DetConfig,
    pub rec: RecConfig,
    pub session: SessionOptions,
    /// Sessions per model: how many pages or batches run at once.
    pub sessions: usize,
    /// Run the 0°/180° line orientation classifier (`ppocr/cls.onnx`) before recognition: for
    /// documents scanned upside down. Off by default, as in PaddleOCR: it costs a model call
    /// per line.
    pub classify_orientation: bool,
}

impl PpOcrConfig {
    pub fn new(models_dir: impl Into<PathBuf>) -> PpOcrConfig {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        PpOcrConfig {
            models_dir: models_dir.into(),
            model_set: DEFAULT_MODEL_SET.into(),
            det: DetConfig::default(),
            rec: RecConfig::default(),
            // One thread per session and one session per core keeps every core busy without
            // oversubscription.
            session: SessionOptions {
                intra_threads: 1,
                ..SessionOptions::default()
            },
            sessions: cores,
            classify_orientation: false,
        }
    }

    fn set_dir(&self) -> PathBuf {
        self.models_dir.join("ppocr").join(&self.model_set)
    }
}

/// A detected line as the models saw it: its box (text running from corner 0 to corner 1), the
/// decoded text exactly as the recogniser produced it, its mean confidence, and its words.
#[derive(Clone, Debug)]
pub struct DetectedLine {
    pub quad: Quad,
    pub text: String,
    pub score: f32,
    pub words: Vec<Word>,
}

pub struct PpOcr {
    det: SessionPool,
    rec: SessionPool,
    cls: Option<SessionPool>,
    /// `classes[k - 1]` is the character of model class `k` (class 0 is the CTC blank).
    classes: Vec<char>,
    config: PpOcrConfig,
}

impl PpOcr {
    /// Loads the model set with the ONNX Runtime library at `library`.
    pub fn load(library: &Path, config: PpOcrConfig) -> Result<PpOcr, OcrError> {
        let env = runtime::environment(library)?;
        let dir = config.set_dir();
        let classes = load_dictionary(&dir.join("dict.txt"))?;
        let sessions = config.sessions.max(1);
        let build = |model: PathBuf| -> Result<SessionPool, OcrError> {
            let sessions = (0..sessions)
                .map(|_| runtime::session(env, &model, &config.session))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(SessionPool::new(sessions))
        };
        let cls = match config.classify_orientation {
            true => Some(build(config.models_dir.join("ppocr").join("cls.onnx"))?),
            false => None,
        };
        Ok(PpOcr {
            det: build(dir.join("det.onnx"))?,
            rec: build(dir.join("rec.onnx"))?,
            cls,
            classes,
            config,
        })
    }

    /// Text boxes on the page.
    fn detect(&self, page: &RgbImage) -> Result<Vec<Quad>, OcrError> {
        let (map_w, map_h) =
            det::input_size(page.width(), page.height(), self.config.det.limit_side_len);
        let prob = self.det.with(|session| -> Result<Vec<f32>, OcrError> {
            let input = det::preprocess(page, &self.config.det);
            let outputs = session.run(ort::inputs![TensorRef::from_array_view(&input)?])?;
            let (_, data) = outputs[0].try_extract_tensor::<f32>()?;
            Ok(data.to_vec())
        })?;
        if prob.len() != (map_w * map_h) as usize {
            return Err(OcrError::Inference(format!(
                "detection map has {} values, expected {map_w}×{map_h}",
                prob.len()
            )));
        }
        Ok(det::postprocess(
            &prob,
            map_w,
            map_h,
            page.width(),
            page.height(),
            &self.config.det,
        ))
    }

    /// Every detected line with its text, in detection order (before reading order), without
    /// lines below the confidence threshold.
    ///
    /// With the orientation classifier on, a page whose lines are mostly upside down is turned
    /// before reading, so that its reading order is right too; the rotation is returned (0 or
    /// 180), and these boxes are those of the turned page.
    pub fn lines(&self, page: &RgbImage) -> Result<(Vec<DetectedLine>, u16), OcrError> {
        if page.width() == 0 || page.height() == 0 {
            return Ok((Vec::new(), 0));
        }
        let mut crops: Vec<LineCrop> = self.detect(page)?.into_iter().map(LineCrop::new).collect();
        if let Some(cls) = &self.cls {
            let turned = Self::orient(cls, page, &mut crops)?;
            if turned * 2 > crops.len() {
                let upright = image::imageops::rotate180(page);
                let mut crops: Vec<LineCrop> = self
                    .detect(&upright)?
                    .into_iter()
                    .map(LineCrop::new)
                    .collect();
                Self::orient(cls, &upright, &mut crops)?;
                return Ok((self.read_lines(&upright, crops)?, 180));
            }
        }
        Ok((self.read_lines(page, crops)?, 0))
    }

    fn read_lines(
        &self,
        page: &RgbImage,
        crops: Vec<LineCrop>,
    ) -> Result<Vec<DetectedLine>, OcrError> {
        let (width, height) = page.dimensions();
        let lines = self.read(page, &crops)?;
        Ok(crops
            .into_iter()
            .zip(lines)
            .filter(|(_, line)| line.score() >= self.config.rec.drop_score)
            .map(|(crop, line)| {
                let words = rec::words(&line)
                    .into_iter()
                    .map(|w| Word {
                        bbox: quad_bbox(&rec::span_box(&crop.quad, w.start, w.end), width, height),
                        text: w.text,
                        confidence: w.confidence,
                    })
                    .collect();
                DetectedLine {
                    quad: crop.quad,
                    text: line.glyphs.iter().map(|g| g.ch).collect(),
                    score: line.score(),
                    words,
                }
            })
            .collect())
    }

    /// Turns the lines the orientation classifier reads as upside down; returns how many.
    fn orient(
        cls: &SessionPool,
        page: &RgbImage,
        crops: &mut [LineCrop],
    ) -> Result<usize, OcrError> {
        const BATCH: usize = 6;
        let mut turned = 0;
        for chunk in crops.chunks_mut(BATCH) {
            let members: Vec<&LineCrop> = chunk.iter().collect();
            let input = cls::preprocess(page, &members);
            turned += cls.with(|session| -> Result<usize, OcrError> {
                let outputs = session.run(ort::inputs![TensorRef::from_array_view(&input)?])?;
                Ok(cls::apply(chunk, outputs[0].try_extract_array::<f32>()?))
            })?;
        }
        Ok(turned)
    }

    /// Recognises every crop; batches run in parallel, one per free session.
    fn read(&self, page: &RgbImage, crops: &[LineCrop]) -> Result<Vec<rec::RecLine>, OcrError> {
        let rec = &self.config.rec;
        let batches = rec::batches(
            crops,
            rec.batch_size,
            rec.min_width as f32 / rec.height as f32,
        );
        let next = std::sync::atomic::AtomicUsize::new(0);
        let workers = self.config.sessions.max(1).min(batches.len().max(1));
        let results: Vec<Result<Vec<(usize, rec::RecLine)>, OcrError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(batch) = batches.get(i) else {
                                return Ok(done);
                            };
                            let members: Vec<&LineCrop> =
                                batch.iter().map(|&k| &crops[k]).collect();
                            let lines = self.read_batch(page, &members)?;
                            done.extend(batch.iter().copied().zip(lines));
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(OcrError::Inference("recognition thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut lines: Vec<Option<rec::RecLine>> = vec![None; crops.len()];
        for result in results {
            for (k, line) in result? {
                lines[k] = Some(line);
            }
        }
        Ok(lines.into_iter().flatten().collect())
    }

    fn read_batch(
        &self,
        page: &RgbImage,
        crops: &[&LineCrop],
    ) -> Result<Vec<rec::RecLine>, OcrError> {
        // Sampled inside the borrow, so at most one input tensor per session is alive.
        self.rec.with(|session| {
            let (input, contents) = rec::preprocess(page, crops, &self.config.rec);
            let outputs = session.run(ort::inputs![TensorRef::from_array_view(&input)?])?;
            let probs = outputs[0].try_extract_array::<f32>()?;
            if probs.ndim() != 3 || probs.shape()[0] != crops.len() {
                return Err(OcrError::Inference(format!(
                    "recognition output has shape {:?}, expected [{}, T, C]",
                    probs.shape(),
                    crops.len()
                )));
            }
            probs
                .axis_iter(Axis(0))
                .zip(contents)
                .map(|(line, content)| {
                    let line = line
                        .into_dimensionality::<ndarray::Ix2>()
                        .map_err(|e| OcrError::Inference(e.to_string()))?;
                    Ok(rec::decode(line, &self.classes, content))
                })
                .collect::<Result<Vec<_>, OcrError>>()
        })
    }
}

impl Engine for PpOcr {
    fn name(&self) -> &'static str {
        "ppocr"
    }

    fn languages(&self) -> &[&'static str] {
        &["en"]
    }

    fn parallelism(&self) -> usize {
        self.config.sessions.max(1)
    }

    fn recognize(&self, page: &RgbImage) -> Result<PageResult, OcrError> {
        let factor = read_factor(page.width(), page.height());
        if factor == 1 {
            return self.recognize_as_is(page);
        }
        // An integer box filter: each output pixel is the mean of a factor × factor square.
        let small = image::imageops::thumbnail(page, page.width() / factor, page.height() / factor);
        let mut result = self.recognize_as_is(&small)?;
        result.scale_up(factor, page.width(), page.height());
        Ok(result)
    }
}

/// Pages above this many pixels are read at an integer fraction of their size: the lines of a
/// 600-dpi scan are still several times the recogniser's 48-pixel input at 300 dpi, and reading
/// at full size costs memory and time for nothing (detection scales pages down anyway).
const READ_MAX_PIXELS: u64 = 16_000_000;

/// The smallest integer factor that brings the page within [`READ_MAX_PIXELS`].
fn read_factor(width: u32, height: u32) -> u32 {
    let pixels = u64::from(width) * u64::from(height);
    let mut factor = 1u32;
    while pixels / u64::from(factor * factor) > READ_MAX_PIXELS {
        factor += 1;
    }
    factor
}

impl PpOcr {
    fn recognize_as_is(&self, page: &RgbImage) -> Result<PageResult, OcrError> {
        let (lines, rotation) = self.lines(page)?;
        let pieces = lines
            .into_iter()
            .filter_map(|line| {
                let bbox = BBox::union(line.words.iter().map(|w| w.bbox))?;
                Some(Piece {
                    bbox,
                    words: line.words,
                })
            })
            .collect();
        let mut result = PageResult {
            width: page.width(),
            height: page.height(),
            rotation,
            blocks: order::layout(pieces),
            source: PageSource::Ocr,
            failure: None,
        };
        if rotation == 180 {
            // Read on the turned page; boxes go back onto the image as given.
            result.turn_boxes();
        }
        Ok(result)
    }
}

/// The axis-aligned page box around a quad.
fn quad_bbox(quad: &Quad, width: u32, height: u32) -> BBox {
    let (x0, y0, x1, y1) = det::extent(quad);
    let floor = |v: f32| v.max(0.0).floor() as u32;
    let ceil = |v: f32| v.max(0.0).ceil() as u32;
    BBox::new(floor(x0), floor(y0), ceil(x1), ceil(y1)).clamp(width, height)
}

/// One character per line, then the space class PP-OCR appends.
fn load_dictionary(path: &Path) -> Result<Vec<char>, OcrError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        OcrError::Model(format!(
            "{}: {e}; run scripts/fetch-models.sh",
            path.display()
        ))
    })?;
    let mut classes: Vec<char> = text
        .lines()
        .map(|line| line.trim_end_matches('\r').chars().next().unwrap_or(' '))
        .collect();
    classes.push(' ');
    Ok(classes)
}

/// Sessions of one model; `with` borrows a free one, waiting if all are busy.
struct SessionPool {
    free: Mutex<Vec<Session>>,
    returned: Condvar,
}

impl SessionPool {
    fn new(sessions: Vec<Session>) -> SessionPool {
        SessionPool {
            free: Mutex::new(sessions),
            returned: Condvar::new(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Session) -> R) -> R {
        let session = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                match free.pop() {
                    Some(session) => break session,
                    None => free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner()),
                }
            }
        };
        // Put the session back even if `f` panics, so the pool never shrinks.
        struct Return<'a>(&'a SessionPool, Option<Session>);
        impl Drop for Return<'_> {
            fn drop(&mut self) {
                if let Some(session) = self.1.take() {
                    self.0
                        .free
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(session);
                    self.0.returned.notify_one();
                }
            }
        }
        let mut guard = Return(self, Some(session));
        f(guard
            .1
            .as_mut()
            .expect("the session was just put in the guard"))
    }
}

#[cfg(test)]
mod tests {
    use super::read_factor;

    #[test]
    fn pages_over_16_megapixels_are_read_at_an_integer_fraction() {
        assert_eq!(read_factor(1654, 2339), 1, "A4 at 200 dpi");
        assert_eq!(read_factor(3508, 4961), 2, "A4 at 600 dpi, read at 300");
        assert_eq!(read_factor(9000, 9000), 3);
        assert_eq!(read_factor(0, 0), 1);
    }
}
