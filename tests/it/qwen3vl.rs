//! The Qwen3-VL engine against transformers, on the tiny random export in
//! `tests/fixtures/qwen3vl-tiny` (`tools/qwen3vl_export/export.py --tiny-random`): the same
//! preprocessing tensors, prompt and 3-D positions, and the same greedy tokens.
//!
//! `OCRD_TEST_DEVICE=cuda:0` runs them on a GPU, with `OCRD_TEST_RUNTIME` naming the
//! onnxruntime-gpu library (`scripts/gpu-check.sh` sets both).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use ocrd::ocr::Engine;
use ocrd::ocr::qwen3vl::{Qwen3Vl, Qwen3VlOptions, VisionInput};
use ocrd::ocr::runtime::{Device, SessionOptions, default_library};
use serde_json::Value;

use crate::all_in_one::run_worker_until_finished;
use crate::install::models_dir;
use crate::ocr::repo;

pub fn fixture() -> PathBuf {
    repo().join("tests/fixtures/qwen3vl-tiny")
}

/// `OCRD_TEST_DEVICE`: `cpu` (default) or `cuda:N`.
pub fn test_device() -> Device {
    match std::env::var("OCRD_TEST_DEVICE").as_deref() {
        Ok(d) if d.starts_with("cuda") => Device::Cuda(
            d.trim_start_matches("cuda")
                .trim_start_matches(':')
                .parse()
                .unwrap_or(0),
        ),
        _ => Device::Cpu,
    }
}

pub fn engine() -> Arc<Qwen3Vl> {
    static ENGINE: OnceLock<Arc<Qwen3Vl>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let options = Qwen3VlOptions {
                model_dir: fixture(),
                session: SessionOptions {
                    device: test_device(),
                    intra_threads: 1,
                },
                max_pixels: 1 << 30,
                max_new_tokens: 64,
                prompt: String::new(),
            };
            let library = std::env::var_os("OCRD_TEST_RUNTIME")
                .map(PathBuf::from)
                .unwrap_or_else(|| default_library(&models_dir()));
            Arc::new(
                Qwen3Vl::load(&library, options).expect(
                    "the tiny Qwen3-VL export loads (scripts/fetch-models.sh for the runtime)",
                ),
            )
        })
        .clone()
}

fn references() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(fixture().join("reference/reference.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let mut refs: Vec<(String, Value)> = json.as_object().unwrap().clone().into_iter().collect();
    refs.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(refs.len(), 3, "three reference images");
    refs
}

fn image(name: &str) -> image::RgbImage {
    image::open(fixture().join(format!("reference/{name}.png")))
        .unwrap()
        .to_rgb8()
}

fn reference_pixels(name: &str) -> Vec<f32> {
    std::fs::read(fixture().join(format!("reference/{name}.pixel_values.f32")))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_i64().unwrap())
        .collect()
}

fn rows<const N: usize, T: Copy>(v: &Value, get: impl Fn(&Value) -> T) -> Vec<[T; N]> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let row: Vec<T> = row.as_array().unwrap().iter().map(&get).collect();
            row.try_into().unwrap_or_else(|_| panic!("rows of {N}"))
        })
        .collect()
}

