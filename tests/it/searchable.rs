//! Searchable PDF output: `pdftotext -bbox` finds every OCR'd word at its box, the text layer
//! draws nothing, and pages read from their own text layer are kept as they were.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use image::RgbImage;
use ocrd::db::models::{Task, TaskStatus};
use ocrd::document::{self, Limits, OcrPolicy, PageInput, ReadOptions};
use ocrd::render::Format;
use ocrd::tasks::TaskOptions;

use crate::all_in_one::run_worker_until_finished;
use crate::install::{Install, sample_pages};
use crate::pdf::{TestPage, image_pdf, mixed_pdf};

/// A word `pdftotext -bbox` found: its text and box in points from the page's top-left.
#[derive(Debug)]
struct PdfWord {
    text: String,
    bbox: [f64; 4],
}

/// Each page's size in points and its words, as poppler's `pdftotext -bbox` reads them.
fn pdftotext_words(pdf: &[u8]) -> Vec<((f64, f64), Vec<PdfWord>)> {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.pdf"), dir.path().join("out.html"));
    std::fs::write(&input, pdf).unwrap();
    let status = Command::new("pdftotext")
        .arg("-bbox")
        .arg(&input)
        .arg(&output)
        .status()
        .expect("pdftotext (Debian's poppler-utils; make test installs it) must run");
    assert!(status.success(), "pdftotext failed: {status}");
    let html = std::fs::read_to_string(&output).unwrap();
    let mut reader = quick_xml::Reader::from_str(&html);
    let mut pages = Vec::new();
    let mut word: Option<([f64; 4], String)> = None;
    let attr = |e: &quick_xml::events::BytesStart, name: &str| -> f64 {
        let value = e.try_get_attribute(name).unwrap().unwrap();
        std::str::from_utf8(&value.value).unwrap().parse().unwrap()
    };
    use quick_xml::events::Event;
    loop {
        match reader.read_event().expect("pdftotext -bbox writes XHTML") {
            Event::Start(e) if e.name().as_ref() == b"page" => {
                pages.push(((attr(&e, "width"), attr(&e, "height")), Vec::new()));
            }
            Event::Start(e) if e.name().as_ref() == b"word" => {
                word = Some((
                    ["xMin", "yMin", "xMax", "yMax"].map(|n| attr(&e, n)),
                    String::new(),
                ));
            }
            Event::Text(t) => {
                if let Some((_, text)) = &mut word {
                    text.push_str(&t.decode().unwrap());
                }
            }
            // Entities come on their own: `&amp;` and the like.
            Event::GeneralRef(r) => {
                if let Some((_, text)) = &mut word {
                    let name = r.decode().unwrap();
                    text.push_str(match name.as_ref() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("unexpected entity &{other};"),
                    });
                }
            }
            Event::End(e) if e.name().as_ref() == b"word" => {
                let (bbox, text) = word.take().expect("a word ends after it starts");
                let (_, words) = pages.last_mut().expect("a word outside a page");
                words.push(PdfWord { text, bbox });
            }
            Event::Eof => break,
            _ => {}
        }
    }
    pages
}

/// Checks that every word of the JSON result's OCR'd pages is in the PDF's text with the same
/// text, each edge within `tolerance` points of its box. Returns how many words were checked
/// and the largest edge distance.
fn assert_words_at_their_boxes(
    json: &serde_json::Value,
    pdf: &[u8],
    tolerance: f64,
) -> (usize, f64) {
    let pdf_pages = pdftotext_words(pdf);
    let pages = json["pages"].as_array().unwrap();
    assert_eq!(pdf_pages.len(), pages.len(), "one PDF page per page");
    let (mut checked, mut worst) = (0, 0.0f64);
    for (page, ((width_pt, height_pt), found)) in pages.iter().zip(&pdf_pages) {
        if page["source"] != "ocr" {
            continue;
        }
        let sx = width_pt / page["width"].as_f64().unwrap();
        let sy = height_pt / page["height"].as_f64().unwrap();
        for word in page["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["lines"].as_array().unwrap())
            .flat_map(|l| l["words"].as_array().unwrap())
        {
            let text = word["text"].as_str().unwrap();
            let b: Vec<f64> = word["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let want = [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy];
            let distance = |got: &[f64; 4]| {
                got.iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0, f64::max)
            };
            let nearest = found
                .iter()
                .filter(|f| f.text == text)
                .map(|f| distance(&f.bbox))
                .fold(f64::INFINITY, f64::min);
            assert!(
                nearest <= tolerance,
                "`{text}` at {want:?} pt: nearest match {nearest:.2} pt away (page words: {:?})",
                found.iter().map(|f| &f.text).collect::<Vec<_>>()
            );
            worst = worst.max(nearest);
            checked += 1;
        }
    }
    (checked, worst)
}

/// Each page of a document drawn as the OCR would see it.
fn draw(pdf: &[u8]) -> Vec<RgbImage> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pdf).unwrap();
    draw_file(file.path())
}

