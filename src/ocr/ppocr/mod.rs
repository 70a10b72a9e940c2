//! PP-OCR (PaddleOCR) through ONNX Runtime: DB text detection, then CTC recognition of each
//! detected line, then reading order. The default CPU engine.
//!
//! Sessions live in small pools: a session runs one request at a time, so concurrent pages (or
//! recognition batches of one page) each take a session of their own and run in parallel.

pub mod cls;
pub mod det;
pub mod orient;
pub mod rec;

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use image::RgbImage;
use ndarray::Axis;
use ort::session::Session;
use ort::value::TensorRef;

use super::lang::Lang;
use super::order::{self, Piece};
use super::runtime::{self, SessionOptions};
use super::{BBox, Engine, OcrError, PageOptions, PageResult, PageSource, Word};
use det::DetConfig;
use orient::Frame;
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
    /// Run the 0°/180° orientation classifier (`ppocr/cls.onnx`) on every line, for pages
    /// that mix upright and upside-down lines. Whole pages are turned without it (the
    /// classifier sees a sample of each page's lines); this costs a model call per six lines.
    pub classify_orientation: bool,
    /// The scripts pages are read in unless a task asks for others.
    pub lang: Lang,
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
            lang: Lang::default(),
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

/// A page's lines and the frame they were read in (orientation and skew).
#[derive(Clone, Debug)]
pub struct PageReading {
    pub lines: Vec<DetectedLine>,
    pub frame: Frame,
}

pub struct PpOcr {
    det: SessionPool,
    rec: SessionPool,
    cls: SessionPool,
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
        let cls = build(config.models_dir.join("ppocr").join("cls.onnx"))?;
        check_lang(&config.lang, &classes, &config.model_set)?;
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
            det::input_size(page.width(), page.height(), self.config.det.max_pixels);
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
    /// lines below the confidence threshold, and the frame the page was read in: its
    /// orientation and skew. Boxes are on the page as given.
    ///
    /// A page whose lines mostly run up or down is detected again turned by 90 degrees (the
    /// detector finds vertical lines less reliably); the orientation classifier then tells,
    /// from a sample of the longest lines, whether the page so turned is upside down. Turning
    /// only reorders the corners of the boxes, which stay in the page as given: the recogniser
    /// samples each line along its own direction, and the skew only levels the reading order.
    pub fn lines(&self, page: &RgbImage, lang: &Lang) -> Result<PageReading, OcrError> {
        let mut frame = Frame::new(0, page.width(), page.height());
        if page.width() == 0 || page.height() == 0 {
            return Ok(PageReading {
                lines: Vec::new(),
                frame,
            });
        }
        let mut quads = self.detect(page)?;
        if orient::sideways(&quads) {
            frame = Frame::new(90, page.width(), page.height());
            quads = self
                .detect(&image::imageops::rotate90(page))?
                .into_iter()
                .map(|q| q.map(|p| frame.page(p)))
                .collect();
        }
        let oriented = |frame: &Frame| -> Vec<LineCrop> {
            quads
                .iter()
                .map(|q| LineCrop::new(frame.orient(q)))
                .collect()
        };
        let mut crops = oriented(&frame);
        if self.upside_down(page, &crops)? {
            frame = Frame::new(frame.rotation + 180, page.width(), page.height());
            crops = oriented(&frame);
        }
        if self.config.classify_orientation {
            self.classify_lines(page, &mut crops)?;
        }
        let level: Vec<Quad> = crops.iter().map(|c| c.quad).collect();
        frame.angle = orient::text_angle(&frame, &level);
        let allowed: Vec<bool> = std::iter::once(true)
            .chain(self.classes.iter().map(|&c| lang.allows(c)))
            .collect();
        Ok(PageReading {
            lines: self.read_lines(page, crops, &allowed)?,
            frame,
        })
    }