#[test]
fn preprocessing_matches_transformers() {
    let engine = engine();
    for (name, r) in references() {
        let input = engine.vision_input(&image(&name)).unwrap();
        let grid = ints(&r["grid_thw"]);
        assert_eq!(
            [1, input.grid.0 as i64, input.grid.1 as i64],
            grid[..],
            "{name}: grid_thw"
        );
        let shape = ints(&r["pixel_values_shape"]);
        assert_eq!(
            [
                input.patches() as i64,
                engine.config().vision.patch_values() as i64
            ],
            shape[..],
            "{name}: pixel_values shape"
        );
        assert_eq!(
            input.interp_indices,
            rows::<4, i64>(&r["interp_indices"], |v| v.as_i64().unwrap()),
            "{name}"
        );
        let weights = rows::<4, f32>(&r["interp_weights"], |v| v.as_f64().unwrap() as f32);
        let worst = input
            .interp_weights
            .iter()
            .flatten()
            .zip(weights.iter().flatten())
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-6,
            "{name}: interpolation weights differ by {worst}"
        );
        assert_eq!(
            input.rotary_pos_ids,
            rows::<2, i64>(&r["rotary_pos_ids"], |v| v.as_i64().unwrap()),
            "{name}"
        );

        let prompt = engine.prompt_for(&input).unwrap();
        let want: Vec<u32> = ints(&r["input_ids"]).iter().map(|&i| i as u32).collect();
        assert_eq!(prompt.ids, want, "{name}: prompt ids");
        for (axis, want) in r["position_ids"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                prompt.positions[axis],
                ints(want),
                "{name}: position ids, axis {axis}"
            );
        }
        assert_eq!(
            prompt.rope_delta,
            r["rope_delta"].as_i64().unwrap(),
            "{name}: rope delta"
        );

        if name == "resized" {
            // PIL's bicubic and ours differ in the last bits: only the shapes must agree.
            println!(
                "qwen3vl preprocessing, {name}: resized to {:?}, shapes equal",
                input.resized
            );
            continue;
        }
        let reference = reference_pixels(&name);
        assert_eq!(input.pixel_values.len(), reference.len());
        let worst = input
            .pixel_values
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("qwen3vl preprocessing, {name}: pixel_values within {worst:e}");
        assert!(worst <= 1e-5, "{name}: pixel_values differ by {worst}");
    }
}

/// The reference's own pixel values with our tables: what transformers fed its vision tower.
fn reference_input(name: &str, r: &Value) -> VisionInput {
    let mut input = engine().vision_input(&image(name)).unwrap();
    input.pixel_values = reference_pixels(name);
    let grid = ints(&r["grid_thw"]);
    assert_eq!((grid[1] as usize, grid[2] as usize), input.grid);
    input
}

#[test]
fn greedy_decoding_reproduces_transformers_token_for_token() {
    let engine = engine();
    for (name, r) in references() {
        let want: Vec<u32> = ints(&r["generated"]).iter().map(|&i| i as u32).collect();
        assert!(want.len() >= 32);
        let answer = engine
            .generate(&reference_input(&name, &r), want.len())
            .unwrap();
        assert_eq!(
            answer.generation.tokens, want,
            "{name}: tokens differ from transformers"
        );
        if name != "resized" {
            // And from our own preprocessing of the PNG.
            let ours = engine.vision_input(&image(&name)).unwrap();
            let again = engine.generate(&ours, want.len()).unwrap();
            assert_eq!(
                again.generation.tokens, want,
                "{name}: tokens from our preprocessing"
            );
        }
        println!(
            "qwen3vl parity, {name}: {} tokens identical to transformers (prefill {:.1} ms, decode {:.0} tokens/s)",
            want.len(),
            answer.generation.prefill.as_secs_f64() * 1000.0,
            (want.len() - 1) as f64 / answer.generation.decode.as_secs_f64()
        );
    }
}

#[test]
fn deepstack_features_change_the_logits() {
    let engine = engine();
    let (name, r) = references().into_iter().next().unwrap();
    let input = reference_input(&name, &r);
    let prompt = engine.prompt_for(&input).unwrap();
    let (with, again, without) = engine
        .with_sessions(|sessions, config| {
            let image = sessions.vision(&input, config)?;
            Ok((
                sessions.prefill_logits(config, &prompt, &image, true)?,
                sessions.prefill_logits(config, &prompt, &image, true)?,
                sessions.prefill_logits(config, &prompt, &image, false)?,
            ))
        })
        .unwrap();
    let diff = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max)
    };
    assert_eq!(diff(&with, &again), 0.0, "the prefill is deterministic");
    let changed = diff(&with, &without);
    println!("qwen3vl: zeroing DeepStack moves the prefill logits by up to {changed:.4}");
    assert!(
        changed > 1e-2,
        "DeepStack is not wired: logits moved by only {changed}"
    );
}

