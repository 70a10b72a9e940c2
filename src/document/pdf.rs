//! PDF pages with hayro (pure Rust), one page in memory at a time: a page's own text layer
//! where the OCR policy takes it (see [`text_layer`]), otherwise the page drawn for OCR.
//!
//! Each page is drawn on white at the configured DPI, or lower where that would exceed
//! `max_pixels` (a poster-sized page, or a page box made to exhaust memory), so the size of
//! the bitmap is bounded before anything is drawn. A fresh render cache per page keeps memory
//! flat over long documents. hayro forbids unsafe code, so a panic inside it is caught and
//! reported as an undecodable page.

use std::panic::{AssertUnwindSafe, catch_unwind};

use hayro::hayro_interpret::InterpreterSettings;
use hayro::hayro_syntax::object::{Dict, Name, Stream};
use hayro::hayro_syntax::page::Rotation;
use hayro::hayro_syntax::{LoadPdfError, Pdf};
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::{PixmapSettings, RenderCache, RenderSettings};
use image::RgbImage;

use super::{DocumentError, Limits, OcrPolicy, PageInput, Password, ReadOptions, text_layer};
use crate::ocr::{PageResult, PageSource};

/// hayro's bitmaps are at most `u16::MAX` pixels a side, and its rasteriser rounds a side up
/// to whole tiles in a `u16` (a side of 65,535 panicked in vello: a fuzz finding): stay clear.
const MAX_SIDE: f32 = (u16::MAX - 255) as f32;

pub struct PdfPages {
    pdf: Pdf,
    next: usize,
    count: usize,
    limits: Limits,
    policy: OcrPolicy,
}

impl PdfPages {
    pub fn new(
        bytes: Vec<u8>,
        limits: Limits,
        options: &ReadOptions,
    ) -> Result<PdfPages, DocumentError> {
        let pdf = load(bytes, options.password.as_ref())?;
        let count = pdf.pages().len();
        if count == 0 {
            return Err(DocumentError::Undecodable("the PDF has no pages".into()));
        }
        if count > limits.max_pages {
            return Err(DocumentError::TooManyPages(limits.max_pages));
        }
        Ok(PdfPages {
            pdf,
            next: 0,
            count,
            limits,
            policy: options.policy,
        })
    }

    pub fn page_count(&self) -> usize {
        self.count
    }

    pub fn skip_pages(&mut self, n: usize) {
        self.next = self.next.saturating_add(n);
    }

    /// Page `index` as the policy wants it: its text layer, or its image for OCR.
    fn page(&self, index: usize) -> Result<PageInput, DocumentError> {
        let page = &self.pdf.pages()[index];
        let (width_pt, height_pt) = page.render_dimensions();
        let scale = scale_for(width_pt, height_pt, &self.limits).ok_or_else(|| {
            DocumentError::Undecodable(format!("the page has no area ({width_pt}×{height_pt} pt)"))
        })?;
        // The size hayro's bitmap will have, so text boxes and images agree.
        let (width, height) = ((width_pt * scale) as u32, (height_pt * scale) as u32);
        let text = || {
            catch_unwind(AssertUnwindSafe(|| {
                text_layer::extract(page, scale, width, height)
            }))
            .map_err(|_| DocumentError::Undecodable("reading the text of the page failed".into()))
        };
        let text = match self.policy {
            OcrPolicy::Force => None,
            OcrPolicy::Auto => text()?,
            OcrPolicy::Skip => Some(text()?.unwrap_or(PageResult {
                width,
                height,
                ..PageResult::default()
            })),
        };
        match text {
            Some(mut text) => {
                text.source = PageSource::TextLayer;
                Ok(PageInput::Text(text))
            }
            None => self.render(index, scale).map(PageInput::Image),
        }
    }

