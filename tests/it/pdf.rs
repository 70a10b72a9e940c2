//! PDF input: scanned pages rendered with hayro and recognised in order, page counts known up
//! front, bad PDFs (encrypted, truncated, garbage, too many pages) failing with their codes
//! while the worker stays up, pages that fail costing only themselves (within the ratio),
//! resuming after a crash, and memory that stays flat over a 300-page document.

use futures::FutureExt;
use std::time::Duration;

use std::sync::atomic::{AtomicUsize, Ordering};

use image::RgbImage;
use ocrd::db::models::TaskStatus;
use ocrd::ocr::{Engine, OcrError, PageOptions, PageResult};
use ocrd::render::Format;
use ocrd::tasks::{OcrPolicy, TaskOptions};

use crate::all_in_one::{run_worker_until_finished, start_worker};
use crate::install::{Install, sample_pages};

/// A page of a test PDF: typed text (Helvetica, one string per line), a scanned image, or a
/// `side` × `side` image of Flate-compressed zeros (a few hundred kilobytes that decode to
/// `3 × side²` bytes).
pub enum TestPage<'a> {
    Text(&'a [&'a str]),
    Scan(&'a RgbImage),
    Bomb(u32),
}

/// A PDF of scanned pages: each page one JPEG image at `dpi`, as a scanner writes them.
pub fn image_pdf(pages: &[RgbImage], dpi: f32) -> Vec<u8> {
    let pages: Vec<TestPage> = pages.iter().map(TestPage::Scan).collect();
    mixed_pdf(&pages, dpi)
}

/// A PDF mixing typed pages (A4) and scanned ones (their image at `dpi`).
pub fn mixed_pdf(pages: &[TestPage], dpi: f32) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = Vec::new();
    // 1: catalog, 2: page tree; then page, content and image for each page.
    let kids: Vec<String> = (0..pages.len())
        .map(|i| format!("{} 0 R", 3 + 3 * i))
        .collect();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    objects.push(
        format!(
            "<< /Type /Pages /Kids [{}] /Count {} >>",
            kids.join(" "),
            pages.len()
        )
        .into_bytes(),
    );
    for (i, page) in pages.iter().enumerate() {
        let (content_id, image_id) = (4 + 3 * i, 5 + 3 * i);
        let (pixels, colour, filter, data) = match page {
            TestPage::Scan(image) => {
                let mut jpeg = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
                    .encode_image(*image)
                    .unwrap();
                (image.dimensions(), "DeviceRGB", "DCTDecode", jpeg)
            }
            TestPage::Bomb(side) => (
                (*side, *side),
                "DeviceRGB",
                "FlateDecode",
                zeros(*side as usize * *side as usize * 3),
            ),
            TestPage::Text(lines) => {
                objects.push(
                    format!(
                        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
                         /Resources << /Font << /F1 {image_id} 0 R >> >> /Contents {content_id} 0 R >>"
                    )
                    .into_bytes(),
                );
                let mut content = String::from("BT /F1 14 Tf 72 770 Td 18 TL");
                for line in *lines {
                    content.push_str(&format!(" ({line}) Tj T*"));
                }
                content.push_str(" ET");
                objects.push(stream(
                    &format!("<< /Length {} >>", content.len()),
                    content.as_bytes(),
                ));
                objects.push(
                    b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
                        .to_vec(),
                );
                continue;
            }
        };
        let width = pixels.0 as f32 * 72.0 / dpi;
        let height = pixels.1 as f32 * 72.0 / dpi;
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width:.2} {height:.2}] \
                 /Resources << /XObject << /Im0 {image_id} 0 R >> >> /Contents {content_id} 0 R >>"
            )
            .into_bytes(),
        );
        let content = format!("q {width:.2} 0 0 {height:.2} 0 0 cm /Im0 Do Q");
        objects.push(stream(
            &format!("<< /Length {} >>", content.len()),
            content.as_bytes(),
        ));
        let dict = format!(
            "<< /Type /XObject /Subtype /Image /Width {} /Height {} /ColorSpace /{colour} \
             /BitsPerComponent 8 /Filter /{filter} /Length {} >>",
            pixels.0,
            pixels.1,
            data.len()
        );
        objects.push(stream(&dict, &data));
    }
    assemble(&objects)
}

