//! Renderers: the page model to hOCR, ALTO, plain text, JSON and searchable PDF. Each takes the
//! pages of one document in order and returns the whole output.

pub mod alto;
pub mod hocr;
pub mod json;
pub mod pdf;
pub mod thumbnail;
pub mod txt;

use std::path::Path;

use crate::document::{Limits, Password};
pub use pdf::PdfError;

/// What the renderers say about the document besides its pages.
#[derive(Clone, Debug)]
pub struct DocumentInfo<'a> {
    /// Shown as the page image name in hOCR.
    pub source_name: &'a str,
    /// The engine that recognised the pages, e.g. `ppocr`.
    pub engine: &'a str,
    /// ISO 639 language codes the engine reads.
    pub languages: &'a [&'a str],
    /// The document file: the searchable PDF is made of its pages.
    pub source: &'a Path,
    /// The limits it was read under; `pdf_dpi` also sizes image pages in the PDF.
    pub limits: Limits,
    /// The password it was opened with, if it is an encrypted PDF.
    pub password: Option<&'a Password>,
}

/// Output formats, with their file extension and media type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Txt,
    Hocr,
    Json,
    Pdf,
    Alto,
}

impl Format {
    pub const ALL: [Format; 5] = [
        Format::Hocr,
        Format::Txt,
        Format::Json,
        Format::Pdf,
        Format::Alto,
    ];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Txt => "txt",
            Format::Hocr => "html",
            Format::Json => "json",
            Format::Pdf => "pdf",
            Format::Alto => "xml",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Format::Txt => "text/plain; charset=utf-8",
            Format::Hocr => "text/html; charset=utf-8",
            Format::Json => "application/json",
            Format::Pdf => "application/pdf",
            Format::Alto => "application/xml; charset=utf-8",
        }
    }

    /// The whole output. Only the PDF can fail: it reads the document again.
    pub fn render(
        self,
        pages: &[crate::ocr::PageResult],
        info: &DocumentInfo<'_>,
    ) -> Result<Vec<u8>, PdfError> {
        Ok(match self {
            Format::Txt => txt::render(pages).into_bytes(),
            Format::Hocr => hocr::render(pages, info).into_bytes(),
            Format::Json => json::render(pages, info).into_bytes(),
            Format::Pdf => pdf::render(pages, info)?,
            Format::Alto => alto::render(pages, info).into_bytes(),
        })
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "txt" | "text" => Ok(Format::Txt),
            "hocr" | "html" => Ok(Format::Hocr),
            "json" => Ok(Format::Json),
            "pdf" => Ok(Format::Pdf),
            "alto" | "xml" => Ok(Format::Alto),
            other => Err(format!(
                "unknown format `{other}` (expected txt, hocr, json, pdf or alto)"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ocr::{BBox, Block, Line, PageResult, Word};

    fn page() -> PageResult {
        let word = |text: &str, x0, x1| Word {
            text: text.into(),
            bbox: BBox::new(x0, 10, x1, 30),
            confidence: 0.91,
        };
        let line = |words: Vec<Word>| Line {
            bbox: BBox::union(words.iter().map(|w| w.bbox)).unwrap(),
            words,
            confidence: 0.9,
            estimated_words: false,
        };
        let first = line(vec![
            word("Fish", 10, 50),
            word("&", 55, 65),
            word("<chips>", 70, 140),
        ]);
        let second = line(vec![word("\"quoted\"", 10, 90)]);
        PageResult {
            width: 200,
            height: 100,
            rotation: 0,
            skew: 0.0,
            source: Default::default(),
            failure: None,
            blocks: vec![
                Block {
                    bbox: first.bbox,
                    lines: vec![first],
                },
                Block {
                    bbox: second.bbox,
                    lines: vec![second],
                },
            ],
        }
    }

    fn info() -> DocumentInfo<'static> {
        DocumentInfo {
            source_name: "scan<1>.png",
            engine: "ppocr",
            languages: &["en"],
            source: Path::new("scan<1>.png"),
            limits: Limits::default(),
            password: None,
        }
    }

    #[test]
    fn text_has_blank_lines_between_blocks_and_form_feeds_between_pages() {
        let pages = [page(), page()];
        let text = txt::render(&pages);
        assert_eq!(
            text,
            "Fish & <chips>\n\n\"quoted\"\n\u{c}Fish & <chips>\n\n\"quoted\"\n"
        );
    }

    #[test]
    fn hocr_escapes_text_and_carries_the_required_metadata() {
        let html = hocr::render(&[page()], &info());
        assert!(html.contains("<span class=\"ocrx_word\" id=\"word_3\" title=\"bbox 70 10 140 30; x_wconf 91\">&lt;chips&gt;</span>"), "{html}");
        assert!(html.contains(">&amp;</span>"));
        assert!(html.contains("&quot;quoted&quot;"));
        assert!(!html.contains("<chips>") && !html.contains("scan<1>"));
        for meta in [
            "ocr-system",
            "ocr-capabilities",
            "ocr-number-of-pages\" content=\"1",
            "ocr-langs\" content=\"en",
        ] {
            assert!(html.contains(meta), "missing {meta}");
        }
        assert!(html.contains(
            "title=\"image &quot;scan&lt;1&gt;.png&quot;; bbox 0 0 200 100; ppageno 0\""
        ));
    }

    #[test]
    fn alto_has_every_word_in_order_with_positions_and_escaped_content() {
        let xml = alto::render(&[page()], &info());
        let mut reader = quick_xml::Reader::from_str(&xml);
        let (mut strings, mut spaces, mut depth, mut max_depth) = (Vec::new(), 0, 0, 0);
        loop {
            match reader.read_event().expect("ALTO must parse") {
                quick_xml::events::Event::Start(_) => {
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                quick_xml::events::Event::End(_) => depth -= 1,
                quick_xml::events::Event::Empty(e) => {
                    let attr = |name: &str| {
                        let a = e.try_get_attribute(name).unwrap().unwrap();
                        String::from_utf8(a.value.into_owned()).unwrap()
                    };
                    match e.name().as_ref() {
                        b"String" => strings.push((
                            attr("CONTENT"),
                            ["HPOS", "VPOS", "WIDTH", "HEIGHT"]
                                .map(|n| attr(n).parse::<u32>().unwrap()),
                            attr("WC"),
                        )),
                        b"SP" => spaces += 1,
                        _ => {}
                    }
                }
                quick_xml::events::Event::Eof => break,
                _ => {}
            }
        }
        assert_eq!(depth, 0, "every element closes");
        // alto > Layout > Page > PrintSpace > TextBlock > TextLine
        assert_eq!(max_depth, 6);
        let contents: Vec<&str> = strings.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            contents,
            ["Fish", "&amp;", "&lt;chips&gt;", "&quot;quoted&quot;"]
        );
        assert_eq!(
            strings[2].1,
            [70, 10, 70, 20],
            "HPOS VPOS WIDTH HEIGHT of <chips>"
        );
        assert_eq!(strings[0].2, "0.91");
        assert_eq!(spaces, 2, "a space between the words of each line");
        assert!(xml.contains("xmlns=\"http://www.loc.gov/standards/alto/ns-v4#\""));
        assert!(xml.contains("<MeasurementUnit>pixel</MeasurementUnit>"));
    }

    #[test]
    fn json_has_pixel_and_ratio_boxes() {
        let json: serde_json::Value =
            serde_json::from_str(&json::render(&[page()], &info())).unwrap();
        let word = &json["pages"][0]["blocks"][0]["lines"][0]["words"][2];
        assert_eq!(word["text"], "<chips>");
        assert_eq!(word["bbox"], serde_json::json!([70, 10, 140, 30]));
        assert!((word["geometry"]["left"].as_f64().unwrap() - 0.35).abs() < 1e-6);
        assert!((word["geometry"]["height"].as_f64().unwrap() - 0.2).abs() < 1e-6);
        assert_eq!(
            json["pages"][0]["blocks"][0]["lines"][0]["text"],
            "Fish & <chips>"
        );
        assert_eq!(json["version"], 1);
    }

    #[test]
    fn json_reads_back_into_the_same_page_model() {
        let mut turned = page();
        turned.rotation = 90;
        turned.skew = -1.25;
        turned.source = crate::ocr::PageSource::TextLayer;
        turned.blocks[0].lines[0].estimated_words = true;
        let failed = PageResult {
            failure: Some(crate::ocr::PageFailure {
                code: "page_timeout".into(),
                message: "too slow".into(),
            }),
            blocks: Vec::new(),
            ..page()
        };
        let pages = vec![page(), turned, failed];
        let parsed = json::parse(json::render(&pages, &info()).as_bytes()).expect("parses");
        assert_eq!(parsed.pages, pages);
        assert_eq!(parsed.engine, "ppocr");
        assert_eq!(parsed.languages, ["en"]);
        assert!(json::parse(b"{\"version\":1}").is_err());
    }
}