    fn render(&self, index: usize, scale: f32) -> Result<RgbImage, DocumentError> {
        let page = &self.pdf.pages()[index];
        check_images(&page.resources().x_objects, &self.limits, 0)?;
        let pixmap = catch_unwind(AssertUnwindSafe(|| {
            let cache = RenderCache::new();
            hayro::render(
                page,
                &cache,
                &InterpreterSettings::default(),
                &RenderSettings::default(),
                &PixmapSettings {
                    x_scale: scale,
                    y_scale: scale,
                    bg_color: WHITE,
                },
            )
        }))
        .map_err(|_| DocumentError::Undecodable("the PDF renderer failed on the page".into()))?;
        let (width, height) = (u32::from(pixmap.width()), u32::from(pixmap.height()));
        // Drawn on opaque white, so the premultiplied RGBA is plain RGBA.
        let rgb: Vec<u8> = pixmap
            .data_as_u8_slice()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect();
        RgbImage::from_raw(width, height, rgb).ok_or_else(|| {
            DocumentError::Undecodable("the rendered page has the wrong size".into())
        })
    }
}

/// Parses a PDF, refusing a cut-off file, or an encrypted one without its password.
fn load(bytes: Vec<u8>, password: Option<&Password>) -> Result<Pdf, DocumentError> {
    // hayro rebuilds a damaged cross-reference table, which would quietly give the pages a
    // cut-off upload still holds: a PDF must end with its end-of-file marker.
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    if !tail.windows(5).any(|w| w == b"%%EOF") {
        return Err(DocumentError::Undecodable(
            "the PDF is truncated: it has no end-of-file marker".into(),
        ));
    }
    catch_unwind(AssertUnwindSafe(|| match password {
        Some(password) => Pdf::new_with_password(bytes, password.expose()),
        None => Pdf::new(bytes),
    }))
    .map_err(|_| DocumentError::Undecodable("the PDF could not be parsed".into()))?
    .map_err(|e| match e {
        LoadPdfError::Decryption(_) if password.is_some() => DocumentError::WrongPassword,
        LoadPdfError::Decryption(_) => DocumentError::Encrypted,
        LoadPdfError::Invalid => DocumentError::Undecodable("not a readable PDF".into()),
    })
}

/// Where a page's drawing sits in its PDF: the visible box (crop box within media box) in
/// user space and the page's rotation. Pixels of the rendered page map back through it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PageFrame {
    /// `[x0, y0, x1, y1]` in PDF user space.
    pub visible: [f32; 4],
    /// Clockwise degrees the page is turned when shown: 0, 90, 180 or 270.
    pub rotation: u16,
}