/// A one-page PDF whose page draws a `side` × `side` image bomb ([`TestPage::Bomb`]).
pub fn image_bomb_pdf(side: u32) -> Vec<u8> {
    mixed_pdf(&[TestPage::Bomb(side)], side as f32 / 8.5)
}

/// `len` zero bytes, Flate-compressed.
fn zeros(len: usize) -> Vec<u8> {
    use std::io::Write;
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let row = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        let n = left.min(row.len());
        zlib.write_all(&row[..n]).unwrap();
        left -= n;
    }
    zlib.finish().unwrap()
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("{dict}\nstream\n").into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\nendstream");
    out
}

/// Numbers the objects from 1 and writes the cross-reference table and trailer.
fn assemble(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(object);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn five_sample_pages() -> Vec<(RgbImage, String)> {
    sample_pages()
        .into_iter()
        .take(5)
        .map(|(path, truth)| (image::open(path).unwrap().to_rgb8(), truth))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_page_scanned_pdf_gives_five_pages_in_order() {
    let install = Install::embedded(|_| {}).await;
    let pages = five_sample_pages();
    let images: Vec<RgbImage> = pages.iter().map(|(image, _)| image.clone()).collect();
    let pdf = image_pdf(&images, 300.0);
    let task = install.submit_bytes("scan.pdf", pdf).await;
    let done = run_worker_until_finished(
        &install,
        crate::ocr::engine(),
        std::slice::from_ref(&task.id),
        Duration::from_secs(600),
    )
    .await;
    let task = &done[0];
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    assert_eq!((task.pages_done, task.pages_total), (5, Some(5)));
    let text = install.result_text(&task.id).await;
    let parts: Vec<&str> = text.split('\u{c}').collect();
    assert_eq!(parts.len(), 5, "one text part per page");
    let mut total = 0.0;
    for (i, (part, (_, truth))) in parts.iter().zip(&pages).enumerate() {
        let cer = ocrd::eval::cer(part, truth);
        println!("pdf page {}: CER {cer:.4}", i + 1);
        assert!(cer <= 0.02, "page {} has CER {cer}: out of order?", i + 1);
        total += cer;
    }
    let all_truth: Vec<&str> = pages.iter().map(|(_, t)| t.trim_end()).collect();
    let overall = ocrd::eval::cer(&text, &all_truth.join("\n\u{c}"));
    println!(
        "pdf: 5 pages, mean page CER {:.4}, whole-text CER {overall:.4}",
        total / 5.0
    );
    assert!(overall <= 0.01, "CER {overall} over the concatenated pages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pdfs_fail_with_their_codes_and_the_worker_stays_up() {
    let install = Install::embedded(|c| {
        c.limits.max_pages = 3;
        c.limits.max_pixels = 20_000_000;
    })
    .await;
    let page = RgbImage::from_pixel(200, 100, image::Rgb([255, 255, 255]));
    let good = image_pdf(std::slice::from_ref(&page), 150.0);
    let four = image_pdf(&vec![page.clone(); 4], 150.0);
    let encrypted = std::fs::read(crate::ocr::repo().join("tests/fixtures/pdf/encrypted.pdf"))
        .expect("tests/fixtures/pdf/encrypted.pdf (made by tools/make_pdf_fixtures.py)");
    let mut cases = vec![
        ("encrypted.pdf", encrypted, "encrypted"),
        (
            "truncated.pdf",
            good[..good.len() / 2].to_vec(),
            "undecodable",
        ),
        (
            "garbage.pdf",
            b"%PDF-1.7\n\x00\x01garbage".to_vec(),
            "undecodable",
        ),
        ("four-pages.pdf", four, "too_many_pages"),
        // 64 megapixels: 192 MB once decoded, from about 200 KB.
        ("bomb.pdf", image_bomb_pdf(8000), "too_many_pixels"),
    ];
    let mut ids = Vec::new();
    for (name, bytes, _) in &mut cases {
        ids.push(install.submit_bytes(name, std::mem::take(bytes)).await.id);
    }
    let fine = install.submit_bytes("fine.pdf", good).await.id;
    let (stop, worker) = start_worker(&install, crate::ocr::engine());
    let mut all = ids.clone();
    all.push(fine.clone());
    let done = install.wait_finished(&all, Duration::from_secs(300)).await;
    for ((name, _, code), task) in cases.iter().zip(&done) {
        assert_eq!(task.status, TaskStatus::Failed, "{name}: {task:?}");
        assert_eq!(task.error_code.as_deref(), Some(*code), "{name}: {task:?}");
        assert_eq!(task.attempts, 1, "{name}: a permanent error is not retried");
    }
    let fine = done.last().unwrap();
    assert_eq!(
        fine.status,
        TaskStatus::Completed,
        "the worker went on: {fine:?}"
    );
    assert!(!worker.is_finished(), "the worker is still running");
    stop.cancel();
    worker.await.unwrap();
}

/// The real engine, counting the pages it is asked to recognise; with `stall_on`, it hangs on
/// that call (counted from 1) until released.
struct Counting {
    inner: std::sync::Arc<dyn Engine>,
    calls: AtomicUsize,
    stall_on: Option<usize>,
    released: std::sync::atomic::AtomicBool,
}

impl Counting {
    fn new(stall_on: Option<usize>) -> std::sync::Arc<Counting> {
        std::sync::Arc::new(Counting {
            inner: crate::ocr::engine(),
            calls: AtomicUsize::new(0),
            stall_on,
            released: Default::default(),
        })
    }
}

impl Engine for Counting {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn languages(&self) -> &[&'static str] {
        self.inner.languages()
    }
    fn recognize(&self, page: &RgbImage, options: &PageOptions) -> Result<PageResult, OcrError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.stall_on == Some(call) {
            let until = std::time::Instant::now() + Duration::from_secs(300);
            while !self.released.load(Ordering::SeqCst) && std::time::Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.inner.recognize(page, options)
    }
}

fn born_digital() -> (Vec<u8>, String) {
    let dir = crate::ocr::repo().join("../shared/eval/pdf");
    (
        std::fs::read(dir.join("born_digital_01.pdf")).unwrap(),
        std::fs::read_to_string(dir.join("born_digital_01.gt.txt")).unwrap(),
    )
}

/// What one task of [`run_policies`] gave.
struct Outcome {
    policy: OcrPolicy,
    pages: usize,
    /// Pages the engine was asked to recognise.
    calls: usize,
    text: String,
    /// Each page's `source` in the JSON result.
    sources: Vec<String>,
    took: Duration,
}

/// Runs `pdf` once per policy, one after the other, through a worker whose engine counts
/// its calls.
async fn run_policies(install: &Install, pdf: &[u8], policies: &[OcrPolicy]) -> Vec<Outcome> {
    let engine = Counting::new(None);
    let (stop, worker) = start_worker(install, engine.clone());
    let mut outcomes = Vec::new();
    for &policy in policies {
        let options = TaskOptions {
            ocr: policy,
            ..TaskOptions::default()
        };
        let before = engine.calls.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        let task = install
            .submit_with(&install.user.id, "doc.pdf", pdf.to_vec(), options)
            .await;
        let done = install
            .wait_finished(std::slice::from_ref(&task.id), Duration::from_secs(600))
            .await;
        let took = started.elapsed();
        let task = &done[0];
        assert_eq!(task.status, TaskStatus::Completed, "{policy:?}: {task:?}");
        let json: serde_json::Value =
            serde_json::from_str(&install.result_file(&task.id, "json").await).unwrap();
        outcomes.push(Outcome {
            policy,
            pages: task.pages_total.unwrap() as usize,
            calls: engine.calls.load(Ordering::SeqCst) - before,
            text: install.result_text(&task.id).await,
            sources: json["pages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["source"].as_str().unwrap().to_owned())
                .collect(),
            took,
        });
    }
    stop.cancel();
    worker.await.unwrap();
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_born_digital_pdf_is_read_from_its_text_layer_without_ocr_and_force_ocrs_it() {
    let install = Install::embedded(|_| {}).await;
    let (pdf, truth) = born_digital();
    let outcomes = run_policies(&install, &pdf, &[OcrPolicy::Auto, OcrPolicy::Force]).await;
    for o in &outcomes {
        println!(
            "born-digital, ocr={:?}: {} page(s), {} OCR call(s), CER {:.4}, {:.2} s",
            o.policy,
            o.pages,
            o.calls,
            ocrd::eval::cer(&o.text, &truth),
            o.took.as_secs_f64()
        );
    }
    let (auto, force) = (&outcomes[0], &outcomes[1]);
    assert_eq!(auto.calls, 0, "auto read the text layer without OCR");
    assert!(
        auto.sources.iter().all(|s| s == "text_layer"),
        "{:?}",
        auto.sources
    );
    let cer = ocrd::eval::cer(&auto.text, &truth);
    assert!(cer <= 0.01, "text-layer CER {cer}");
    assert_eq!(force.pages, auto.pages);
    assert_eq!(force.calls, force.pages, "force recognised every page");
    assert!(
        force.sources.iter().all(|s| s == "ocr"),
        "{:?}",
        force.sources
    );
    let cer = ocrd::eval::cer(&force.text, &truth);
    assert!(cer <= 0.02, "OCR CER {cer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_pdf_is_read_page_by_page() {
    let install = Install::embedded(|_| {}).await;
    let typed = [
        "The quick brown fox jumps over the lazy dog.",
        "Pack my box with five dozen liquor jugs.",
    ];
    let (scan, scan_truth) = five_sample_pages().swap_remove(0);
    let pdf = mixed_pdf(&[TestPage::Text(&typed), TestPage::Scan(&scan)], 300.0);
    let outcomes = run_policies(&install, &pdf, &[OcrPolicy::Auto, OcrPolicy::Skip]).await;

    let auto = &outcomes[0];
    assert_eq!(auto.calls, 1, "auto: only the scanned page is recognised");
    assert_eq!(auto.sources, ["text_layer", "ocr"]);
    let pages: Vec<&str> = auto.text.split('\u{c}').collect();
    assert_eq!(pages.len(), 2);
    assert_eq!(
        pages[0].split_whitespace().collect::<Vec<_>>().join(" "),
        typed.join(" "),
        "the typed page's own text"
    );
    let cer = ocrd::eval::cer(pages[1], &scan_truth);
    assert!(cer <= 0.02, "the scanned page has CER {cer}");

    let skip = &outcomes[1];
    assert_eq!(skip.calls, 0, "skip: no OCR at all");
    assert_eq!(skip.sources, ["text_layer", "text_layer"]);
    let pages: Vec<&str> = skip.text.split('\u{c}').collect();
    assert!(pages[0].contains("quick brown fox"), "{}", skip.text);
    assert!(
        pages[1].trim().is_empty(),
        "the scan has no text layer: {:?}",
        skip.text
    );

    // Both kinds of page are searchable, each on its own page: the typed page of both tasks,
    // the scanned page of the task that recognised it.
    let search = |q: String| {
        let (db, owner) = (install.app.db.clone(), install.user.id.clone());
        async move {
            let query = ocrd::search::Query::parse(&q).unwrap();
            db.run(move |c| {
                async move {
                    let scope = ocrd::search::Scope::Owner(&owner);
                    ocrd::search::search(c, scope, &query, 20, 0).await
                }
                .boxed()
            })
            .await
            .unwrap()
            .iter()
            .map(|hit| hit.page)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(search("\"five dozen liquor\"".into()).await, [1, 1]);
    let scanned = auto.text.split('\u{c}').nth(1).unwrap();
    let word = scanned
        .split(|c: char| !c.is_alphabetic())
        .max_by_key(|w| w.chars().count())
        .unwrap();
    assert_eq!(search(word.to_owned()).await, [2], "{word}");
}

/// A counter's value in a Prometheus text exposition.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_document_resumes_after_the_stored_pages() {
    let install = Install::distributed(|_| {}).await;
    let pages = five_sample_pages();
    let images: Vec<RgbImage> = pages
        .iter()
        .chain(&pages)
        .map(|(image, _)| image.clone())
        .collect();
    let truths: Vec<&String> = pages.iter().chain(&pages).map(|(_, t)| t).collect();
    let task = install
        .submit_bytes("ten.pdf", image_pdf(&images, 300.0))
        .await;
    let prefix = ocrd::blobs::BlobKey::checkpoints(&task.user_id, task.created_at, &task.id);

    let mut first = install.spawn_worker("first", &[]);
    crate::install::wait_for(Duration::from_secs(600), "page 3 of 10", || async {
        let now = install.task(&task.id).await;
        (now.pages_done >= 3).then_some(())
    })
    .await;
    first.kill();
    // The killed worker's task keeps the ten pages it holds against the month's quota.
    let standing = || async {
        let mut conn = install.app.db.get().await.unwrap();
        ocrd::quota::usage(&mut conn, &task.user_id, ocrd::db::models::now())
            .await
            .unwrap()
    };
    let held = standing().await;
    assert_eq!(
        (held.pages_reserved, held.pages_this_month),
        (10, 0),
        "{held:?}"
    );
    let stored = install.app.blobs.list(&prefix).await.unwrap().len();
    assert!(
        (3..10).contains(&stored),
        "{stored} pages stored when killed"
    );

    let second = install.spawn_worker("second", &[]);
    let done = install
        .wait_finished(std::slice::from_ref(&task.id), Duration::from_secs(600))
        .await;
    let done = &done[0];
    assert_eq!(done.status, TaskStatus::Completed, "{done:?}");
    assert_eq!((done.pages_done, done.pages_total), (10, Some(10)));
    // Settled once, by whichever worker finished it: ten pages read, none held.
    crate::install::wait_for(Duration::from_secs(60), "the pages settled", || async {
        let used = standing().await;
        (used.pages_reserved == 0).then_some(used)
    })
    .await;
    assert_eq!(standing().await.pages_this_month, 10);
    let (_, metrics) = second.health("/metrics").await;
    let recognised = counter(&metrics, "ocrd_pages_total");
    println!(
        "resume: killed with {stored} pages stored; the second worker recognised {recognised}"
    );
    assert_eq!(
        recognised as usize,
        10 - stored,
        "the resumed task recomputed stored pages"
    );
    let text = install.result_text(&task.id).await;
    let parts: Vec<&str> = text.split('\u{c}').collect();
    assert_eq!(parts.len(), 10);
    for (i, (part, truth)) in parts.iter().zip(&truths).enumerate() {
        let cer = ocrd::eval::cer(part, truth);
        assert!(cer <= 0.02, "page {} has CER {cer}: out of order?", i + 1);
    }
    assert!(
        install.app.blobs.list(&prefix).await.unwrap().is_empty(),
        "checkpoints are removed once the task completes"
    );
}

/// A few words cut from a sample page: quick to recognise.
fn snippet() -> RgbImage {
    let (path, _) = sample_pages().into_iter().next().unwrap();
    image::open(path)
        .unwrap()
        .crop_imm(150, 150, 1200, 220)
        .to_rgb8()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_cannot_be_drawn_costs_that_page_until_too_many_fail() {
    let install = Install::embedded(|c| c.limits.max_pixels = 20_000_000).await;
    let snippet = snippet();
    let pages_with_bombs = |bombs: &[usize]| -> Vec<TestPage> {
        (1..=10)
            .map(|n| {
                if bombs.contains(&n) {
                    TestPage::Bomb(8000)
                } else {
                    TestPage::Scan(&snippet)
                }
            })
            .collect()
    };
    // 1 of 10 is within the default ratio of 0.1; 2 of 10 is not.
    let one = install
        .submit_bytes("one-bad.pdf", mixed_pdf(&pages_with_bombs(&[4]), 300.0))
        .await;
    let two = install
        .submit_bytes("two-bad.pdf", mixed_pdf(&pages_with_bombs(&[4, 7]), 300.0))
        .await;
    let done = run_worker_until_finished(
        &install,
        crate::ocr::engine(),
        &[one.id.clone(), two.id.clone()],
        Duration::from_secs(600),
    )
    .await;

    let one = &done[0];
    assert_eq!(one.status, TaskStatus::Completed, "{one:?}");
    assert_eq!((one.pages_done, one.pages_total), (10, Some(10)));
    let warnings = one.page_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0].page, warnings[0].code.as_str()),
        (4, "too_many_pixels")
    );
    println!("partial success: {warnings:?}");
    let text = install.result_text(&one.id).await;
    let parts: Vec<&str> = text.split('\u{c}').collect();
    assert_eq!(parts.len(), 10);
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.trim().is_empty(), i == 3, "page {}: {part:?}", i + 1);
    }
    let json: serde_json::Value =
        serde_json::from_str(&install.result_file(&one.id, "json").await).unwrap();
    assert_eq!(json["pages"][3]["failure"]["code"], "too_many_pixels");
    assert!(json["pages"][2].get("failure").is_none());

    let two = &done[1];
    assert_eq!(two.status, TaskStatus::Failed, "{two:?}");
    assert_eq!(two.error_code.as_deref(), Some("too_many_pixels"));
    let message = two.error_message.as_deref().unwrap_or_default();
    assert!(message.ends_with("(2 of 10 pages failed)"), "{message}");
    assert!(two.page_warnings().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_times_out_is_skipped_and_the_rest_is_read() {
    let install = Install::embedded(|c| {
        c.worker.page_timeout_secs = 15;
        c.worker.max_failed_page_ratio = 0.5;
    })
    .await;
    let snippet = snippet();
    let pdf = image_pdf(&vec![snippet; 4], 300.0);
    let engine = Counting::new(Some(2));
    let task = install.submit_bytes("stall.pdf", pdf).await;
    let (stop, worker) = start_worker(&install, engine.clone());
    let done = install
        .wait_finished(std::slice::from_ref(&task.id), Duration::from_secs(600))
        .await;
    engine.released.store(true, Ordering::SeqCst);
    stop.cancel();
    worker.await.unwrap();
    let task = &done[0];
    assert_eq!(task.status, TaskStatus::Completed, "{task:?}");
    let warnings = task.page_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(
        (warnings[0].page, warnings[0].code.as_str()),
        (2, "page_timeout")
    );
    assert_eq!(warnings[0].message, "page 2 took longer than 15 s");
    let text = install.result_text(&task.id).await;
    let parts: Vec<&str> = text.split('\u{c}').collect();
    assert_eq!(parts.len(), 4);
    for (i, part) in parts.iter().enumerate() {
        assert_eq!(part.trim().is_empty(), i == 1, "page {}: {part:?}", i + 1);
    }
}

/// Runs an `n`-page scanned PDF through a fresh worker process: its peak RSS in MiB, the
/// pages per second from start to finish of the task, and the file's size in MiB.
async fn long_pdf(install: &Install, page: &RgbImage, n: usize) -> (f64, f64, f64) {
    let pdf = image_pdf(&vec![page.clone(); n], 100.0);
    let size = pdf.len() as f64 / (1024.0 * 1024.0);
    let options = TaskOptions {
        formats: vec![Format::Txt, Format::Json, Format::Hocr, Format::Pdf],
        ..TaskOptions::default()
    };
    let task = install
        .submit_with(&install.user.id, &format!("{n}-pages.pdf"), pdf, options)
        .await;
    let mut worker = install.spawn_worker(&format!("long-{n}"), &[("OCRD_OCR__PDF_DPI", "100")]);
    let done = install
        .wait_finished(std::slice::from_ref(&task.id), Duration::from_secs(1800))
        .await;
    let peak = ocrd::eval::peak_rss_mib(&worker.pid().to_string())
        .unwrap_or_else(|| panic!("no VmHWM for the worker process {}", worker.pid()));
    worker.kill();
    let done = &done[0];
    assert_eq!(
        done.status,
        TaskStatus::Completed,
        "{done:?}\n{}",
        worker.log_text()
    );
    assert_eq!(done.pages_done as usize, n);
    let took = (done.finished_at.unwrap() - done.started_at.unwrap()).as_seconds_f64();
    (peak, n as f64 / took, size)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_page_pdf_runs_in_flat_memory() {
    let install = Install::distributed(|_| {}).await;
    // An A4 page at 100 dpi with a few lines of text on it.
    let mut page = RgbImage::from_pixel(827, 1169, image::Rgb([255, 255, 255]));
    image::imageops::overlay(
        &mut page,
        &image::imageops::resize(&snippet(), 600, 110, image::imageops::FilterType::Triangle),
        100,
        120,
    );
    let (small_peak, small_rate, small_size) = long_pdf(&install, &page, 30).await;
    let (peak, rate, size) = long_pdf(&install, &page, 300).await;
    println!(
        "long pdf: 30 pages ({small_size:.1} MiB file) peak RSS {small_peak:.0} MiB, \
         {small_rate:.2} pages/s; 300 pages ({size:.1} MiB file) peak RSS {peak:.0} MiB, \
         {rate:.2} pages/s"
    );
    // Ten times the pages may cost the larger file, which the renderer and the searchable PDF
    // hold a few times over, but never a page image each: one page drawn is 3.9 MB here, so
    // keeping even a tenth of them would take over 100 MiB more.
    let bound = small_peak * 1.1 + 4.0 * (size - small_size) + 24.0;
    assert!(
        peak <= bound,
        "peak RSS grew with the page count: {small_peak:.0} MiB for 30 pages, {peak:.0} MiB \
         for 300, over the bound of {bound:.0} MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_pdf_is_read_with_the_password_given_for_its_task() {
    let install = Install::embedded(|_| {}).await;
    let pdf = std::fs::read(crate::ocr::repo().join("tests/fixtures/pdf/encrypted_text.pdf"))
        .expect("tests/fixtures/pdf/encrypted_text.pdf (made by tools/make_pdf_fixtures.py)");
    let with = |password: &str| TaskOptions {
        formats: vec![Format::Txt, Format::Pdf],
        password: Some(ocrd::tasks::Password::new(password)),
        ..TaskOptions::default()
    };
    let right = install
        .submit_with(&install.user.id, "minutes.pdf", pdf.clone(), with("secret"))
        .await;
    let wrong = install
        .submit_with(&install.user.id, "minutes.pdf", pdf, with("guess"))
        .await;
    assert!(
        !format!("{:?}", with("secret")).contains("secret"),
        "passwords are not printed"
    );
    let done = run_worker_until_finished(
        &install,
        crate::ocr::engine(),
        &[right.id.clone(), wrong.id.clone()],
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(done[0].status, TaskStatus::Completed, "{:?}", done[0]);
    let text = install.result_text(&done[0].id).await;
    assert_eq!(
        text.trim(),
        "Confidential minutes of 12 March 2024\nBudget approved: 48,500 EUR"
    );
    // The searchable PDF opens without the password.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), install.result_bytes(&done[0].id, "pdf").await).unwrap();
    let reading = ocrd::document::ReadOptions::policy(OcrPolicy::Skip);
    let mut pages = ocrd::document::open(file.path(), Default::default(), &reading).unwrap();
    assert!(matches!(
        pages.next(),
        Some(Ok(ocrd::document::PageInput::Text(_)))
    ));

    assert_eq!(done[1].status, TaskStatus::Failed);
    assert_eq!(done[1].error_code.as_deref(), Some("encrypted"));
    assert_eq!(
        done[1].error_message.as_deref(),
        Some("the password does not open this PDF")
    );
}
