//! JSON output, schema version 1.
//!
//! ```text
//! { "version": 1, "engine": "ppocr", "pages": [ {
//!     "page": 1, "width": W, "height": H, "rotation": 0, "skew": -1.25, "source": "ocr",
//!     "confidence": 0.97,
//!     "blocks": [ { "bbox": [x0,y0,x1,y1], "geometry": {..},
//!       "lines": [ { "text": "…", "confidence": 0.98, "bbox": [..], "geometry": {..},
//!         "words": [ { "text": "…", "confidence": 0.99, "bbox": [..], "geometry": {..} } ] } ] } ] } ] }
//! ```
//! A line whose word boxes were estimated from its own box (Qwen3-VL gives block boxes only)
//! has `"estimated_words": true`.
//! A page that could not be read (the task completed without it) has no blocks and
//! `"failure": {"code": "page_timeout", "message": "…"}`.
//! `bbox` is in page pixels (`x1`,`y1` exclusive). `rotation` is the clockwise turn (0, 90, 180
//! or 270 degrees) that makes the page upright: 180 for a page scanned upside down, 90 for one
//! whose lines run upwards. `skew` is the angle of its lines in degrees, counter-clockwise
//! positive, once turned. Reading order is the upright page's; boxes are always on the page
//! image as given. `geometry` is the same box as ratios of the
//! page size, Textract-style: `{"left","top","width","height"}`, each in 0..=1. Confidences are
//! in 0..=1.

use serde::{Deserialize, Serialize};

use super::DocumentInfo;
use crate::ocr::{BBox, PageFailure, PageResult, PageSource};

// The same structs write and read: what the page model holds goes out whole, so any other
// format can be rendered later from `result.json` alone (formats on demand).
#[derive(Serialize, Deserialize)]
struct Document {
    version: u32,
    engine: String,
    /// ISO 639 codes of the languages the engine reads (absent in results before 2026-12).
    #[serde(default)]
    languages: Vec<String>,
    pages: Vec<Page>,
}

#[derive(Serialize, Deserialize)]
struct Page {
    page: usize,
    width: u32,
    height: u32,
    rotation: u16,
    skew: f32,
    /// `ocr`, or `text_layer` for a born-digital PDF page read from its own text.
    #[serde(default)]
    source: PageSource,
    confidence: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failure: Option<PageFailure>,
    blocks: Vec<Block>,
}

#[derive(Serialize, Deserialize)]
struct Block {
    bbox: [u32; 4],
    geometry: Geometry,
    lines: Vec<Line>,
}

#[derive(Serialize, Deserialize)]
struct Line {
    text: String,
    confidence: f32,
    /// Word boxes estimated from the line's (an engine that boxes lines only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    estimated_words: bool,
    bbox: [u32; 4],
    geometry: Geometry,
    words: Vec<Word>,
}

#[derive(Serialize, Deserialize)]
struct Word {
    text: String,
    confidence: f32,
    bbox: [u32; 4],
    geometry: Geometry,
}

#[derive(Serialize, Deserialize)]
struct Geometry {
    left: f32,
    top: f32,
    width: f32,
    height: f32,
}

fn boxes(b: &BBox, page: &PageResult) -> ([u32; 4], Geometry) {
    let w = page.width.max(1) as f32;
    let h = page.height.max(1) as f32;
    (
        [b.x0, b.y0, b.x1, b.y1],
        Geometry {
            left: b.x0 as f32 / w,
            top: b.y0 as f32 / h,
            width: b.width() as f32 / w,
            height: b.height() as f32 / h,
        },
    )
}

pub fn render(pages: &[PageResult], info: &DocumentInfo<'_>) -> String {
    let doc = Document {
        version: 1,
        engine: info.engine.to_owned(),
        languages: info.languages.iter().map(|&l| l.to_owned()).collect(),
        pages: pages
            .iter()
            .enumerate()
            .map(|(i, page)| Page {
                page: i + 1,
                width: page.width,
                height: page.height,
                rotation: page.rotation,
                skew: page.skew,
                source: page.source,
                confidence: page.mean_confidence(),
                failure: page.failure.clone(),
                blocks: page
                    .blocks
                    .iter()
                    .map(|block| {
                        let (bbox, geometry) = boxes(&block.bbox, page);
                        Block {
                            bbox,
                            geometry,
                            lines: block
                                .lines
                                .iter()
                                .map(|line| {
                                    let (bbox, geometry) = boxes(&line.bbox, page);
                                    Line {
                                        text: line.text(),
                                        confidence: line.confidence,
                                        estimated_words: line.estimated_words,
                                        bbox,
                                        geometry,
                                        words: line
                                            .words
                                            .iter()
                                            .map(|word| {
                                                let (bbox, geometry) = boxes(&word.bbox, page);
                                                Word {
                                                    text: word.text.clone(),
                                                    confidence: word.confidence,
                                                    bbox,
                                                    geometry,
                                                }
                                            })
                                            .collect(),
                                    }
                                })
                                .collect(),
                        }
                    })
                    .collect(),
            })
            .collect(),
    };
    // Plain structs of numbers and strings always serialise.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// A document read back from its JSON output.
pub struct Parsed {
    pub engine: String,
    pub languages: Vec<String>,
    pub pages: Vec<PageResult>,
}

/// Reads a `result.json` back into the page model (the inverse of [`render`]).
pub fn parse(json: &[u8]) -> Result<Parsed, serde_json::Error> {
    let doc: Document = serde_json::from_slice(json)?;
    let bbox = |[x0, y0, x1, y1]: [u32; 4]| BBox { x0, y0, x1, y1 };
    let pages = doc
        .pages
        .into_iter()
        .map(|page| PageResult {
            width: page.width,
            height: page.height,
            rotation: page.rotation,
            skew: page.skew,
            source: page.source,
            failure: page.failure,
            blocks: page
                .blocks
                .into_iter()
                .map(|block| crate::ocr::Block {
                    bbox: bbox(block.bbox),
                    lines: block
                        .lines
                        .into_iter()
                        .map(|line| crate::ocr::Line {
                            bbox: bbox(line.bbox),
                            confidence: line.confidence,
                            estimated_words: line.estimated_words,
                            words: line
                                .words
                                .into_iter()
                                .map(|word| crate::ocr::Word {
                                    text: word.text,
                                    bbox: bbox(word.bbox),
                                    confidence: word.confidence,
                                })
                                .collect(),
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    Ok(Parsed {
        engine: doc.engine,
        languages: doc.languages,
        pages,
    })
}
