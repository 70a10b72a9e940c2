//! hOCR 1.2 (<http://kba.github.io/hocr-spec/1.2/>): `ocr_page` → `ocr_carea` → `ocr_par` →
//! `ocr_line` → `ocrx_word`, each with `bbox` and `x_wconf` (0–100). All text is escaped: hOCR
//! is served to browsers, and recognised text is untrusted.

use std::fmt::Write;

use super::DocumentInfo;
use crate::ocr::{BBox, PageResult};

/// Escapes text for HTML content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XHTML.
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn bbox(b: &BBox) -> String {
    format!("bbox {} {} {} {}", b.x0, b.y0, b.x1, b.y1)
}

fn wconf(confidence: f32) -> u32 {
    (confidence.clamp(0.0, 1.0) * 100.0).round() as u32
}

pub fn render(pages: &[PageResult], info: &DocumentInfo<'_>) -> String {
    let mut out = String::new();
    let langs = info.languages.join(" ");
    let lang = info.languages.first().copied().unwrap_or("und");
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <!DOCTYPE html>\n\
         <html xmlns=\"http://www.w3.org/1999/xhtml\" xml:lang=\"{lang}\" lang=\"{lang}\">\n\
         <head>\n\
         <title>{title}</title>\n\
         <meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n\
         <meta name=\"ocr-system\" content=\"ocrd {version} ({engine})\"/>\n\
         <meta name=\"ocr-capabilities\" content=\"ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf\"/>\n\
         <meta name=\"ocr-number-of-pages\" content=\"{pages}\"/>\n\
         <meta name=\"ocr-langs\" content=\"{langs}\"/>\n\
         </head>\n<body>\n",
        lang = escape(lang),
        title = escape(info.source_name),
        version = env!("CARGO_PKG_VERSION"),
        engine = escape(info.engine),
        pages = pages.len(),
        langs = escape(&langs),
    );
    let (mut block_id, mut line_id, mut word_id) = (0, 0, 0);
    for (p, page) in pages.iter().enumerate() {
        // hOCR's textangle: the page was read turned by this much.
        let angle = match page.rotation {
            0 => String::new(),
            r => format!("; textangle {r}"),
        };
        let _ = writeln!(
            out,
            "<div class=\"ocr_page\" id=\"page_{n}\" title=\"image &quot;{image}&quot;; {bbox}; ppageno {p}{angle}\">",
            n = p + 1,
            image = escape(info.source_name),
            bbox = bbox(&BBox::new(0, 0, page.width, page.height)),
        );
        for block in &page.blocks {
            block_id += 1;
            let b = bbox(&block.bbox);
            let _ = writeln!(
                out,
                " <div class=\"ocr_carea\" id=\"block_{block_id}\" title=\"{b}\">\n  <p class=\"ocr_par\" id=\"par_{block_id}\" title=\"{b}\">"
            );
            for line in &block.lines {
                line_id += 1;
                let _ = write!(
                    out,
                    "   <span class=\"ocr_line\" id=\"line_{line_id}\" title=\"{}; x_wconf {}\">",
                    bbox(&line.bbox),
                    wconf(line.confidence)
                );
                for (i, word) in line.words.iter().enumerate() {
                    word_id += 1;
                    if i > 0 {
                        out.push(' ');
                    }
                    let _ = write!(
                        out,
                        "<span class=\"ocrx_word\" id=\"word_{word_id}\" title=\"{}; x_wconf {}\">{}</span>",
                        bbox(&word.bbox),
                        wconf(word.confidence),
                        escape(&word.text)
                    );
                }
                out.push_str("</span>\n");
            }
            out.push_str("  </p>\n </div>\n");
        }
        out.push_str("</div>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}
