//! The page model every engine returns and every renderer reads.
//!
//! A page holds blocks (columns, paragraphs, table regions) in reading order; a block holds lines,
//! a line holds words. Every element has a pixel box on the page and a confidence in 0..=1.

use serde::{Deserialize, Serialize};

/// An axis-aligned box in page pixels: `x0,y0` inclusive top-left, `x1,y1` exclusive bottom-right.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BBox {
    pub x0: u32,
    pub y0: u32,
    pub x1: u32,
    pub y1: u32,
}

impl BBox {
    pub fn new(x0: u32, y0: u32, x1: u32, y1: u32) -> BBox {
        BBox {
            x0: x0.min(x1),
            y0: y0.min(y1),
            x1: x0.max(x1),
            y1: y0.max(y1),
        }
    }

    /// The smallest box holding every box in `boxes`; `None` when there are none.
    pub fn union<I: IntoIterator<Item = BBox>>(boxes: I) -> Option<BBox> {
        boxes.into_iter().reduce(|a, b| BBox {
            x0: a.x0.min(b.x0),
            y0: a.y0.min(b.y0),
            x1: a.x1.max(b.x1),
            y1: a.y1.max(b.y1),
        })
    }

    // Saturating: the fields are public, so a box deserialised from elsewhere may be inverted.
    pub fn width(&self) -> u32 {
        self.x1.saturating_sub(self.x0)
    }

    pub fn height(&self) -> u32 {
        self.y1.saturating_sub(self.y0)
    }

    pub fn contains(&self, other: &BBox) -> bool {
        self.x0 <= other.x0 && self.y0 <= other.y0 && other.x1 <= self.x1 && other.y1 <= self.y1
    }

    /// Clamps the box into a `width`×`height` page.
    pub fn clamp(self, width: u32, height: u32) -> BBox {
        BBox::new(
            self.x0.min(width),
            self.y0.min(height),
            self.x1.min(width),
            self.y1.min(height),
        )
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Word {
    pub text: String,
    pub bbox: BBox,
    pub confidence: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Line {
    pub words: Vec<Word>,
    pub bbox: BBox,
    pub confidence: f32,
    /// The words' boxes are estimated from the line's (an engine that gives line boxes only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub estimated_words: bool,
}

impl Line {
    /// The line's text: its words joined by single spaces.
    pub fn text(&self) -> String {
        let words: Vec<&str> = self.words.iter().map(|w| w.text.as_str()).collect();
        words.join(" ")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub lines: Vec<Line>,
    pub bbox: BBox,
}

/// One recognised page, in reading order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PageResult {
    pub width: u32,
    pub height: u32,
    /// Degrees (0, 90, 180 or 270) the page was turned clockwise to read it: 180 for a page
    /// scanned upside down, 90 for one whose lines run upwards. Reading order follows the
    /// text; boxes are on the page image as given.
    #[serde(default)]
    pub rotation: u16,
    /// The skew of the text lines in degrees, counter-clockwise positive, measured on the
    /// page once turned; reading order follows the lines. 0 where the engine does not say.
    #[serde(default)]
    pub skew: f32,
    pub blocks: Vec<Block>,
    /// Where the text came from.
    #[serde(default)]
    pub source: PageSource,
    /// Set on a page that could not be read (the document completed without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<PageFailure>,
}

/// Why a page has no text: a stable code (`page_timeout`, `engine_error`, …) and a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageFailure {
    pub code: String,
    pub message: String,
}

/// How a page's text was obtained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PageSource {
    /// Recognised from the page image.
    #[default]
    Ocr,
    /// Taken from the text layer of a born-digital PDF page.
    TextLayer,
}

impl PageResult {
    /// A page that could not be read: empty, with the reason.
    pub fn failed(code: &str, message: &str) -> PageResult {
        PageResult {
            failure: Some(PageFailure {
                code: code.to_owned(),
                message: message.to_owned(),
            }),
            ..PageResult::default()
        }
    }

    pub fn lines(&self) -> impl Iterator<Item = &Line> {
        self.blocks.iter().flat_map(|b| b.lines.iter())
    }

    pub fn words(&self) -> impl Iterator<Item = &Word> {
        self.lines().flat_map(|l| l.words.iter())
    }

    /// Maps a page read at `1/factor` of its size back onto the `width`×`height` original.
    pub fn scale_up(&mut self, factor: u32, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.map_boxes(|b| {
            BBox::new(b.x0 * factor, b.y0 * factor, b.x1 * factor, b.y1 * factor)
                .clamp(width, height)
        });
    }

    fn map_boxes(&mut self, map: impl Fn(BBox) -> BBox) {
        for block in &mut self.blocks {
            block.bbox = map(block.bbox);
            for line in &mut block.lines {
                line.bbox = map(line.bbox);
                for word in &mut line.words {
                    word.bbox = map(word.bbox);
                }
            }
        }
    }

    /// Mean word confidence, `None` for an empty page.
    pub fn mean_confidence(&self) -> Option<f32> {
        let (sum, n) = self.words().fold((0.0f64, 0usize), |(s, n), w| {
            (s + w.confidence as f64, n + 1)
        });
        (n > 0).then(|| (sum / n as f64) as f32)
    }
}
