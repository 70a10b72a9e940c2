//! Entry points for fuzzing what parses untrusted bytes. Each takes arbitrary bytes and must
//! return, whatever they are: an `Err` is fine, a panic, a hang or a runaway allocation is a
//! finding.
//!
//! The cargo-fuzz targets in `fuzz/` are one-line wrappers around these (`make fuzz`), and the
//! test suite runs every one over the seed corpus and every past finding (`fuzz/regressions/`).
//! Limits are small (4 MP pages, 4 pages, 72 dpi) so each input is quick; the code paths are
//! the production ones.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::document::{self, Limits, ReadOptions};
use crate::ocr::{BBox, Block, Line, PageResult, PageSource, Word};
use crate::render::{DocumentInfo, Format};
use crate::tasks::OcrPolicy;

/// A fuzz target: arbitrary bytes in, nothing out.
pub type Target = fn(&[u8]);

/// The fuzz targets by name, as `fuzz/fuzz_targets/` and `fuzz/regressions/` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("decode_image", decode_image),
    ("decode_tiff", decode_tiff),
    ("decode_pdf", decode_pdf),
    ("multipart", multipart),
    ("qwen3vl_html", qwen3vl_html),
    ("render", render),
    ("config", config),
];

fn limits() -> Limits {
    Limits {
        max_pixels: 4_000_000,
        max_pages: 4,
        pdf_dpi: 72,
    }
}

/// A file of this thread's to hand decoders that read from a path, rewritten for each input.
fn scratch_file(data: &[u8]) -> PathBuf {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::Builder::new()
            .prefix("ocrd-fuzz-")
            .tempdir_in(if Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" })
            .expect("a temp dir for fuzz inputs");
    }
    let path = DIR.with(|dir| dir.path().join("input"));
    let mut file = std::fs::File::create(&path).expect("the fuzz input file");
    file.write_all(data).expect("writing the fuzz input");
    path
}

/// Reads every page (at most [`limits`]) of a document, as the worker does.
fn read_document(path: &Path, policy: OcrPolicy) {
    let options = ReadOptions::policy(policy);
    if let Ok(pages) = document::open(path, limits(), &options) {
        for page in pages {
            let _ = page;
        }
    }
}

/// Type sniffing, then decoding with limits: whatever the bytes claim to be.
pub fn decode_image(data: &[u8]) {
    let _ = document::Kind::sniff(data);
    read_document(&scratch_file(data), OcrPolicy::Force);
}

/// TIFF pages, multi-page and compressed, without the sniffing step in front.
pub fn decode_tiff(data: &[u8]) {
    let file = std::fs::File::open(scratch_file(data)).expect("the fuzz input file");
    if let Ok(pages) = document::tiff_pages::TiffPages::new(std::io::BufReader::new(file), limits())
    {
        for page in pages {
            let _ = page;
        }
    }
}

/// Opening a PDF, drawing its pages and extracting their text layers. The last byte picks the
/// policy, so both the drawing and the text-layer paths are reached.
pub fn decode_pdf(data: &[u8]) {
    let policy = match data.last().map(|b| b % 3) {
        Some(0) => OcrPolicy::Force,
        Some(1) => OcrPolicy::Skip,
        _ => OcrPolicy::Auto,
    };
    let options = ReadOptions::policy(policy);
    // Two pages at 36 dpi: drawing is the slow part, and its code is the same at any scale.
    let limits = Limits {
        max_pages: 2,
        pdf_dpi: 36,
        ..limits()
    };
    if let Ok(pages) = document::pdf::PdfPages::new(data.to_vec(), limits, &options) {
        for page in pages {
            let _ = page;
        }
    }
}

