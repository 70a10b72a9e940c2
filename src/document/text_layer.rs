//! The text a born-digital PDF page carries: glyphs collected while hayro interprets the page
//! (no drawing), grouped into words and line pieces, then put in reading order by the same
//! layout as OCR output. Boxes are in the pixels of the page as rendered at the same scale.

use hayro::hayro_interpret::font::{Glyph as FontGlyph, GlyphRun};
use hayro::hayro_interpret::kurbo::{Affine, BezPath, Point, Shape};
use hayro::hayro_interpret::{
    BlendMode, ClipPath, Context, Device, DrawMode, DrawProps, Image, ImageDrawProps,
    InterpreterCache, InterpreterSettings, SoftMask, TransformExt, interpret_page,
};
use hayro::hayro_syntax::page::Page;

use crate::ocr::order::{Piece, layout};
use crate::ocr::{BBox, PageResult, Word};

/// A page counts as born-digital when it has at least this many letters and digits in its
/// text layer, and most of its glyphs map to real characters.
const MIN_LETTERS: usize = 20;

/// Glyph outlines are in font units, 1000 to the em (hayro normalises every font to this).
const UNITS_PER_EM: f64 = 1000.0;

/// One glyph on the page, in pixels: its text, the horizontal extent of its ink (from its
/// outline; estimated for Type 3 glyphs), where the pen starts and ends it (its origin and
/// advance), its baseline and its size (the em).
#[derive(Clone, Debug)]
struct Glyph {
    text: String,
    x0: f64,
    x1: f64,
    pen_x0: f64,
    pen_x1: f64,
    baseline: f64,
    size: f64,
}

#[derive(Default)]
struct Collector {
    glyphs: Vec<Glyph>,
    /// Glyphs with no Unicode mapping (fonts without a ToUnicode map): text we cannot trust.
    unmapped: usize,
}

