//! Searchable PDF: the document's pages with an invisible text layer (render mode 3) at the
//! recognised words, each word stretched (`Tz`) to the width of its box, so that selecting,
//! copying and searching find the words where they are on the page.
//!
//! - A PDF keeps its own pages, and with them their text, fonts, links and quality; only the
//!   pages that were OCR'd get a text layer. One read from its own text layer is left alone.
//! - Image documents become a new PDF, one page per image: a JPEG file is embedded as it is,
//!   other images losslessly (Flate), in grey when the page is grey.
//!
//! The text is set in an embedded glyphless font (`glyphless.ttf`, made by
//! `tools/make_glyphless_font.py`): every glyph is empty and half an em wide. Each character
//! gets a code of its own, and the font's ToUnicode map gives text extraction the character.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use flate2::Compression;
use flate2::write::ZlibEncoder;
use image::{ImageDecoder, RgbImage};
use lopdf::{Document, Object, ObjectId, Stream, dictionary};

use super::DocumentInfo;
use crate::document::{
    self, DocumentError, Kind, Limits, OcrPolicy, PageFrame, PageInput, Password, ReadOptions,
};
use crate::ocr::{PageResult, PageSource};

const GLYPHLESS_TTF: &[u8] = include_bytes!("glyphless.ttf");
/// The advance of every glyph, in thousandths of an em (as in `make_glyphless_font.py`).
const GLYPH_ADVANCE: f32 = 500.0;
/// The font's ascent and descent, in thousandths of an em: together one em, so a word's em box
/// is its box, and text extraction reports the box.
const ASCENT: i64 = 800;
const DESCENT: i64 = -200;

#[derive(Debug, thiserror::Error)]
pub enum PdfError {
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("the document has {document} pages, but {recognised} were recognised")]
    PageCount { document: usize, recognised: usize },
    #[error("cannot write the PDF: {0}")]
    Pdf(#[from] lopdf::Error),
}

fn save(mut doc: Document) -> Result<Vec<u8>, PdfError> {
    let mut out = Vec::new();
    doc.save_to(&mut out).map_err(lopdf::Error::from)?;
    Ok(out)
}

/// The searchable PDF of the document `info.source` and its recognised `pages`. Images are
/// placed at `info.limits.pdf_dpi`. An encrypted PDF comes out decrypted.
pub fn render(pages: &[PageResult], info: &DocumentInfo<'_>) -> Result<Vec<u8>, PdfError> {
    let bytes = std::fs::read(info.source).map_err(DocumentError::from)?;
    match Kind::sniff(&bytes) {
        Some(Kind::Pdf) => amend_pdf(bytes, pages, info.password),
        _ => images_to_pdf(&bytes, info.source, pages, info.limits),
    }
}

/// Adds the text of the OCR'd pages to the PDF itself.
fn amend_pdf(
    bytes: Vec<u8>,
    pages: &[PageResult],
    password: Option<&Password>,
) -> Result<Vec<u8>, PdfError> {
    let ocr_pages = || pages.iter().filter(|p| p.source == PageSource::Ocr);
    if ocr_pages().all(|page| page.words().next().is_none()) && password.is_none() {
        // Nothing was recognised (a born-digital file, read from its own text): the original.
        return Ok(bytes);
    }
    let mut doc = match password {
        Some(password) => Document::load_mem_with_options(
            &bytes,
            lopdf::LoadOptions::with_password(password.expose()),
        )?,
        None => Document::load_mem(&bytes)?,
    };
    let frames = document::page_frames(bytes, password)?;
    let ids: Vec<ObjectId> = doc.get_pages().into_values().collect();
    if ids.len() != pages.len() || frames.len() != pages.len() {
        return Err(PdfError::PageCount {
            document: ids.len(),
            recognised: pages.len(),
        });
    }
    let glyphs = Glyphs::new(ocr_pages());
    let font = add_font(&mut doc, &glyphs);
    for ((&id, page), frame) in ids.iter().zip(pages).zip(&frames) {
        if page.source != PageSource::Ocr || page.words().next().is_none() {
            continue;
        }
        let font_name = add_font_resource(&mut doc, id, font)?;
        let [a, b, c, d, e, f] = frame.display_to_user();
        let mut content = format!("Q\nq {a} {b} {c} {d} {e} {f} cm\n");
        content += &text_layer(page, frame, &font_name, &glyphs);
        content += "Q\n";
        // The page's own content is wrapped in q … Q, so a state it leaves (a `cm`, a clip)
        // does not move the text.
        let save = doc.add_object(Stream::new(dictionary! {}, b"q\n".to_vec()));
        let text = doc.add_object(compressed(dictionary! {}, content.as_bytes()));
        let mut contents: Vec<Object> = vec![save.into()];
        contents.extend(doc.get_page_contents(id).into_iter().map(Object::from));
        contents.push(text.into());
        doc.get_dictionary_mut(id)?.set("Contents", contents);
    }
    save(doc)
}