/// The upload form as `POST /api/tasks` reads it: multipart parsing, field names, file names
/// (cleaned), option values, and the file's first bytes sniffed.
pub fn multipart(data: &[u8]) {
    use futures::StreamExt;
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime for the multipart fuzz target");
    }
    let mut headers = actix_web::http::header::HeaderMap::new();
    headers.insert(
        actix_web::http::header::CONTENT_TYPE,
        actix_web::http::header::HeaderValue::from_static("multipart/form-data; boundary=zz"),
    );
    let body = bytes::Bytes::copy_from_slice(data);
    let stream = futures::stream::iter([Ok::<_, actix_web::error::PayloadError>(body)]);
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let mut form = actix_multipart::Multipart::new(&headers, stream);
            while let Some(Ok(mut field)) = form.next().await {
                let name = field.name().unwrap_or_default().to_owned();
                if let Some(filename) = field.content_disposition().and_then(|d| d.get_filename()) {
                    let _ = crate::names::clean(filename, 255);
                }
                let mut value = Vec::new();
                while let Some(Ok(chunk)) = field.next().await {
                    value.extend_from_slice(&chunk);
                }
                let text = String::from_utf8_lossy(&value);
                match name.as_str() {
                    "formats" => {
                        for format in text.split(',') {
                            let _ = format.trim().parse::<Format>();
                        }
                    }
                    "ocr" => {
                        let _ = text.trim().parse::<OcrPolicy>();
                    }
                    "engine" => {
                        let _ = text.trim().parse::<crate::config::EngineKind>();
                    }
                    "file" => {
                        let _ = document::Kind::sniff(&value);
                    }
                    _ => {}
                }
            }
        })
    });
}

/// The Qwen3-VL answer parser; the first 8 bytes choose the frame.
pub fn qwen3vl_html(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let frame = crate::ocr::qwen3vl::html::Frame {
        scale: u32::from(bytes.u16()) % 2001,
        seen: (u32::from(bytes.u8()) * 16, u32::from(bytes.u8()) * 16),
        page: (u32::from(bytes.u16()), u32::from(bytes.u16())),
    };
    let answer = String::from_utf8_lossy(bytes.rest());
    let page = crate::ocr::qwen3vl::html::parse(&answer, frame, 0.9);
    assert_boxes_on_page(&page);
}

/// Every renderer, fed a page model made from the bytes.
pub fn render(data: &[u8]) {
    let pages = page_models(&mut Bytes::new(data));
    let source = source_image();
    let info = DocumentInfo {
        source_name: "fuzz.png",
        engine: "ppocr",
        languages: &["en"],
        source: &source,
        limits: limits(),
        password: None,
    };
    for format in Format::ALL {
        let _ = format.render(&pages, &info);
    }
}

/// Configuration files: parsing and validation.
pub fn config(data: &[u8]) {
    use figment::providers::{Format as _, Serialized, Toml};
    let text = String::from_utf8_lossy(data);
    let figment = figment::Figment::from(Serialized::defaults(crate::config::Config::default()))
        .merge(Toml::string(&text));
    if let Ok(config) = crate::config::Config::from_figment(figment) {
        let _ = config.to_redacted_toml();
    }
}

/// A page model may only hold boxes inside its page.
fn assert_boxes_on_page(page: &PageResult) {
    let whole = BBox::new(0, 0, page.width, page.height);
    for block in &page.blocks {
        assert!(whole.contains(&block.bbox), "{:?} off the page", block.bbox);
        for line in &block.lines {
            for word in &line.words {
                assert!(whole.contains(&word.bbox), "{:?} off the page", word.bbox);
            }
        }
    }
}

/// The searchable PDF of image input is made of the image: one small PNG per thread.
fn source_image() -> PathBuf {
    thread_local! {
        static SOURCE: (tempfile::TempDir, PathBuf) = {
            let dir = tempfile::tempdir().expect("a temp dir for the fuzz source image");
            let path = dir.path().join("page.png");
            image::RgbImage::from_pixel(64, 48, image::Rgb([250, 250, 250]))
                .save(&path)
                .expect("writing the fuzz source image");
            (dir, path)
        };
    }
    SOURCE.with(|(_, path)| path.clone())
}

