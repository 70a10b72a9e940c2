//! The Qwen3-VL engine on the CPU with the tiny export (`tests/fixtures/qwen3vl-tiny`): prefill
//! milliseconds (vision, embeddings and the prefill run), decode tokens per second and peak RSS,
//! against the same loop in Python onnxruntime (`tools/qwen3vl_export/check.py --bench`, the
//! baseline) on the same reference image, as a ratio. Then one whole sample page (scaled to the
//! tiny model's pixel limit) with 256 new tokens.
//!
//! `make bench` (or `cargo bench --bench qwen3vl`). The tiny model measures the engine's own
//! overhead, not a real model's speed: on a 2B export the matrix work dominates.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use ocrd::ocr::qwen3vl::{Qwen3Vl, Qwen3VlOptions};
use ocrd::ocr::runtime::{Device, SessionOptions, default_library};

const ROUNDS: usize = 20;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Mean prefill milliseconds and decode tokens per second over `ROUNDS` runs of `input`.
fn measure(engine: &Qwen3Vl, input: &ocrd::ocr::qwen3vl::VisionInput, tokens: usize) -> (f64, f64) {
    let prompt = engine.prompt_for(input).expect("prompt");
    let (mut prefill, mut rate) = (0.0, 0.0);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let generation = engine
            .with_sessions(|sessions, config| {
                let image = sessions.vision(input, config)?;
                let vision = started.elapsed();
                let mut g = sessions.generate(config, &prompt, &image, tokens, |_| {})?;
                g.prefill += vision;
                Ok(g)
            })
            .expect("generation");
        assert_eq!(generation.tokens.len(), tokens, "the run stopped early");
        prefill += generation.prefill.as_secs_f64() * 1000.0;
        rate += (tokens - 1) as f64 / generation.decode.as_secs_f64();
    }
    (prefill / ROUNDS as f64, rate / ROUNDS as f64)
}

fn main() {
    let fixture = repo().join("tests/fixtures/qwen3vl-tiny");
    let options = Qwen3VlOptions {
        model_dir: fixture.clone(),
        session: SessionOptions {
            device: Device::Cpu,
            intra_threads: 0,
        },
        max_pixels: 1 << 30,
        max_new_tokens: 256,
        prompt: String::new(),
    };
    let engine = Qwen3Vl::load(&default_library(&repo().join("models")), options)
        .expect("loading the tiny export: run scripts/fetch-models.sh for the runtime");

    // The reference image the baseline runs, with transformers' own pixel values.
    let reference = fixture.join("reference");
    let image = image::open(reference.join("resized.png"))
        .expect("reference image")
        .to_rgb8();
    let mut input = engine.vision_input(&image).expect("preprocessing");
    input.pixel_values = std::fs::read(reference.join("resized.pixel_values.f32"))
        .expect("reference pixel values")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let (prefill, rate) = measure(&engine, &input, 40);
    println!(
        "ocrd qwen3vl (tiny, CPU), 15 image tokens, 40 new: prefill {prefill:.2} ms, decode {rate:.0} tokens/s"
    );

    let python = repo().join("target/tools-venv/bin/python");
    let baseline = Command::new(&python)
        .arg(repo().join("tools/qwen3vl_export/check.py"))
        .args(["--bench", &ROUNDS.to_string()])
        .arg(&fixture)
        .output();
    match baseline {
        Ok(out) if out.status.success() => {
            let figures: serde_json::Value =
                serde_json::from_slice(&out.stdout).expect("the baseline prints JSON");
            let (py_prefill, py_rate) = (
                figures["prefill_ms"].as_f64().unwrap_or(f64::NAN),
                figures["decode_tokens_per_s"].as_f64().unwrap_or(f64::NAN),
            );
            println!(
                "python onnxruntime (baseline), same input: prefill {py_prefill:.2} ms, decode {py_rate:.0} tokens/s"
            );
            println!(
                "ratio ocrd / python: prefill time {:.2}x, decode speed {:.2}x",
                prefill / py_prefill,
                rate / py_rate
            );
        }
        _ => println!(
            "baseline not run: {} with onnxruntime and numpy is needed (make bench installs it)",
            python.display()
        ),
    }

    let page = image::open(repo().join("../shared/eval/public/page_000.png"))
        .expect("sample page")
        .to_rgb8();
    let input = engine.vision_input(&page).expect("preprocessing");
    let (prefill, rate) = measure(&engine, &input, 256);
    println!(
        "ocrd qwen3vl (tiny, CPU), a whole page ({} image tokens), 256 new: prefill {prefill:.1} ms, decode {rate:.0} tokens/s",
        input.tokens(&engine.config().vision)
    );
    let peak = ocrd::eval::peak_rss_mib("self").unwrap_or(f64::NAN);
    println!("peak RSS {peak:.0} MiB");
}
