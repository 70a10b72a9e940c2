//! Documents → page images, one page in memory at a time.
//!
//! The type is sniffed from the first bytes, never taken from a name or a client. Every decode
//! checks the declared size against `max_pixels` before allocating, so a decompression bomb or a
//! lying header is refused cheaply. Supported: PNG, JPEG, TIFF (every page), WebP, BMP and PDF
//! (every page, rendered at `pdf_dpi`).

pub(crate) mod pdf;
mod text_layer;
pub(crate) mod tiff_pages;

use std::io::{BufReader, Read, Seek};
use std::path::Path;

use image::{ImageDecoder, ImageReader, RgbImage};

use crate::ocr::PageResult;
pub use crate::tasks::{OcrPolicy, Password};
pub use pdf::{PageFrame, page_frames};

/// How one document is read, besides the server's limits: per task.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Which PDF pages are read from their own text layer instead of OCR'd.
    pub policy: OcrPolicy,
    /// The password of an encrypted PDF.
    pub password: Option<Password>,
}

impl ReadOptions {
    pub fn policy(policy: OcrPolicy) -> ReadOptions {
        ReadOptions {
            policy,
            password: None,
        }
    }
}

/// One page of a document, as the pipeline consumes it.
#[derive(Debug)]
pub enum PageInput {
    /// An image to recognise.
    Image(RgbImage),
    /// The page's own text layer (a born-digital PDF page), used instead of OCR.
    Text(PageResult),
}

/// The kinds of input ocrd accepts, from their magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Png,
    Jpeg,
    Tiff,
    Webp,
    Bmp,
    Pdf,
}

impl Kind {
    /// Sniffs the kind from the first bytes of a file (16 are enough).
    pub fn sniff(head: &[u8]) -> Option<Kind> {
        match head {
            [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => Some(Kind::Png),
            [0xff, 0xd8, 0xff, ..] => Some(Kind::Jpeg),
            [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => Some(Kind::Tiff),
            [b'I', b'I', 43, 0, ..] | [b'M', b'M', 0, 43, ..] => Some(Kind::Tiff), // BigTIFF
            [
                b'R',
                b'I',
                b'F',
                b'F',
                _,
                _,
                _,
                _,
                b'W',
                b'E',
                b'B',
                b'P',
                ..,
            ] => Some(Kind::Webp),
            [b'B', b'M', ..] => Some(Kind::Bmp),
            [b'%', b'P', b'D', b'F', b'-', ..] => Some(Kind::Pdf),
            _ => None,
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Tiff => "image/tiff",
            Kind::Webp => "image/webp",
            Kind::Bmp => "image/bmp",
            Kind::Pdf => "application/pdf",
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest page, in pixels (width × height).
    pub max_pixels: u64,
    /// Most pages in one document.
    pub max_pages: usize,
    /// Resolution PDF pages are rendered at (lowered for pages over `max_pixels`).
    pub pdf_dpi: u32,
}

impl Default for Limits {
    fn default() -> Self {
        let limits = crate::config::LimitsConfig::default();
        Limits {
            max_pixels: limits.max_pixels,
            max_pages: limits.max_pages,
            pdf_dpi: 300,
        }
    }
}

/// Why a document cannot be read. Each variant has a stable [`code`](DocumentError::code).
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("the file is empty")]
    Empty,
    #[error("not a supported document type (PNG, JPEG, TIFF, WebP, BMP, PDF)")]
    Unsupported,
    #[error("page is {width}×{height} pixels, more than the limit of {max} pixels")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("an image on the page is {width}×{height} pixels, more than the limit of {max} pixels")]
    ImageTooLarge { width: u32, height: u32, max: u64 },
    #[error("more than {0} pages")]
    TooManyPages(usize),
    #[error("the PDF is password-protected: give its password")]
    Encrypted,
    #[error("the password does not open this PDF")]
    WrongPassword,
    #[error("cannot decode: {0}")]
    Undecodable(String),
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

impl DocumentError {
    pub fn code(&self) -> &'static str {
        match self {
            DocumentError::Empty => "empty_file",
            DocumentError::Unsupported => "unsupported_type",
            DocumentError::TooManyPixels { .. } | DocumentError::ImageTooLarge { .. } => {
                "too_many_pixels"
            }
            DocumentError::TooManyPages(_) => "too_many_pages",
            DocumentError::Undecodable(_) => "undecodable",
            DocumentError::Encrypted | DocumentError::WrongPassword => "encrypted",
            DocumentError::Io(_) => "io",
        }
    }
}

fn check_size(width: u32, height: u32, limits: &Limits) -> Result<(), DocumentError> {
    if width == 0 || height == 0 {
        return Err(DocumentError::Undecodable(format!(
            "page is {width}×{height} pixels"
        )));
    }
    if width as u64 * height as u64 > limits.max_pixels {
        return Err(DocumentError::TooManyPixels {
            width,
            height,
            max: limits.max_pixels,
        });
    }
    Ok(())
}

/// The pages of a document file, decoded one at a time.
pub struct Pages {
    inner: PagesInner,
}

enum PagesInner {
    /// A single-image format, not decoded yet.
    Single(Option<Box<dyn FnOnce() -> Result<RgbImage, DocumentError>>>),
    Tiff(Box<tiff_pages::TiffPages>),
    Pdf(Box<pdf::PdfPages>),
}

impl Pages {
    /// Passes over the first `n` pages (already done elsewhere): PDF pages are not drawn,
    /// image pages are decoded to move on.
    pub fn skip_pages(&mut self, n: usize) -> Result<(), DocumentError> {
        if n == 0 {
            return Ok(());
        }
        match &mut self.inner {
            PagesInner::Pdf(pages) => pages.skip_pages(n),
            _ => {
                for _ in 0..n {
                    self.next().transpose()?;
                }
            }
        }
        Ok(())
    }

    /// Whether a page that cannot be read leaves the next ones readable (PDF pages), rather
    /// than ending the document (a TIFF whose directory chain breaks).
    pub fn pages_fail_alone(&self) -> bool {
        matches!(self.inner, PagesInner::Pdf(_))
    }

    /// The number of pages, where the format tells it before decoding (PDF, single images).
    pub fn page_count(&self) -> Option<usize> {
        match &self.inner {
            PagesInner::Single(_) => Some(1),
            PagesInner::Tiff(_) => None,
            PagesInner::Pdf(pages) => Some(pages.page_count()),
        }
    }
}

impl Iterator for Pages {
    type Item = Result<PageInput, DocumentError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            PagesInner::Single(decode) => {
                decode.take().map(|decode| decode().map(PageInput::Image))
            }
            PagesInner::Tiff(pages) => pages.next().map(|page| page.map(PageInput::Image)),
            PagesInner::Pdf(pages) => pages.next(),
        }
    }

