//! Plain text in reading order: one line per recognised line, a blank line between blocks, and a
//! form feed between pages (as Tesseract does).

use crate::ocr::PageResult;

pub fn render(pages: &[PageResult]) -> String {
    let mut out = String::new();
    for (i, page) in pages.iter().enumerate() {
        if i > 0 {
            out.push('\u{c}');
        }
        for (j, block) in page.blocks.iter().enumerate() {
            if j > 0 {
                out.push('\n');
            }
            for line in &block.lines {
                out.push_str(&line.text());
                out.push('\n');
            }
        }
    }
    out
}