impl<'a> Device<'a> for Collector {
    fn draw_path(&mut self, _: &BezPath, _: DrawProps<'a>, _: &DrawMode) {}
    fn push_clip_path(&mut self, _: &ClipPath) {}
    fn push_transparency_group(&mut self, _: f32, _: Option<SoftMask<'a>>, _: BlendMode) {}
    fn draw_image(&mut self, _: Image<'a, '_>, _: ImageDrawProps<'a>) {}
    fn pop_clip(&mut self) {}
    fn pop_transparency_group(&mut self) {}

    fn draw_glyph_run(&mut self, run: &GlyphRun<'_, 'a>, props: DrawProps<'a>, _: &DrawMode) {
        // Invisible text (an OCR layer someone added) is text too.
        for glyph in run.glyphs() {
            let Some(text) = glyph.as_unicode() else {
                self.unmapped += 1;
                continue;
            };
            let text = match text {
                hayro::hayro_interpret::hayro_cmap::BfString::Char(c) => c.to_string(),
                hayro::hayro_interpret::hayro_cmap::BfString::String(s) => s,
            };
            let to_page = props.transform * glyph.transform();
            let origin = to_page * Point::ORIGIN;
            let up = to_page * Point::new(0.0, UNITS_PER_EM);
            let size = (up - origin).hypot();
            if !(size.is_finite() && origin.x.is_finite() && origin.y.is_finite()) || size < 0.5 {
                continue;
            }
            let (ink, advance) = match &**glyph {
                FontGlyph::Outline(outline) => {
                    let bounds = outline.outline().bounding_box();
                    let ink = (bounds.area() > 0.0).then(|| to_page.transform_rect_bbox(bounds));
                    (ink, outline.advance_width())
                }
                FontGlyph::Type3(glyph) => (None, glyph.advance_width()),
            };
            let (x0, x1) = ink.map_or((origin.x, origin.x + size * 0.5), |r| (r.x0, r.x1));
            let pen_x1 = advance
                .map(|a| (to_page * Point::new(f64::from(a), 0.0)).x)
                .filter(|x| x.is_finite() && *x >= origin.x)
                .unwrap_or(x1);
            self.glyphs.push(Glyph {
                text,
                x0,
                x1,
                pen_x0: origin.x,
                pen_x1,
                baseline: origin.y,
                size,
            });
        }
    }
}

/// The page's text layer at `scale` pixels per point, if it has real text.
pub fn extract(page: &Page<'_>, scale: f32, width: u32, height: u32) -> Option<PageResult> {
    let transform = Affine::scale(f64::from(scale)) * page.initial_transform(true).to_kurbo();
    let cache = InterpreterCache::new();
    let target =
        hayro::hayro_interpret::kurbo::Rect::new(0.0, 0.0, f64::from(width), f64::from(height));
    let mut context = Context::new(
        transform,
        target,
        &cache,
        page.xref(),
        InterpreterSettings::default(),
    );
    let mut collector = Collector::default();
    interpret_page(page, &mut context, &mut collector);
    let letters = collector
        .glyphs
        .iter()
        .flat_map(|g| g.text.chars())
        .filter(|c| c.is_alphanumeric())
        .count();
    if letters < MIN_LETTERS || collector.unmapped > collector.glyphs.len() {
        return None;
    }
    Some(PageResult {
        width,
        height,
        rotation: 0,
        skew: 0.0,
        blocks: layout(pieces(collector.glyphs, width, height)),
        source: crate::ocr::PageSource::TextLayer,
        failure: None,
    })
}

/// Glyphs → words → pieces (runs of words on one baseline without a column-sized gap).
fn pieces(mut glyphs: Vec<Glyph>, width: u32, height: u32) -> Vec<Piece> {
    // Rows: glyphs whose baselines are within a third of their size of each other.
    glyphs.sort_by(|a, b| a.baseline.total_cmp(&b.baseline));
    let mut rows: Vec<Vec<Glyph>> = Vec::new();
    for glyph in glyphs {
        match rows.last_mut() {
            Some(row) if (glyph.baseline - row[0].baseline).abs() < row[0].size / 3.0 => {
                row.push(glyph)
            }
            _ => rows.push(vec![glyph]),
        }
    }
    let mut pieces = Vec::new();
    for mut row in rows {
        row.sort_by(|a, b| a.x0.total_cmp(&b.x0));
        // text, x0, x1, top, bottom
        let mut words: Vec<(String, f64, f64, f64, f64)> = Vec::new();
        let mut after_space = true;
        let mut pen = f64::NEG_INFINITY;
        for glyph in &row {
            if glyph.text.trim().is_empty() {
                after_space = true;
                continue;
            }
            // A new word after a space glyph, or where the pen jumps more than a sixth of an
            // em past the previous glyph's advance (kerning moves it far less; typesetters that
            // draw no spaces move it about a quarter). The pen, not the ink: a "1" has room
            // on either side.
            let new_word = after_space || glyph.pen_x0 - pen > glyph.size / 6.0;
            after_space = false;
            pen = glyph.pen_x1;
            let (top, bottom) = (
                glyph.baseline - glyph.size * 0.8,
                glyph.baseline + glyph.size * 0.22,
            );
            match words.last_mut() {
                Some(word) if !new_word => {
                    word.0.push_str(&glyph.text);
                    word.2 = word.2.max(glyph.x1);
                    word.3 = word.3.min(top);
                    word.4 = word.4.max(bottom);
                }
                _ => words.push((glyph.text.clone(), glyph.x0, glyph.x1, top, bottom)),
            }
        }
        // Pieces break where a column gutter runs between words.
        let mut piece: Vec<Word> = Vec::new();
        let mut last_x1 = f64::NEG_INFINITY;
        let size = row.first().map_or(10.0, |g| g.size);
        for (text, x0, x1, top, bottom) in words {
            if !piece.is_empty() && x0 - last_x1 > size * 2.5 {
                pieces.push(piece_of(std::mem::take(&mut piece)));
            }
            last_x1 = x1;
            piece.push(Word {
                text,
                bbox: clamp_box(x0, top, x1, bottom, width, height),
                confidence: 1.0,
            });
        }
        if !piece.is_empty() {
            pieces.push(piece_of(piece));
        }
    }
    pieces
}

fn piece_of(words: Vec<Word>) -> Piece {
    let bbox = BBox::union(words.iter().map(|w| w.bbox)).unwrap_or_default();
    Piece { bbox, words }
}

/// A box in page pixels from float coordinates (`as` saturates: below zero is 0).
fn clamp_box(x0: f64, y0: f64, x1: f64, y1: f64, width: u32, height: u32) -> BBox {
    let px = |v: f64| v.round() as u32;
    BBox::new(px(x0), px(y0), px(x1), px(y1)).clamp(width, height)
}
