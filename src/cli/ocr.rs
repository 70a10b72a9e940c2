//! `ocrd ocr FILE...`: one-shot local OCR, no server.
//!
//! Exit codes: 0 every file was recognised; 1 nothing could run (configuration, models or the
//! ONNX Runtime library missing); 2 bad usage; 3 some files failed (the others were written).

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Config, EngineKind};
use crate::document::{self, Limits};
use crate::ocr::{self, Engine, PageResult};
use crate::render::{DocumentInfo, Format};

#[derive(Debug, clap::Args)]
pub struct OcrArgs {
    /// Images to recognise: PNG, JPEG, TIFF (every page), WebP or BMP.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Output format: txt, hocr or json.
    #[arg(long, short = 'f', default_value = "txt", value_parser = parse_format)]
    pub format: Format,

    /// Output file (one input) or directory (several inputs). Default: standard output for one
    /// input, next to each input for several.
    #[arg(long, short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,

    /// The engine; default `ocr.engine` from the configuration.
    #[arg(long, value_parser = parse_engine)]
    pub engine: Option<EngineKind>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse()
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    match s {
        "ppocr" => Ok(EngineKind::Ppocr),
        other => Err(format!("unknown engine `{other}` (available: ppocr)")),
    }
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

/// Recognises every page of one file, in order.
pub fn recognize_file(
    engine: &dyn Engine,
    file: &Path,
    limits: Limits,
) -> anyhow::Result<Vec<PageResult>> {
    let mut pages = Vec::new();
    for (i, page) in document::open(file, limits)?.enumerate() {
        let page = page.with_context(|| format!("page {}", i + 1))?;
        pages.push(
            engine
                .recognize(&page)
                .with_context(|| format!("page {}", i + 1))?,
        );
    }
    Ok(pages)
}

pub fn run(config: &Config, args: OcrArgs) -> anyhow::Result<ExitCode> {
    let destinations = destinations(&args)?;
    let mut ocr_config = config.ocr.clone();
    if let Some(engine) = args.engine {
        ocr_config.engine = engine;
    }
    let engine = ocr::load_engine(&ocr_config)?;
    let limits = Limits {
        max_pixels: config.limits.max_pixels,
        max_pages: config.limits.max_pages,
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

    // Files run concurrently, one per engine session, so one page's detection overlaps
    // another's recognition.
    let next = Mutex::new(args.files.iter().zip(destinations));
    let failures = Mutex::new(0usize);
    let workers = engine.parallelism().min(args.files.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let Some((file, dest)) = next.lock().unwrap_or_else(|e| e.into_inner()).next()
                    else {
                        return;
                    };
                    progress.set_message(file.display().to_string());
                    let outcome = recognize_file(engine.as_ref(), file, limits).and_then(|pages| {
                        let name = file
                            .file_name()
                            .map(|n| n.to_string_lossy())
                            .unwrap_or_default();
                        let info = DocumentInfo {
                            source_name: &name,
                            engine: engine.name(),
                            languages: engine.languages(),
                        };
                        write_output(dest.as_deref(), &args.format.render(&pages, &info))
                    });
                    if let Err(e) = outcome {
                        // One line per failed file, naming it; the other files go on.
                        progress.suspend(|| eprintln!("ocrd: {}: {e:#}", file.display()));
                        *failures.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                    }
                    progress.inc(1);
                }
            });
        }
    });
    progress.finish_and_clear();
    let failed = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn write_output(dest: Option<&Path>, text: &str) -> anyhow::Result<()> {
    match dest {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush()?;
        }
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
    }
    Ok(())
}
