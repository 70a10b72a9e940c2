//! `ocrd ocr FILE...`: one-shot local OCR, no server.
//!
//! Exit codes: 0 every file was recognised; 1 nothing could run (configuration, models or the
//! ONNX Runtime library missing); 2 bad usage; 3 some files failed (the others were written).

use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Config, EngineKind};
use crate::document::{self, Limits, OcrPolicy, PageInput, Password, ReadOptions};
use crate::ocr::{self, PageResult};
use crate::render::{DocumentInfo, Format};

#[derive(Debug, clap::Args)]
pub struct OcrArgs {
    /// Documents to recognise: PNG, JPEG, TIFF (every page), WebP, BMP or PDF (every page).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format: txt, hocr, json, pdf (searchable: the pages with their text) or alto
    /// (ALTO XML v4).
    #[arg(long, short = 'f', default_value = "txt", value_parser = parse_format)]
    pub format: Format,

    /// Output file (one input) or directory (several inputs). Default: standard output for one
    /// input, next to each input for several.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// The engine; default `ocr.engine` from the configuration.
    #[arg(long, value_parser = super::parse_engine)]
    pub engine: Option<EngineKind>,

    /// The scripts the documents are written in: latin, english (Latin without accents),
    /// greek, cyrillic, cjk (comma-separated) or all; default `ocr.lang`.
    #[arg(long, value_parser = parse_lang)]
    pub lang: Option<ocr::lang::Lang>,

    /// The Qwen3-VL export to load; default `ocr.qwen3vl.model_dir`.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,

    /// PDF pages with their own text: `auto` uses that text and recognises the other pages,
    /// `force` recognises every page, `skip` only reads text layers.
    #[arg(long, default_value = "auto", value_parser = parse_policy)]
    pub ocr: OcrPolicy,

    /// The password of encrypted PDFs (better from the environment than the command line,
    /// which other users can see).
    #[arg(long, env = "PDF_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

fn parse_policy(s: &str) -> Result<OcrPolicy, String> {
    s.parse()
}

fn parse_lang(s: &str) -> Result<ocr::lang::Lang, String> {
    s.parse()
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

/// Where each input's result goes; `None` is standard output.
fn destinations(args: &OcrArgs) -> anyhow::Result<Vec<Option<PathBuf>>> {
    let ext = args.format.extension();
    if args.files.len() == 1 {
        let dest = args.output.as_ref().map(|out| {
            if out.is_dir() {
                out.join(output_name(&args.files[0], ext))
            } else {
                out.clone()
            }
        });
        return Ok(vec![dest]);
    }
    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut seen = HashSet::new();
    args.files
        .iter()
        .map(|file| {
            let dir = match &args.output {
                Some(dir) => dir.clone(),
                None => file.parent().map(Path::to_path_buf).unwrap_or_default(),
            };
            let dest = dir.join(output_name(file, ext));
            // `./a.png` and `a.jpg` both write `a.txt`: compare absolute paths.
            let key = std::path::absolute(&dest).unwrap_or_else(|_| dest.clone());
            anyhow::ensure!(
                seen.insert(key),
                "two inputs would both be written to {}; rename one or use separate runs",
                dest.display()
            );
            Ok(Some(dest))
        })
        .collect()
}

fn output_name(file: &Path, ext: &str) -> String {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
    format!("{}.{ext}", stem.unwrap_or_else(|| "output".into()))
}

/// What the page pipeline reports to the thread that writes the results.
enum Event {
    Page {
        file: usize,
        page: usize,
        result: Result<PageResult, ocr::OcrError>,
    },
    /// This many of the file's pages went to recognition; `error` says why the rest could not
    /// be read (or the file not opened).
    Decoded {
        file: usize,
        pages: usize,
        error: Option<anyhow::Error>,
    },
}

/// Pages of one file as they come back, until all are in.
#[derive(Default)]
struct Assembly {
    pages: BTreeMap<usize, PageResult>,
    expected: Option<usize>,
    error: Option<anyhow::Error>,
    received: usize,
}

impl Assembly {
    fn is_complete(&self) -> bool {
        self.expected.is_some_and(|n| self.received == n)
    }
}

pub fn run(config: &Config, args: OcrArgs) -> anyhow::Result<ExitCode> {
    let destinations = destinations(&args)?;
    anyhow::ensure!(
        !(args.format == Format::Pdf
            && destinations.contains(&None)
            && std::io::stdout().is_terminal()),
        "a PDF is not for the terminal: write it to a file with -o FILE.pdf (or redirect)"
    );
    let mut ocr_config = config.ocr.clone();
    if let Some(engine) = args.engine {
        ocr_config.engine = engine;
    }
    if let Some(dir) = &args.model_dir {
        ocr_config.qwen3vl.model_dir = Some(dir.clone());
    }
    if let Some(lang) = &args.lang {
        ocr_config.lang = lang.clone();
    }
    let device = match config.ocr.gpus.first() {
        Some(&id) => ocr::runtime::Device::Cuda(id),
        None => ocr::runtime::Device::Cpu,
    };
    let engine = ocr::load_engine(&ocr_config, device)?;
    let limits = config.document_limits();
    let reading = ReadOptions {
        policy: args.ocr,
        password: args.password.clone().map(Password::new),
    };

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(args.files.len() as u64);
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} files  {elapsed}  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };

    // A pipeline over the pages of all files: one thread decodes, `parallelism` threads
    // recognise (so one page's detection overlaps another's recognition, across files and
    // within a multi-page file), and this thread assembles and writes each file in page order.
    // The bounded queue keeps at most a few decoded pages in memory.
    let workers = engine.parallelism();
    let (page_tx, page_rx) = std::sync::mpsc::sync_channel::<(usize, usize, PageInput)>(workers);
    let page_rx = Mutex::new(page_rx);
    let (event_tx, event_rx) = std::sync::mpsc::channel::<Event>();
    let mut failed = 0usize;
    std::thread::scope(|s| {
        let decoder_events = event_tx.clone();
        let (files, reading) = (&args.files, &reading);
        s.spawn(move || {
            for (file, path) in files.iter().enumerate() {
                let mut pages = 0;
                let error = decode_into(path, limits, reading, file, &page_tx, &mut pages).err();
                let _ = decoder_events.send(Event::Decoded { file, pages, error });
            }
            // Dropping `page_tx` here lets the recognisers finish.
        });
        for _ in 0..workers {
            let events = event_tx.clone();
            let (engine, page_rx) = (&engine, &page_rx);
            s.spawn(move || {
                loop {
                    let job = page_rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((file, page, input)) = job else { return };
                    let result = match input {
                        PageInput::Text(text) => Ok(text),
                        // A panic inside an engine fails that page, not the whole run.
                        PageInput::Image(image) => {
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                engine.recognize(&image, &ocr::PageOptions::default())
                            }))
                            .unwrap_or_else(|_| {
                                Err(ocr::OcrError::Inference("the engine panicked".into()))
                            })
                        }
                    };
                    let _ = events.send(Event::Page { file, page, result });
                }
            });
        }
        drop(event_tx);

        let mut files: Vec<Assembly> = args.files.iter().map(|_| Assembly::default()).collect();
        let mut finished = vec![false; files.len()];
        for event in event_rx {
            let file = match event {
                Event::Page { file, page, result } => {
                    let slot = &mut files[file];
                    slot.received += 1;
                    match result {
                        Ok(result) => {
                            slot.pages.insert(page, result);
                        }
                        Err(e) => {
                            let e = anyhow::Error::new(e).context(format!("page {}", page + 1));
                            slot.error.get_or_insert(e);
                        }
                    }
                    file
                }
                Event::Decoded { file, pages, error } => {
                    // Pages queued before an error still come back; the file waits for them.
                    let slot = &mut files[file];
                    slot.expected = Some(pages);
                    if let Some(error) = error {
                        slot.error = Some(error);
                    }
                    file
                }
            };
            if !files[file].is_complete() {
                continue;
            }
            finished[file] = true;
            let done = std::mem::take(&mut files[file]);
            let path = &args.files[file];
            let outcome = match done.error {
                Some(error) => Err(error),
                None => {
                    let pages: Vec<PageResult> = done.pages.into_values().collect();
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy())
                        .unwrap_or_default();
                    let info = DocumentInfo {
                        source_name: &name,
                        engine: engine.name(),
                        languages: engine.languages(),
                        source: path,
                        limits,
                        password: reading.password.as_ref(),
                    };
                    args.format
                        .render(&pages, &info)
                        .map_err(anyhow::Error::new)
                        .and_then(|output| write_output(destinations[file].as_deref(), &output))
                }
            };
            if let Err(e) = outcome {
                // One line per failed file, naming it; the other files go on.
                progress.suspend(|| eprintln!("ocrd: {}: {e:#}", path.display()));
                failed += 1;
            }
            progress.set_message(path.display().to_string());
            progress.inc(1);
        }
        // Every sender is gone: a file still open lost pages on the way.
        for (file, _) in finished.iter().enumerate().filter(|(_, done)| !**done) {
            let path = args.files[file].display();
            progress.suspend(|| eprintln!("ocrd: {path}: recognition did not finish"));
            failed += 1;
        }
    });
    progress.finish_and_clear();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

/// Decodes a file's pages into the recognition queue, counting them in `queued`.
fn decode_into(
    path: &Path,
    limits: Limits,
    reading: &ReadOptions,
    file: usize,
    queue: &std::sync::mpsc::SyncSender<(usize, usize, PageInput)>,
    queued: &mut usize,
) -> anyhow::Result<()> {
    for (page, input) in document::open(path, limits, reading)?.enumerate() {
        let input = input.with_context(|| format!("page {}", page + 1))?;
        queue
            .send((file, page, input))
            .map_err(|_| anyhow::anyhow!("recognition stopped"))?;
        *queued += 1;
    }
    Ok(())
}

fn write_output(dest: Option<&Path>, output: &[u8]) -> anyhow::Result<()> {
    match dest {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(output)?;
            stdout.flush()?;
        }
        Some(path) => {
            std::fs::write(path, output).with_context(|| format!("writing {}", path.display()))?
        }
    }
    Ok(())
}