fn draw_file(path: &Path) -> Vec<RgbImage> {
    document::open(
        path,
        Limits::default(),
        &ReadOptions::policy(OcrPolicy::Force),
    )
    .unwrap()
    .map(|page| match page.unwrap() {
        PageInput::Image(image) => image,
        PageInput::Text(_) => unreachable!("force draws every page"),
    })
    .collect()
}

/// Pixels that differ by more than 8 levels in a channel, and the mean difference, over the
/// area both images cover (a page drawn from points may come out a pixel shorter).
fn difference(a: &RgbImage, b: &RgbImage) -> (usize, f64) {
    let (w, h) = (a.width().min(b.width()), a.height().min(b.height()));
    assert!(
        a.width().abs_diff(b.width()) <= 1 && a.height().abs_diff(b.height()) <= 1,
        "pages of the same size: {:?} and {:?}",
        a.dimensions(),
        b.dimensions()
    );
    let mut differing = 0;
    let mut total = 0u64;
    for (x, y) in (0..h).flat_map(|y| (0..w).map(move |x| (x, y))) {
        let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
        let d = (0..3).map(|c| p[c].abs_diff(q[c])).max().unwrap();
        differing += usize::from(d > 8);
        total += u64::from(d);
    }
    (differing, total as f64 / (w * h) as f64)
}