    fn read_lines(
        &self,
        page: &RgbImage,
        crops: Vec<LineCrop>,
        allowed: &[bool],
    ) -> Result<Vec<DetectedLine>, OcrError> {
        let (width, height) = page.dimensions();
        let margin = self.config.rec.end_margin;
        let read: Vec<LineCrop> = crops.iter().map(|c| c.widened(margin)).collect();
        let lines = self.read(page, &read, allowed)?;
        Ok(crops
            .into_iter()
            .zip(read)
            .zip(lines)
            .filter(|(_, line)| line.score() >= self.config.rec.drop_score)
            .map(|((crop, read), line)| {
                let words = rec::words(&line)
                    .into_iter()
                    .map(|w| Word {
                        bbox: quad_bbox(&rec::span_box(&read.quad, w.start, w.end), width, height),
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

    /// Whether the page, read with these crops, is upside down: the orientation classifier's
    /// verdict on the longest lines, which carry the most evidence. One model call per page.
    fn upside_down(&self, page: &RgbImage, crops: &[LineCrop]) -> Result<bool, OcrError> {
        let mut longest: Vec<&LineCrop> = crops.iter().filter(|c| c.width >= c.height).collect();
        longest.sort_by(|a, b| b.width.total_cmp(&a.width));
        // The middle of each line at the classifier's own aspect ratio: a whole long line
        // squeezed into its input would be a smear.
        let sample: Vec<LineCrop> = longest
            .into_iter()
            .take(cls::PAGE_SAMPLE)
            .map(|c| c.window(cls::WIDTH as f32 / cls::HEIGHT as f32))
            .collect();
        if sample.is_empty() {
            return Ok(false);
        }
        let input = cls::preprocess(page, &sample.iter().collect::<Vec<_>>());
        self.cls.with(|session| -> Result<bool, OcrError> {
            let outputs = session.run(ort::inputs![TensorRef::from_array_view(&input)?])?;
            Ok(cls::mostly_turned(outputs[0].try_extract_array::<f32>()?))
        })
    }

    /// Turns the single lines the orientation classifier reads as upside down (mixed pages).
    fn classify_lines(&self, page: &RgbImage, crops: &mut [LineCrop]) -> Result<(), OcrError> {
        for chunk in crops.chunks_mut(cls::PAGE_SAMPLE) {
            let members: Vec<&LineCrop> = chunk.iter().collect();
            let input = cls::preprocess(page, &members);
            self.cls.with(|session| -> Result<(), OcrError> {
                let outputs = session.run(ort::inputs![TensorRef::from_array_view(&input)?])?;
                cls::apply(chunk, outputs[0].try_extract_array::<f32>()?);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Recognises every crop; batches run in parallel, one per free session.
    fn read(
        &self,
        page: &RgbImage,
        crops: &[LineCrop],
        allowed: &[bool],
    ) -> Result<Vec<rec::RecLine>, OcrError> {
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
                            let lines = self.read_batch(page, &members, allowed)?;
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
        allowed: &[bool],
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
                    Ok(rec::decode(line, &self.classes, allowed, content))
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

    fn recognize(&self, page: &RgbImage, options: &PageOptions) -> Result<PageResult, OcrError> {
        let lang = match &options.lang {
            Some(lang) => {
                check_lang(lang, &self.classes, &self.config.model_set)?;
                lang
            }
            None => &self.config.lang,
        };
        let factor = read_factor(page.width(), page.height());
        if factor == 1 {
            return self.recognize_as_is(page, lang);
        }
        // An integer box filter: each output pixel is the mean of a factor × factor square.
        let small = image::imageops::thumbnail(page, page.width() / factor, page.height() / factor);
        let mut result = self.recognize_as_is(&small, lang)?;
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
    fn recognize_as_is(&self, page: &RgbImage, lang: &Lang) -> Result<PageResult, OcrError> {
        let PageReading { lines, frame } = self.lines(page, lang)?;
        // Reading order is found on the level page; the boxes given out stay on the image.
        let pieces = lines
            .into_iter()
            .filter(|line| !line.words.is_empty())
            .map(|line| Piece {
                bbox: frame.level_box(&line.quad),
                words: line.words,
            })
            .collect();
        let mut blocks = order::layout(pieces);
        order::fit_boxes(&mut blocks);
        Ok(PageResult {
            width: page.width(),
            height: page.height(),
            rotation: frame.rotation,
            // Rounded to what the estimate can tell; `+ 0.0` turns -0 into 0.
            skew: (frame.skew_degrees() * 100.0).round() / 100.0 + 0.0,
            blocks,
            source: PageSource::Ocr,
            failure: None,
        })
    }
}

/// The axis-aligned page box around a quad.
fn quad_bbox(quad: &Quad, width: u32, height: u32) -> BBox {
    let (x0, y0, x1, y1) = det::extent(quad);
    let floor = |v: f32| v.max(0.0).floor() as u32;
    let ceil = |v: f32| v.max(0.0).ceil() as u32;
    BBox::new(floor(x0), floor(y0), ceil(x1), ceil(y1)).clamp(width, height)
}

/// Refuses scripts the model set cannot read, rather than reading them as something else.
fn check_lang(lang: &Lang, classes: &[char], model_set: &str) -> Result<(), OcrError> {
    match lang.missing_from(classes).as_slice() {
        [] => Ok(()),
        missing => {
            let names: Vec<String> = missing
                .iter()
                .map(|s| format!("{s:?}").to_lowercase())
                .collect();
            Err(OcrError::Unsupported(format!(
                "the PP-OCR model set {model_set} reads no {} characters (lang {lang})",
                names.join(" or ")
            )))
        }
    }
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
