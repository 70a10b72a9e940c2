//! The model's answer (HTML, `data-bbox` on each block) → the page model.
//!
//! Each element with a `data-bbox="x0 y0 x1 y1"` becomes a block: its text (tags stripped,
//! entities decoded, `<br>` and newlines separating lines) split into lines stacked evenly in the
//! box, and words placed along each line in proportion to their length, marked as estimated.
//! An answer without boxes becomes one block over the whole page. The answer is untrusted text:
//! nothing here panics on malformed markup.

use crate::ocr::{BBox, Block, Line, PageResult, PageSource, Word};

/// Where the answer's boxes live: `scale` units across each side of the image (Qwen3-VL: 1000),
/// or pixels of the image the model saw when `scale` is 0.
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub scale: u32,
    /// The image the model saw, `(width, height)`.
    pub seen: (u32, u32),
    /// The page, `(width, height)`.
    pub page: (u32, u32),
}

impl Frame {
    fn page_box(self, [x0, y0, x1, y1]: [f64; 4]) -> BBox {
        let (sx, sy) = if self.scale > 0 {
            (f64::from(self.scale), f64::from(self.scale))
        } else {
            (f64::from(self.seen.0), f64::from(self.seen.1))
        };
        let (w, h) = (f64::from(self.page.0), f64::from(self.page.1));
        let px = |v: f64, s: f64, side: f64| (v / s * side).clamp(0.0, side).round() as u32;
        BBox::new(px(x0, sx, w), px(y0, sy, h), px(x1, sx, w), px(y1, sy, h))
    }
}

/// The page as the answer describes it; `confidence` goes on every word.
pub fn parse(answer: &str, frame: Frame, confidence: f32) -> PageResult {
    let (width, height) = frame.page;
    let mut blocks: Vec<Block> = boxed_elements(answer)
        .into_iter()
        .filter_map(|(bbox, inner)| block(frame.page_box(bbox), &text_of(&inner), confidence))
        .collect();
    if blocks.is_empty() {
        // No boxes: the whole answer, over the whole page.
        blocks.extend(block(
            BBox::new(0, 0, width, height),
            &text_of(answer),
            confidence,
        ));
    }
    PageResult {
        width,
        height,
        rotation: 0,
        skew: 0.0,
        blocks,
        source: PageSource::Ocr,
        failure: None,
    }
}

/// A block of `text` over `bbox`: its lines stacked evenly, their words spread by length.
fn block(bbox: BBox, text: &str, confidence: f32) -> Option<Block> {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|words| !words.is_empty())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let n = lines.len() as u32;
    let line_height = (bbox.height() / n).max(1);
    let lines = lines
        .iter()
        .enumerate()
        .map(|(i, words)| {
            // Inside the block box, however many lines a flat box holds.
            let y0 = (bbox.y0 + i as u32 * line_height).min(bbox.y1);
            let y1 = if i as u32 + 1 == n {
                bbox.y1
            } else {
                (y0 + line_height).min(bbox.y1)
            };
            line(BBox::new(bbox.x0, y0, bbox.x1, y1), words, confidence)
        })
        .collect();
    Some(Block { lines, bbox })
}

/// Words along a line box, each as wide as its share of the characters (a space counted
/// between words).
fn line(bbox: BBox, words: &[&str], confidence: f32) -> Line {
    let chars: usize = words.iter().map(|w| w.chars().count()).sum::<usize>() + words.len() - 1;
    let per_char = f64::from(bbox.width()) / chars.max(1) as f64;
    let mut at = 0usize;
    let words = words
        .iter()
        .map(|w| {
            let len = w.chars().count();
            // Inside the line box, which may be zero wide (a box on the page's edge).
            let x0 = (bbox.x0 + (at as f64 * per_char).round() as u32).min(bbox.x1);
            let x1 = (bbox.x0 + ((at + len) as f64 * per_char).round() as u32).min(bbox.x1);
            at += len + 1;
            Word {
                text: (*w).to_owned(),
                bbox: BBox::new(x0, bbox.y0, x1.max(x0), bbox.y1),
                confidence,
            }
        })
        .collect();
    Line {
        words,
        bbox,
        confidence,
        estimated_words: true,
    }
}

/// Every outermost element carrying a `data-bbox`, with its box and inner markup.
fn boxed_elements(html: &str) -> Vec<([f64; 4], String)> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        let tag = &after[..end];
        let body = &after[end + 1..];
        let name: String = tag
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match (
            name.is_empty(),
            attribute(tag, "data-bbox").and_then(parse_box),
        ) {
            (false, Some(bbox)) => {
                let (inner, after_element) = element_body(body, &name);
                found.push((bbox, inner.to_owned()));
                rest = after_element;
            }
            _ => rest = body,
        }
    }
    found
}