async fn run(install: &Install, name: &str, body: Vec<u8>, ocr: OcrPolicy) -> Task {
    let options = TaskOptions {
        formats: vec![Format::Json, Format::Pdf],
        ocr,
        ..TaskOptions::default()
    };
    let task = install
        .submit_with(&install.user.id, name, body, options)
        .await;
    let done = run_worker_until_finished(
        install,
        crate::ocr::engine(),
        std::slice::from_ref(&task.id),
        Duration::from_secs(600),
    )
    .await;
    let task = done.into_iter().next().unwrap();
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanned_pdf_gets_an_invisible_text_layer_at_the_word_boxes() {
    let install = Install::embedded(|_| {}).await;
    let images: Vec<RgbImage> = sample_pages()
        .into_iter()
        .take(2)
        .map(|(path, _)| image::open(path).unwrap().to_rgb8())
        .collect();
    let scan = image_pdf(&images, 300.0);
    let task = run(&install, "scan.pdf", scan.clone(), OcrPolicy::Auto).await;
    let json: serde_json::Value =
        serde_json::from_str(&install.result_file(&task.id, "json").await).unwrap();
    let pdf = install.result_bytes(&task.id, "pdf").await;

    let (words, worst) = assert_words_at_their_boxes(&json, &pdf, 2.0);
    println!(
        "searchable pdf (scan): {words} words found by pdftotext, each edge within {worst:.3} pt"
    );
    assert!(words > 300, "only {words} words on two pages");

    // The scan's own pages are kept, and the text layer draws nothing.
    for (i, (before, after)) in draw(&scan).iter().zip(&draw(&pdf)).enumerate() {
        let (differing, mean) = difference(before, after);
        println!(
            "searchable pdf (scan) page {}: {differing} pixels differ, mean {mean:.4}",
            i + 1
        );
        assert_eq!(differing, 0, "page {}: the text layer is visible", i + 1);
    }
    assert!(
        pdf.len() < scan.len() * 2,
        "the scan is not re-encoded: {} → {} bytes",
        scan.len(),
        pdf.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_becomes_a_pdf_page_with_its_pixels_and_words() {
    let install = Install::embedded(|_| {}).await;
    let (path, _) = sample_pages().into_iter().nth(2).unwrap();
    let png = std::fs::read(&path).unwrap();
    let task = run(&install, "page.png", png, OcrPolicy::Auto).await;
    let json: serde_json::Value =
        serde_json::from_str(&install.result_file(&task.id, "json").await).unwrap();
    let pdf = install.result_bytes(&task.id, "pdf").await;
    let (words, worst) = assert_words_at_their_boxes(&json, &pdf, 2.0);
    println!(
        "searchable pdf (png): {words} words found by pdftotext, each edge within {worst:.3} pt"
    );
    assert!(words > 150, "only {words} words");

    // Placed at 300 dpi, the page draws back at the image's own size, pixel for pixel.
    let original = image::open(&path).unwrap().to_rgb8();
    let drawn = draw(&pdf);
    assert_eq!(drawn.len(), 1);
    let (differing, mean) = difference(&original, &drawn[0]);
    println!("searchable pdf (png): {differing} pixels differ from the PNG, mean {mean:.4}");
    assert!(
        mean < 0.5 && differing * 1000 < (original.width() * original.height()) as usize,
        "the page image changed: {differing} pixels, mean {mean}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn born_digital_pages_are_kept_and_only_scanned_ones_get_text() {
    let install = Install::embedded(|_| {}).await;
    let dir = crate::ocr::repo().join("../shared/eval/pdf");
    let born_digital = std::fs::read(dir.join("born_digital_01.pdf")).unwrap();
    let task = run(&install, "typed.pdf", born_digital.clone(), OcrPolicy::Auto).await;
    assert!(
        install.result_bytes(&task.id, "pdf").await == born_digital,
        "nothing was OCR'd, so the PDF is the original"
    );

    let (path, _) = sample_pages().into_iter().next().unwrap();
    let scan = image::open(path).unwrap().to_rgb8();
    let lines = ["Invoice 2024-117", "Total due: 1,250.00 EUR"];
    let mixed = mixed_pdf(&[TestPage::Text(&lines), TestPage::Scan(&scan)], 300.0);
    let task = run(&install, "mixed.pdf", mixed.clone(), OcrPolicy::Auto).await;
    let json: serde_json::Value =
        serde_json::from_str(&install.result_file(&task.id, "json").await).unwrap();
    let pdf = install.result_bytes(&task.id, "pdf").await;
    let (words, _) = assert_words_at_their_boxes(&json, &pdf, 2.0);
    assert!(words > 100, "the scanned page has its words: {words}");
    // The typed page is as it was: the same words at the same places.
    let (before, after) = (&pdftotext_words(&mixed)[0].1, &pdftotext_words(&pdf)[0].1);
    let typed: Vec<(&str, [f64; 4])> = before.iter().map(|w| (w.text.as_str(), w.bbox)).collect();
    assert_eq!(
        typed,
        after
            .iter()
            .map(|w| (w.text.as_str(), w.bbox))
            .collect::<Vec<_>>()
    );
    assert_eq!(typed.first().map(|w| w.0), Some("Invoice"));
    for (i, (a, b)) in draw(&mixed).iter().zip(&draw(&pdf)).enumerate() {
        assert_eq!(difference(a, b).0, 0, "page {} looks different", i + 1);
    }
}

/// On pages read turned (a page scanned sideways, or upside down), the invisible text runs
/// along the lines: pdftotext finds every word at its box, and the text comes out in reading
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turned_pages_get_their_text_layer_along_the_lines() {
    let install = Install::embedded(|_| {}).await;
    let sideways = crate::ocr::repo().join("../shared/eval/skew/page_005.png");
    let (upright, _) = sample_pages().into_iter().nth(2).unwrap();
    let upside_down = image::imageops::rotate180(&image::open(&upright).unwrap().to_rgb8());
    let mut png = std::io::Cursor::new(Vec::new());
    upside_down
        .write_to(&mut png, image::ImageFormat::Png)
        .unwrap();
    for (name, body, rotation) in [
        ("sideways.png", std::fs::read(&sideways).unwrap(), 90),
        ("upside-down.png", png.into_inner(), 180),
    ] {
        let task = run(&install, name, body, OcrPolicy::Auto).await;
        let json: serde_json::Value =
            serde_json::from_str(&install.result_file(&task.id, "json").await).unwrap();
        assert_eq!(json["pages"][0]["rotation"], rotation, "{name}");
        let pdf = install.result_bytes(&task.id, "pdf").await;
        let (words, worst) = assert_words_at_their_boxes(&json, &pdf, 2.0);
        println!("searchable pdf ({name}): {words} words found, each edge within {worst:.3} pt");
        assert!(words > 150, "{name}: only {words} words");
        // The text layer in content order, one word per piece: the page's own reading order.
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), &pdf).unwrap();
        let raw = Command::new("pdftotext")
            .arg("-raw")
            .arg(file.path())
            .arg("-")
            .output()
            .expect("pdftotext runs");
        let text = String::from_utf8_lossy(&raw.stdout).into_owned();
        let json_text: Vec<&str> = json["pages"][0]["blocks"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["lines"].as_array().unwrap())
            .map(|l| l["text"].as_str().unwrap())
            .collect();
        let agreement = ocrd::eval::cer(&text, &json_text.join("\n"));
        assert!(
            agreement < 0.01,
            "{name}: CER {agreement:.4} against the JSON:\n{text}"
        );
    }
}