impl PageFrame {
    /// Width and height of the page as shown, in points.
    pub fn display_size(&self) -> (f32, f32) {
        let [x0, y0, x1, y1] = self.visible;
        let (w, h) = (x1 - x0, y1 - y0);
        if self.rotation % 180 == 90 {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// The `cm` operands that map display space (points from the bottom-left corner of the
    /// page as shown, y up) onto the page's user space.
    pub fn display_to_user(&self) -> [f32; 6] {
        let [x0, y0, x1, y1] = self.visible;
        match self.rotation {
            90 => [0.0, 1.0, -1.0, 0.0, x1, y0],
            180 => [-1.0, 0.0, 0.0, -1.0, x1, y1],
            270 => [0.0, -1.0, 1.0, 0.0, x0, y1],
            _ => [1.0, 0.0, 0.0, 1.0, x0, y0],
        }
    }
}

/// The frame of every page of a PDF, in order, as the renderer sees them.
pub fn page_frames(
    bytes: Vec<u8>,
    password: Option<&Password>,
) -> Result<Vec<PageFrame>, DocumentError> {
    let pdf = load(bytes, password)?;
    let frames = pdf
        .pages()
        .iter()
        .map(|page| {
            let (width, height) = page.base_dimensions();
            let visible = page.intersected_crop_box();
            let (x0, y0) = (visible.x0 as f32, visible.y0 as f32);
            PageFrame {
                // The same size hayro draws, so that pixels and points agree.
                visible: [x0, y0, x0 + width, y0 + height],
                rotation: match page.rotation() {
                    Rotation::None => 0,
                    Rotation::Horizontal => 90,
                    Rotation::Flipped => 180,
                    Rotation::FlippedHorizontal => 270,
                },
            }
        })
        .collect();
    Ok(frames)
}

/// Refuses a page that draws an image larger than `max_pixels`: hayro decodes images whole,
/// so a few megabytes of compressed zeros declared as 40000 × 40000 would take gigabytes.
/// Looks into form XObjects too, a few levels deep.
fn check_images(x_objects: &Dict<'_>, limits: &Limits, depth: usize) -> Result<(), DocumentError> {
    if depth > 8 {
        return Err(DocumentError::Undecodable("forms nested too deep".into()));
    }
    for name in x_objects.keys() {
        let Some(stream) = x_objects.get::<Stream<'_>>(name.as_ref()) else {
            continue;
        };
        let dict = stream.dict();
        match dict.get::<Name<'_>>(b"Subtype".as_slice()).as_deref() {
            Some(b"Image") => {
                let width = dict.get::<u32>(b"Width".as_slice()).unwrap_or(0);
                let height = dict.get::<u32>(b"Height".as_slice()).unwrap_or(0);
                if u64::from(width) * u64::from(height) > limits.max_pixels {
                    return Err(DocumentError::ImageTooLarge {
                        width,
                        height,
                        max: limits.max_pixels,
                    });
                }
            }
            Some(b"Form") => {
                if let Some(resources) = dict.get::<Dict<'_>>(b"Resources".as_slice())
                    && let Some(inner) = resources.get::<Dict<'_>>(b"XObject".as_slice())
                {
                    check_images(&inner, limits, depth + 1)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Pixels per PDF point: `pdf_dpi / 72`, lowered until the page fits `max_pixels` and hayro's
/// largest side. `None` for a page without area.
fn scale_for(width_pt: f32, height_pt: f32, limits: &Limits) -> Option<f32> {
    if !(width_pt.is_finite() && height_pt.is_finite() && width_pt >= 1.0 && height_pt >= 1.0) {
        return None;
    }
    let mut scale = limits.pdf_dpi as f32 / 72.0;
    let pixels = (width_pt * scale) as f64 * (height_pt * scale) as f64;
    if pixels > limits.max_pixels as f64 {
        scale *= (limits.max_pixels as f64 / pixels).sqrt() as f32;
    }
    scale = scale.min(MAX_SIDE / width_pt).min(MAX_SIDE / height_pt);
    // At least one pixel a side, whatever the limits.
    Some(scale.max(1.0 / width_pt.min(height_pt)))
}

impl Iterator for PdfPages {
    type Item = Result<PageInput, DocumentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.count {
            return None;
        }
        let index = self.next;
        self.next += 1;
        Some(self.page(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_render_at_the_dpi_unless_too_large() {
        let limits = Limits {
            max_pixels: 100_000_000,
            max_pages: 10,
            pdf_dpi: 300,
        };
        // A4 at 300 dpi: 2480 × 3508.
        let scale = scale_for(595.0, 842.0, &limits).unwrap();
        assert!((595.0 * scale - 2479.0).abs() < 2.0, "{scale}");
        // A 200-inch square page (the largest PDF allows) is scaled down to the pixel limit.
        let scale = scale_for(14_400.0, 14_400.0, &limits).unwrap();
        let pixels = (14_400.0 * scale) as f64 * (14_400.0 * scale) as f64;
        assert!(pixels <= 100_000_000.0 * 1.01, "{pixels}");
        assert!(scale_for(0.0, 842.0, &limits).is_none());
        assert!(scale_for(f32::NAN, 842.0, &limits).is_none());
    }
}