/// Gives page `id` resources of its own (they may be inherited or shared) that name `font`,
/// under a name the page does not use yet, which is returned.
fn add_font_resource(doc: &mut Document, id: ObjectId, font: ObjectId) -> Result<String, PdfError> {
    let mut resources = inherited(doc, id, b"Resources")
        .and_then(|r| r.as_dict().ok())
        .cloned()
        .unwrap_or_default();
    let mut fonts = resources
        .get(b"Font")
        .ok()
        .and_then(|f| doc.dereference(f).ok())
        .and_then(|(_, f)| f.as_dict().ok())
        .cloned()
        .unwrap_or_default();
    let name = (0..)
        .map(|n| format!("OcrdText{n}"))
        .find(|name| !fonts.has(name.as_bytes()))
        .unwrap_or_default();
    fonts.set(name.as_bytes(), font);
    resources.set("Font", fonts);
    doc.get_dictionary_mut(id)?.set("Resources", resources);
    Ok(name)
}

/// A page attribute, from the page or the nearest ancestor that has it, dereferenced.
fn inherited<'a>(doc: &'a Document, page: ObjectId, key: &[u8]) -> Option<&'a Object> {
    let mut node = doc.get_dictionary(page).ok()?;
    // The page tree is shallow; a bound keeps a cyclic one from looping.
    for _ in 0..64 {
        if let Ok(value) = node.get(key) {
            return doc.dereference(value).ok().map(|(_, object)| object);
        }
        let parent = node.get(b"Parent").and_then(Object::as_reference).ok()?;
        node = doc.get_dictionary(parent).ok()?;
    }
    None
}

/// A new PDF with one page per image of the document.
fn images_to_pdf(
    bytes: &[u8],
    source: &Path,
    pages: &[PageResult],
    limits: Limits,
) -> Result<Vec<u8>, PdfError> {
    let mut doc = Document::with_version("1.7");
    let glyphs = Glyphs::new(pages.iter());
    let font = add_font(&mut doc, &glyphs);
    let tree = doc.new_object_id();
    let jpeg = unchanged_jpeg(bytes);
    let mut kids = Vec::new();
    let mut images = document::open(source, limits, &ReadOptions::policy(OcrPolicy::Force))?;
    for (index, page) in pages.iter().enumerate() {
        let image = match images.next().transpose()? {
            Some(PageInput::Image(image)) => image,
            _ => {
                return Err(PdfError::PageCount {
                    document: index,
                    recognised: pages.len(),
                });
            }
        };
        let (width, height) = image.dimensions();
        let xobject = match &jpeg {
            Some(jpeg) if jpeg.size == (width, height) => image_xobject(
                width,
                height,
                jpeg.colour_space,
                "DCTDecode",
                bytes.to_vec(),
            ),
            _ => flate_image(&image),
        };
        let xobject = doc.add_object(xobject);
        let (w, h) = (
            width as f32 * 72.0 / limits.pdf_dpi as f32,
            height as f32 * 72.0 / limits.pdf_dpi as f32,
        );
        let frame = PageFrame {
            visible: [0.0, 0.0, w, h],
            rotation: 0,
        };
        let mut content = format!("q {w} 0 0 {h} 0 0 cm /Page Do Q\n");
        content += &text_layer(page, &frame, "OcrdText", &glyphs);
        let content = doc.add_object(compressed(dictionary! {}, content.as_bytes()));
        kids.push(Object::from(doc.add_object(dictionary! {
            "Type" => "Page",
            "Parent" => tree,
            "MediaBox" => vec![0.into(), 0.into(), w.into(), h.into()],
            "Contents" => content,
            "Resources" => dictionary! {
                "XObject" => dictionary! { "Page" => xobject },
                "Font" => dictionary! { "OcrdText" => font },
            },
        })));
    }
    if images.next().is_some() {
        return Err(PdfError::PageCount {
            document: pages.len() + 1,
            recognised: pages.len(),
        });
    }
    let count = kids.len() as i64;
    doc.objects.insert(
        tree,
        dictionary! { "Type" => "Pages", "Kids" => kids, "Count" => count }.into(),
    );
    let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => tree });
    doc.trailer.set("Root", catalog);
    save(doc)
}

