//! ALTO XML v4 (<https://www.loc.gov/standards/alto/>): `Page` → `PrintSpace` → `TextBlock` →
//! `TextLine` → `String` (with `SP` between words), positions in pixels (`HPOS`, `VPOS`,
//! `WIDTH`, `HEIGHT`) and word confidence `WC` in 0..=1. The format libraries and archives take
//! in; hOCR carries the same content for the web.

use std::fmt::Write;

use super::DocumentInfo;
use super::hocr::escape;
use crate::ocr::{BBox, PageResult};

fn position(b: &BBox) -> String {
    format!(
        "HPOS=\"{}\" VPOS=\"{}\" WIDTH=\"{}\" HEIGHT=\"{}\"",
        b.x0,
        b.y0,
        b.width(),
        b.height()
    )
}

pub fn render(pages: &[PageResult], info: &DocumentInfo<'_>) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <alto xmlns=\"http://www.loc.gov/standards/alto/ns-v4#\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xsi:schemaLocation=\"http://www.loc.gov/standards/alto/ns-v4# \
         http://www.loc.gov/alto/v4/alto-4-4.xsd\">\n\
         <Description>\n\
         <MeasurementUnit>pixel</MeasurementUnit>\n\
         <sourceImageInformation><fileName>{name}</fileName></sourceImageInformation>\n\
         <OCRProcessing ID=\"ocr\"><ocrProcessingStep><processingSoftware>\
         <softwareName>ocrd ({engine})</softwareName><softwareVersion>{version}</softwareVersion>\
         </processingSoftware></ocrProcessingStep></OCRProcessing>\n\
         </Description>\n<Layout>\n",
        name = escape(info.source_name),
        engine = escape(info.engine),
        version = env!("CARGO_PKG_VERSION"),
    );
    let (mut block_id, mut line_id, mut word_id) = (0, 0, 0);
    for (p, page) in pages.iter().enumerate() {
        let whole = BBox::new(0, 0, page.width, page.height);
        let _ = writeln!(
            out,
            "<Page ID=\"page_{n}\" PHYSICAL_IMG_NR=\"{n}\" WIDTH=\"{w}\" HEIGHT=\"{h}\">\n\
             <PrintSpace {pos}>",
            n = p + 1,
            w = page.width,
            h = page.height,
            pos = position(&whole),
        );
        for block in &page.blocks {
            block_id += 1;
            let _ = writeln!(
                out,
                "<TextBlock ID=\"block_{block_id}\" {}>",
                position(&block.bbox)
            );
            for line in &block.lines {
                line_id += 1;
                let _ = writeln!(
                    out,
                    "<TextLine ID=\"line_{line_id}\" {}>",
                    position(&line.bbox)
                );
                for (i, word) in line.words.iter().enumerate() {
                    if i > 0 {
                        // The space between this word and the one before.
                        let before = &line.words[i - 1].bbox;
                        let _ = writeln!(
                            out,
                            "<SP HPOS=\"{}\" VPOS=\"{}\" WIDTH=\"{}\"/>",
                            before.x1,
                            line.bbox.y0,
                            word.bbox.x0.saturating_sub(before.x1)
                        );
                    }
                    word_id += 1;
                    let _ = writeln!(
                        out,
                        "<String ID=\"string_{word_id}\" {} WC=\"{:.2}\" CONTENT=\"{}\"/>",
                        position(&word.bbox),
                        word.confidence.clamp(0.0, 1.0),
                        escape(&word.text)
                    );
                }
                out.push_str("</TextLine>\n");
            }
            out.push_str("</TextBlock>\n");
        }
        out.push_str("</PrintSpace>\n</Page>\n");
    }
    out.push_str("</Layout>\n</alto>\n");
    out
}