    /// PDF pages are reached without drawing the ones before ([`Pages::skip_pages`]).
    fn nth(&mut self, n: usize) -> Option<Self::Item> {
        self.skip_pages(n).ok()?;
        self.next()
    }
}

/// Page `page` (1-based) of a document as an image, drawn even where the page has a text
/// layer, and shrunk to at most `max_side` pixels on its longer side. `Ok(None)`: no such page.
pub fn page_image(
    path: &Path,
    page: u32,
    limits: Limits,
    password: Option<Password>,
    max_side: u32,
) -> Result<Option<RgbImage>, DocumentError> {
    let reading = ReadOptions {
        policy: OcrPolicy::Force,
        password,
    };
    let Some(index) = page.checked_sub(1) else {
        return Ok(None);
    };
    let Some(input) = open(path, limits, &reading)?.nth(index as usize) else {
        return Ok(None);
    };
    let PageInput::Image(image) = input? else {
        return Err(DocumentError::Undecodable("the page has no image".into()));
    };
    let (width, height) = image.dimensions();
    if width.max(height) <= max_side {
        return Ok(Some(image));
    }
    // An integer box filter: no full-size floating-point copy of a large scan, and each
    // source pixel still counts (no aliasing when shrinking a lot).
    let scale = f64::from(max_side) / f64::from(width.max(height));
    let fit = |side: u32| ((f64::from(side) * scale).round() as u32).max(1);
    Ok(Some(image::imageops::thumbnail(
        &image,
        fit(width),
        fit(height),
    )))
}