/// A JPEG file that can go into the PDF as it is: upright (no EXIF turn) and grey or RGB.
struct UnchangedJpeg {
    size: (u32, u32),
    colour_space: &'static str,
}

fn unchanged_jpeg(bytes: &[u8]) -> Option<UnchangedJpeg> {
    if Kind::sniff(bytes) != Some(Kind::Jpeg) {
        return None;
    }
    let mut decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(bytes)).ok()?;
    let upright = matches!(
        decoder.orientation(),
        Ok(image::metadata::Orientation::NoTransforms)
    );
    let colour_space = match decoder.color_type() {
        image::ColorType::L8 => "DeviceGray",
        image::ColorType::Rgb8 => "DeviceRGB",
        _ => return None,
    };
    upright.then(|| UnchangedJpeg {
        size: decoder.dimensions(),
        colour_space,
    })
}

/// The page image, lossless: one grey channel when every pixel is grey, as most scans are.
fn flate_image(image: &RgbImage) -> Stream {
    let (width, height) = image.dimensions();
    let grey = image.pixels().all(|p| p[0] == p[1] && p[1] == p[2]);
    let (colour_space, samples): (_, Vec<u8>) = if grey {
        ("DeviceGray", image.pixels().map(|p| p[0]).collect())
    } else {
        ("DeviceRGB", image.as_raw().clone())
    };
    image_xobject(
        width,
        height,
        colour_space,
        "FlateDecode",
        deflate(&samples),
    )
}

fn image_xobject(
    width: u32,
    height: u32,
    colour_space: &'static str,
    filter: &'static str,
    data: Vec<u8>,
) -> Stream {
    Stream::new(
        dictionary! {
            "Type" => "XObject",
            "Subtype" => "Image",
            "Width" => width as i64,
            "Height" => height as i64,
            "ColorSpace" => colour_space,
            "BitsPerComponent" => 8,
            "Filter" => filter,
        },
        data,
    )
    .with_compression(false)
}