/// Up to 3 pages of blocks, lines and words whose sizes, boxes, confidences and text come from
/// the bytes: empty text, huge boxes, NaN confidences and any Unicode included.
fn page_models(bytes: &mut Bytes<'_>) -> Vec<PageResult> {
    let mut pages = Vec::new();
    for _ in 0..bytes.u8() % 4 {
        let (width, height) = (u32::from(bytes.u16()), u32::from(bytes.u16()));
        let mut blocks = Vec::new();
        for _ in 0..bytes.u8() % 4 {
            let mut lines = Vec::new();
            for _ in 0..bytes.u8() % 4 {
                let mut words = Vec::new();
                for _ in 0..bytes.u8() % 5 {
                    words.push(Word {
                        text: bytes.text(),
                        bbox: bytes.bbox(),
                        confidence: bytes.f32(),
                    });
                }
                lines.push(Line {
                    words,
                    bbox: bytes.bbox(),
                    confidence: bytes.f32(),
                    estimated_words: bytes.u8().is_multiple_of(2),
                });
            }
            blocks.push(Block {
                lines,
                bbox: bytes.bbox(),
            });
        }
        pages.push(PageResult {
            width,
            height,
            rotation: [0, 90, 180, 270][usize::from(bytes.u8() % 4)],
            skew: f32::from(bytes.u8()) / 10.0 - 12.8,
            blocks,
            source: if bytes.u8().is_multiple_of(2) {
                PageSource::Ocr
            } else {
                PageSource::TextLayer
            },
            failure: None,
        });
    }
    pages
}

/// Reads values off the fuzz input; zeros once it runs out.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn new(data: &'a [u8]) -> Self {
        Bytes(data)
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn u8(&mut self) -> u8 {
        self.take(1).first().copied().unwrap_or(0)
    }

    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) << 8 | u16::from(self.u8())
    }

    fn f32(&mut self) -> f32 {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(&[self.u8(), self.u8(), self.u8(), self.u8()]);
        f32::from_le_bytes(raw)
    }

    fn bbox(&mut self) -> BBox {
        BBox::new(
            u32::from(self.u16()),
            u32::from(self.u16()),
            u32::from(self.u16()),
            u32::from(self.u16()),
        )
    }

    fn text(&mut self) -> String {
        let n = usize::from(self.u8() % 16);
        String::from_utf8_lossy(self.take(n)).into_owned()
    }

    fn rest(&mut self) -> &'a [u8] {
        self.take(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::TARGETS;
    use std::path::Path;

    fn inputs(dir: &Path) -> Vec<Vec<u8>> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    thread_local! {
        /// Panics on this thread, caught or not: libFuzzer counts a panic that a
        /// `catch_unwind` inside ocrd recovers from as a finding too.
        static PANICS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    fn count_panics() {
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                PANICS.with(|n| n.set(n.get() + 1));
                previous(info);
            }));
        });
    }

    /// Runs `target` on `input`; fails the test if anything panicked, even if it was caught.
    fn run(name: &str, target: super::Target, input: &[u8]) {
        let before = PANICS.with(|n| n.get());
        target(input);
        assert_eq!(
            PANICS.with(|n| n.get()),
            before,
            "fuzz target {name} panicked on an input of {} bytes",
            input.len()
        );
    }

    /// The short version of `make fuzz`: every target over its seeds, 32 mutations of each
    /// (truncations, flipped and inserted bytes), and every past finding.
    #[test]
    fn every_target_survives_its_seeds_their_mutations_and_past_findings() {
        count_panics();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let mut rng = fastrand::Rng::with_seed(0x0c7d);
        for (name, target) in TARGETS {
            let seeds = inputs(&root.join("seeds").join(name));
            assert!(!seeds.is_empty(), "fuzz/seeds/{name} is empty");
            let mut runs = 0;
            for seed in &seeds {
                run(name, *target, seed);
                for _ in 0..32 {
                    let mut input = seed.clone();
                    match rng.u8(..3) {
                        0 => input.truncate(rng.usize(..=input.len())),
                        1 if !input.is_empty() => {
                            for _ in 0..rng.usize(1..8) {
                                let at = rng.usize(..input.len());
                                input[at] ^= 1 << rng.u8(..8);
                            }
                        }
                        _ => {
                            let at = rng.usize(..=input.len());
                            let junk: Vec<u8> = (0..rng.usize(1..64)).map(|_| rng.u8(..)).collect();
                            input.splice(at..at, junk);
                        }
                    }
                    run(name, *target, &input);
                    runs += 1;
                }
            }
            let findings = inputs(&root.join("regressions").join(name));
            for finding in &findings {
                run(name, *target, finding);
            }
            println!(
                "fuzz {name}: {} seeds, {runs} mutations, {} past findings",
                seeds.len(),
                findings.len()
            );
        }
    }
}