/// Opens a document file: sniffs its kind and checks the first page's declared size.
pub fn open(path: &Path, limits: Limits, options: &ReadOptions) -> Result<Pages, DocumentError> {
    let mut file = std::fs::File::open(path)?;
    let mut head = [0u8; 16];
    let n = read_head(&mut file, &mut head)?;
    if n == 0 {
        return Err(DocumentError::Empty);
    }
    let kind = Kind::sniff(&head[..n]).ok_or(DocumentError::Unsupported)?;
    file.rewind()?;
    let reader = BufReader::new(file);
    match kind {
        Kind::Pdf => {
            // hayro parses from memory; the upload limit bounds the size.
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut reader.into_inner(), &mut bytes)?;
            Ok(Pages {
                inner: PagesInner::Pdf(Box::new(pdf::PdfPages::new(bytes, limits, options)?)),
            })
        }
        Kind::Tiff => Ok(Pages {
            inner: PagesInner::Tiff(Box::new(tiff_pages::TiffPages::new(reader, limits)?)),
        }),
        Kind::Png | Kind::Jpeg | Kind::Webp | Kind::Bmp => {
            let format = match kind {
                Kind::Png => image::ImageFormat::Png,
                Kind::Jpeg => image::ImageFormat::Jpeg,
                Kind::Webp => image::ImageFormat::WebP,
                _ => image::ImageFormat::Bmp,
            };
            let mut reader = ImageReader::with_format(reader, format);
            let mut image_limits = image::Limits::default();
            // Room for the page in RGBA plus the decoder's own buffers; the pixel check below
            // is the real limit, this one stops decoders that allocate before it runs.
            image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8).max(64 << 20));
            reader.limits(image_limits);
            let mut decoder = reader.into_decoder().map_err(undecodable)?;
            let (width, height) = decoder.dimensions();
            check_size(width, height, &limits)?;
            // Phones store photos sideways with an EXIF orientation tag; turn them upright.
            let orientation = decoder
                .orientation()
                .unwrap_or(image::metadata::Orientation::NoTransforms);
            Ok(Pages {
                inner: PagesInner::Single(Some(Box::new(move || {
                    let mut image =
                        image::DynamicImage::from_decoder(decoder).map_err(undecodable)?;
                    image.apply_orientation(orientation);
                    Ok(to_rgb(image))
                }))),
            })
        }
    }
}

/// The page as 8-bit RGB. Grey pages, the usual scan, are expanded by hand: `into_rgb8`'s
/// generic conversion took 15 ms of a 1654×2339 page, four times the PNG decoding.
fn to_rgb(image: image::DynamicImage) -> RgbImage {
    match image {
        image::DynamicImage::ImageLuma8(grey) => {
            let (width, height) = grey.dimensions();
            let rgb: Vec<u8> = grey.as_raw().iter().flat_map(|&v| [v, v, v]).collect();
            RgbImage::from_raw(width, height, rgb)
                .unwrap_or_else(|| image::DynamicImage::ImageLuma8(grey).into_rgb8())
        }
        other => other.into_rgb8(),
    }
}

fn read_head(file: &mut std::fs::File, head: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn undecodable(e: image::ImageError) -> DocumentError {
    match e {
        image::ImageError::Limits(l) => {
            DocumentError::Undecodable(format!("exceeds decoding limits ({l})"))
        }
        image::ImageError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DocumentError::Undecodable("the file is truncated".into())
        }
        e => DocumentError::Undecodable(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_magic_bytes() {
        assert_eq!(Kind::sniff(b"\x89PNG\r\n\x1a\n...."), Some(Kind::Png));
        assert_eq!(Kind::sniff(b"\xff\xd8\xff\xe0"), Some(Kind::Jpeg));
        assert_eq!(Kind::sniff(b"II*\0...."), Some(Kind::Tiff));
        assert_eq!(Kind::sniff(b"MM\0*...."), Some(Kind::Tiff));
        assert_eq!(Kind::sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Kind::Webp));
        assert_eq!(Kind::sniff(b"BM......"), Some(Kind::Bmp));
        assert_eq!(Kind::sniff(b"%PDF-1.7"), Some(Kind::Pdf));
        assert_eq!(Kind::sniff(b"<html>"), None);
        assert_eq!(Kind::sniff(b"RIFF\0\0\0\0WAVE"), None);
    }
}