/// The page's words as invisible text, in display space (points from the bottom-left corner
/// of the page as shown), set in font resource `font`.
fn text_layer(page: &PageResult, frame: &PageFrame, font: &str, glyphs: &Glyphs) -> String {
    let (width_pt, height_pt) = frame.display_size();
    let sx = width_pt / page.width.max(1) as f32;
    let sy = height_pt / page.height.max(1) as f32;
    let space = glyphs.encode(" ").0;
    let mut out = String::from("BT\n3 Tr\n");
    for line in page.lines() {
        for (i, word) in line.words.iter().enumerate() {
            let (codes, n) = glyphs.encode(&word.text);
            let (x0, x1) = (word.bbox.x0 as f32 * sx, word.bbox.x1 as f32 * sx);
            let (top, bottom) = (
                height_pt - word.bbox.y0 as f32 * sy,
                height_pt - word.bbox.y1 as f32 * sy,
            );
            // The text runs as the page was read: on a page read turned, across the box the
            // other way. `size` is the box across the text, `length` along it.
            let (size, length) = match page.rotation {
                90 | 270 => (x1 - x0, top - bottom),
                _ => (top - bottom, x1 - x0),
            };
            if n == 0 || size <= 0.0 || length <= 0.0 {
                continue;
            }
            // The em box spans the word's box: the baseline sits a descent above its bottom
            // (its bottom as the text is read).
            let descent = -(DESCENT as f32) / 1000.0 * size;
            let matrix = match page.rotation {
                90 => format!("0 1 -1 0 {:.3} {bottom:.3}", x1 - descent),
                180 => format!("-1 0 0 -1 {x1:.3} {:.3}", top - descent),
                270 => format!("0 -1 1 0 {:.3} {top:.3}", x0 + descent),
                _ => format!("1 0 0 1 {x0:.3} {:.3}", bottom + descent),
            };
            let stretch = 100.0 * length / (n as f32 * GLYPH_ADVANCE / 1000.0 * size);
            let _ = write!(
                out,
                "/{font} {size:.3} Tf {stretch:.3} Tz {matrix} Tm <{codes}> Tj"
            );
            // A space after each word but the last of its line: copied text has its spaces,
            // and extraction never runs two touching words together.
            if i + 1 < line.words.len() {
                let _ = write!(out, " <{space}> Tj");
            }
            out.push('\n');
        }
    }
    out.push_str("ET\n");
    out
}

/// Codes (CIDs, two bytes each) for the characters of the recognised words, from 1 up.
struct Glyphs(BTreeMap<char, u16>);

impl Glyphs {
    fn new<'a>(pages: impl Iterator<Item = &'a PageResult>) -> Glyphs {
        let chars: BTreeSet<char> = pages
            .flat_map(|p| p.words().flat_map(|w| w.text.chars()))
            .chain([' '])
            .collect();
        // Two-byte codes: a document with more distinct characters than that loses the rest
        // from its text layer (no script comes close).
        Glyphs(chars.into_iter().zip(1..=u16::MAX).collect())
    }

    /// The hex string of a word's codes, and how many there are.
    fn encode(&self, text: &str) -> (String, usize) {
        let mut hex = String::new();
        let mut n = 0;
        for code in text.chars().filter_map(|c| self.0.get(&c)) {
            let _ = write!(hex, "{code:04X}");
            n += 1;
        }
        (hex, n)
    }

    /// The ToUnicode CMap: each code back to its character.
    fn to_unicode(&self) -> String {
        let mut cmap = String::from(
            "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n\
             /CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n\
             /CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n\
             1 begincodespacerange\n<0000> <FFFF>\nendcodespacerange\n",
        );
        let entries: Vec<(&char, &u16)> = self.0.iter().collect();
        // At most 100 entries per block, as the CMap format wants.
        for block in entries.chunks(100) {
            let _ = writeln!(cmap, "{} beginbfchar", block.len());
            for (c, code) in block {
                let mut units = [0u16; 2];
                let utf16: String = c
                    .encode_utf16(&mut units)
                    .iter()
                    .map(|u| format!("{u:04X}"))
                    .collect();
                let _ = writeln!(cmap, "<{code:04X}> <{utf16}>");
            }
            cmap.push_str("endbfchar\n");
        }
        cmap.push_str("endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n");
        cmap
    }
}