/// The inside of an element named `name` that starts at `body`, up to its matching close tag
/// (same-named elements may nest), and what follows it. Unclosed: the rest of the text.
fn element_body<'a>(body: &'a str, name: &str) -> (&'a str, &'a str) {
    let (open, close) = (format!("<{name}"), format!("</{name}"));
    let lower = body.to_ascii_lowercase();
    let mut depth = 1;
    let mut at = 0;
    while at < lower.len() {
        let next_open = lower[at..].find(&open).map(|i| i + at);
        let next_close = lower[at..].find(&close).map(|i| i + at);
        match (next_open, next_close) {
            (Some(o), Some(c)) if o < c => {
                depth += 1;
                at = o + open.len();
            }
            (_, Some(c)) => {
                depth -= 1;
                if depth == 0 {
                    let tail = lower[c..].find('>').map_or(body.len(), |i| c + i + 1);
                    return (&body[..c], &body[tail..]);
                }
                at = c + close.len();
            }
            (_, None) => break,
        }
    }
    (body, "")
}

/// The value of attribute `name` in the inside of a start tag.
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let at = tag.find(&format!("{name}="))? + name.len() + 1;
    let value = &tag[at..];
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value = &value[1..];
    value.find(quote).map(|end| &value[..end])
}

fn parse_box(value: &str) -> Option<[f64; 4]> {
    let numbers: Vec<f64> = value
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok().filter(|v: &f64| v.is_finite()))
        .collect::<Option<_>>()?;
    let [x0, y0, x1, y1] = numbers.try_into().ok()?;
    Some([x0.min(x1), y0.min(y1), x0.max(x1), y0.max(y1)])
}

/// Markup → text: `<br>` and block ends become line breaks, other tags go, entities decode.
fn text_of(markup: &str) -> String {
    let mut out = String::new();
    let mut rest = markup;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            rest = "";
            break;
        };
        let tag = rest[start + 1..start + end].trim().to_ascii_lowercase();
        let name = tag.trim_start_matches('/');
        if name.starts_with("br")
            || ["p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"]
                .iter()
                .any(|b| name == *b || name.starts_with(&format!("{b} ")))
        {
            out.push('\n');
        } else if name.starts_with("td") || name.starts_with("th") {
            out.push(' ');
        }
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    decode_entities(&out)
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let entity = after
            .find(';')
            .filter(|&end| end <= 10)
            .map(|end| (&after[..end], &after[end + 1..]));
        let decoded = entity.and_then(|(name, tail)| {
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, tail))
        });
        match decoded {
            Some((c, tail)) => {
                out.push(c);
                rest = tail;
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            scale: 1000,
            seen: (640, 480),
            page: (2000, 1000),
        }
    }

    #[test]
    fn blocks_come_from_data_bbox_elements_in_page_pixels() {
        let answer = "<html><body><h1 data-bbox=\"100 50 500 100\">Annual &amp; <b>Final</b> Report</h1>\
                      <p data-bbox='100 150 900 350'>First line<br/>second&nbsp;line &#x41;</p>\
                      <p>no box</p></body></html>";
        let page = parse(answer, frame(), 0.9);
        assert_eq!(page.blocks.len(), 2);
        assert_eq!(page.blocks[0].bbox, BBox::new(200, 50, 1000, 100));
        let text: Vec<String> = page.lines().map(Line::text).collect();
        assert_eq!(
            text,
            ["Annual & Final Report", "First line", "second line A"]
        );
        let second = &page.blocks[1];
        assert_eq!(second.lines[0].bbox, BBox::new(200, 150, 1800, 250));
        assert_eq!(second.lines[1].bbox, BBox::new(200, 250, 1800, 350));
        // Words spread along the line by length, inside it, in order.
        let words = &second.lines[0].words;
        assert!(words[0].bbox.x1 <= words[1].bbox.x0 && words[1].bbox.x1 <= 1800);
        assert!(page.lines().all(|l| l.estimated_words));
    }

    #[test]
    fn an_answer_without_boxes_is_one_block_and_garbage_never_panics() {
        let page = parse("just text\nand more", frame(), 0.5);
        assert_eq!(page.blocks.len(), 1);
        assert_eq!(page.blocks[0].bbox, BBox::new(0, 0, 2000, 1000));
        assert_eq!(page.lines().count(), 2);
        for junk in [
            "<p data-bbox=\"1 2 3\">x",
            "<<<>>>",
            "<p data-bbox=\"a b c d\">",
            "&#xFFFFFFFF; &",
            "<div data-bbox=\"0 0 10 10\"><div>in</div>",
        ] {
            let page = parse(junk, frame(), 0.5);
            assert!(
                page.words().all(|w| w.bbox.x1 <= 2000 && w.bbox.y1 <= 1000),
                "{junk}"
            );
        }
    }
}