#[test]
fn a_page_runs_end_to_end_into_the_page_model() {
    let engine = engine();
    let page = image("wide");
    let result = engine.recognize(&page, &Default::default()).unwrap();
    assert_eq!((result.width, result.height), page.dimensions());
    assert!(
        result
            .words()
            .all(|w| w.bbox.x1 <= result.width && w.bbox.y1 <= result.height)
    );
}

fn ocrd(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ocrd"))
        .current_dir(dir)
        .env_remove("OCRD_OCR__ENGINE")
        .env("OCRD_OCR__MODELS_DIR", models_dir())
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn ocrd_ocr_with_the_qwen3vl_engine_writes_valid_hocr() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fixture();
    let page = crate::ocr::eval_dir().join("page_000.png");
    let page = page.to_str().unwrap();
    let run = |model_dir: &str, format: &[&str]| {
        let mut args = vec!["ocr", "--engine", "qwen3vl", "--model-dir", model_dir];
        args.extend(format);
        args.push(page);
        ocrd(dir.path(), &args)
    };
    let out = run(fixture.to_str().unwrap(), &["-f", "hocr"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = String::from_utf8(out.stdout).unwrap();
    let mut reader = quick_xml::Reader::from_str(&html);
    let (mut pages, mut depth) = (0, 0i32);
    loop {
        match reader.read_event().expect("hOCR must parse") {
            quick_xml::events::Event::Start(e) => {
                depth += 1;
                let class = e.try_get_attribute("class").unwrap();
                pages += usize::from(class.is_some_and(|c| c.value.as_ref() == b"ocr_page"));
            }
            quick_xml::events::Event::End(_) => depth -= 1,
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(
        (pages, depth),
        (1, 0),
        "one page, every element closed:\n{html}"
    );
    assert!(html.contains("ocrd 0.1.0 (qwen3vl)"), "{html}");

    // A directory without an export names the tool.
    let out = run(".", &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ocrd-model.json not found") && stderr.contains("tools/qwen3vl_export"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_for_another_engine_fails_clearly_on_a_worker() {
    use bytes::Bytes;
    let install = crate::install::Install::embedded(|_| {}).await;
    let png = std::fs::read(fixture().join("reference/square.png")).unwrap();
    let submission = ocrd::tasks::Submission {
        user_id: &install.user.id,
        filename: "square.png",
        engine: Some(ocrd::config::EngineKind::Qwen3vl),
        options: Default::default(),
        idempotency_key: None,
    };
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(png))]);
    let (task, _) = ocrd::tasks::submit(&install.app, submission, body)
        .await
        .unwrap();
    let done = run_worker_until_finished(
        &install,
        crate::ocr::engine(),
        std::slice::from_ref(&task.id),
        std::time::Duration::from_secs(120),
    )
    .await;
    assert_eq!(
        done[0].error_code.as_deref(),
        Some("engine_unavailable"),
        "{:?}",
        done[0]
    );
    assert_eq!(
        done[0].error_message.as_deref(),
        Some("the task asks for the qwen3vl engine; this worker runs ppocr")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_with_the_qwen3vl_engine_completes_tasks() {
    let install = crate::install::Install::embedded(|c| {
        c.ocr.engine = ocrd::config::EngineKind::Qwen3vl;
        c.ocr.qwen3vl.model_dir = Some(fixture());
    })
    .await;
    // The engine as the worker would load it from that configuration.
    let loaded = ocrd::ocr::load_engine(&install.app.config.ocr, Device::Cpu).unwrap();
    assert_eq!(loaded.name(), "qwen3vl");
    let png = std::fs::read(fixture().join("reference/wide.png")).unwrap();
    let task = install.submit_bytes("wide.png", png).await;
    assert_eq!(task.engine, "qwen3vl");
    let done = run_worker_until_finished(
        &install,
        loaded,
        std::slice::from_ref(&task.id),
        std::time::Duration::from_secs(300),
    )
    .await;
    assert_eq!(
        done[0].status,
        ocrd::db::models::TaskStatus::Completed,
        "{:?}",
        done[0]
    );
    let hocr = install.result_file(&task.id, "html").await;
    assert!(hocr.contains("ocrd 0.1.0 (qwen3vl)") && hocr.contains("ocr_page"));
}