/// The glyphless font as a Type 0 font over the codes of `glyphs`.
fn add_font(doc: &mut Document, glyphs: &Glyphs) -> ObjectId {
    let file = doc.add_object(
        Stream::new(
            dictionary! { "Length1" => GLYPHLESS_TTF.len() as i64 },
            GLYPHLESS_TTF.to_vec(),
        )
        .with_compression(false),
    );
    let descriptor = doc.add_object(dictionary! {
        "Type" => "FontDescriptor",
        "FontName" => "OcrdGlyphless",
        "Flags" => 4,
        "FontBBox" => vec![0.into(), DESCENT.into(), (GLYPH_ADVANCE as i64).into(), ASCENT.into()],
        "ItalicAngle" => 0,
        "Ascent" => ASCENT,
        "Descent" => DESCENT,
        "CapHeight" => ASCENT,
        "StemV" => 80,
        "FontFile2" => file,
    });
    // Every code draws glyph 1, the empty one.
    let codes = glyphs.0.len() + 1;
    let cid_to_gid: Vec<u8> = std::iter::repeat_n([0u8, 1], codes).flatten().collect();
    let cid_to_gid = doc.add_object(compressed(dictionary! {}, &cid_to_gid));
    let cid_font = doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "CIDFontType2",
        "BaseFont" => "OcrdGlyphless",
        "CIDSystemInfo" => dictionary! {
            "Registry" => Object::string_literal("Adobe"),
            "Ordering" => Object::string_literal("Identity"),
            "Supplement" => 0,
        },
        "FontDescriptor" => descriptor,
        "DW" => GLYPH_ADVANCE as i64,
        "CIDToGIDMap" => cid_to_gid,
    });
    let to_unicode = doc.add_object(compressed(dictionary! {}, glyphs.to_unicode().as_bytes()));
    doc.add_object(dictionary! {
        "Type" => "Font",
        "Subtype" => "Type0",
        "BaseFont" => "OcrdGlyphless",
        "Encoding" => "Identity-H",
        "DescendantFonts" => vec![cid_font.into()],
        "ToUnicode" => to_unicode,
    })
}

fn compressed(mut dict: lopdf::Dictionary, data: &[u8]) -> Stream {
    dict.set("Filter", "FlateDecode");
    Stream::new(dict, deflate(data)).with_compression(false)
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_space_maps_onto_the_corners_of_a_turned_page() {
        let apply = |m: [f32; 6], (x, y): (f32, f32)| {
            (m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5])
        };
        let visible = [10.0, 20.0, 110.0, 220.0]; // 100 wide, 200 high
        for (rotation, shown_top_left) in [
            (0, (10.0, 220.0)),
            (90, (10.0, 20.0)),
            (180, (110.0, 20.0)),
            (270, (110.0, 220.0)),
        ] {
            let frame = PageFrame { visible, rotation };
            let (w, h) = frame.display_size();
            assert_eq!(
                (w, h),
                if rotation % 180 == 0 {
                    (100.0, 200.0)
                } else {
                    (200.0, 100.0)
                }
            );
            // The top-left corner as shown is where the page's turned corner is.
            assert_eq!(
                apply(frame.display_to_user(), (0.0, h)),
                shown_top_left,
                "rotation {rotation}"
            );
        }
    }

    #[test]
    fn every_character_maps_back_through_to_unicode() {
        let page = PageResult {
            blocks: vec![crate::ocr::Block {
                bbox: Default::default(),
                lines: vec![crate::ocr::Line {
                    bbox: Default::default(),
                    confidence: 1.0,
                    words: vec![crate::ocr::Word {
                        text: "Aé中😀".into(),
                        bbox: Default::default(),
                        confidence: 1.0,
                    }],
                    estimated_words: false,
                }],
            }],
            ..PageResult::default()
        };
        let glyphs = Glyphs::new(std::iter::once(&page));
        let (hex, n) = glyphs.encode("Aé中😀");
        // Code 1 is the space between words.
        assert_eq!((hex.as_str(), n), ("0002000300040005", 4));
        let cmap = glyphs.to_unicode();
        for entry in [
            "<0001> <0020>",
            "<0002> <0041>",
            "<0003> <00E9>",
            "<0004> <4E2D>",
            "<0005> <D83DDE00>",
        ] {
            assert!(cmap.contains(entry), "{entry} missing from\n{cmap}");
        }
    }
}
