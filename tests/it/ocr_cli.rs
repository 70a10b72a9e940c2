//! `ocrd ocr` as a user runs it: every input format, and a clear one-line error for each bad
//! file while the others are still recognised.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::ocr::{eval_dir, repo};

fn ocrd_ocr(dir: &Path, args: &[&str]) -> Output {
    ocrd_ocr_with(dir, args, &[])
}

fn ocrd_ocr_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocrd"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("OCRD_")) {
        cmd.env_remove(key);
    }
    cmd.current_dir(dir)
        .arg("ocr")
        .args(args)
        .env("OCRD_OCR__MODELS_DIR", repo().join("models"))
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .expect("running ocrd")
}

/// The top of a sample page: a few lines of text, quick to recognise.
fn snippet() -> image::RgbImage {
    let page = image::open(eval_dir().join("page_000.png"))
        .unwrap()
        .into_rgb8();
    image::imageops::crop_imm(&page, 0, 0, page.width(), 640).to_image()
}

/// The snippet's text must be the first lines of the page's ground truth. Its last line is left
/// out: the crop may cut through it.
fn assert_snippet_text(text: &str, file: &Path) {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(
        lines.len() >= 6,
        "{}: only {} lines: {text}",
        file.display(),
        lines.len()
    );
    let read = &lines[..lines.len() - 1];
    let truth = std::fs::read_to_string(eval_dir().join("page_000.gt.txt")).unwrap();
    let expected: Vec<&str> = truth.lines().take(read.len()).collect();
    let error = ocrd::eval::cer(&read.join("\n"), &expected.join("\n"));
    assert!(
        error < 0.01,
        "{}: CER {error:.4} against the page's first lines:\n{text}",
        file.display()
    );
}

#[test]
fn every_input_format_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let img = snippet();
    let mut files = Vec::new();
    for ext in ["png", "jpg", "webp", "bmp"] {
        let path = dir.path().join(format!("snippet.{ext}"));
        img.save(&path).unwrap();
        files.push(path);
    }
    // A three-page TIFF: every page is recognised, in order (the top of the sample page, then
    // the next part of it, then the top again).
    let tiff_path = dir.path().join("pages.tiff");
    let next_part = {
        let page = image::open(eval_dir().join("page_000.png"))
            .unwrap()
            .into_rgb8();
        image::imageops::crop_imm(&page, 0, 640, page.width(), 640).to_image()
    };
    {
        let mut encoder =
            tiff::encoder::TiffEncoder::new(std::fs::File::create(&tiff_path).unwrap()).unwrap();
        for page in [&img, &next_part, &img] {
            encoder
                .write_image::<tiff::encoder::colortype::RGB8>(
                    page.width(),
                    page.height(),
                    page.as_raw(),
                )
                .unwrap();
        }
    }
    files.push(tiff_path);
    let args: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut argv: Vec<&str> = args.iter().map(String::as_str).collect();
    argv.extend(["-o", "out"]);
    // Same stem for the first four: they must go to separate runs, so name them apart.
    let out = ocrd_ocr(dir.path(), &argv);
    assert!(
        !out.status.success(),
        "four inputs named `snippet` cannot share an output name"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("snippet.txt"));

    for file in &files {
        let out = ocrd_ocr(dir.path(), &[&file.display().to_string()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", file.display());
        let text = String::from_utf8_lossy(&out.stdout);
        assert_snippet_text(text.split('\u{c}').next().unwrap_or_default(), file);
        if file.extension().is_some_and(|e| e == "tiff") {
            let pages: Vec<&str> = text.split('\u{c}').collect();
            assert_eq!(pages.len(), 3, "three TIFF pages, three text pages: {text}");
            assert_eq!(ocrd::eval::cer(pages[0], pages[2]), 0.0);
            assert!(
                ocrd::eval::cer(pages[1], pages[0]) > 0.5,
                "page 2 is another text"
            );
            assert!(pages[1].lines().count() >= 5);
        }
    }
}

#[test]
fn bad_files_fail_alone_with_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    snippet().save(path("good.png")).unwrap();
    let page = std::fs::read(eval_dir().join("page_000.png")).unwrap();
    std::fs::write(path("truncated.png"), &page[..page.len() / 2]).unwrap();
    std::fs::write(path("empty.png"), b"").unwrap();
    std::fs::write(path("huge.png"), crate::support::png_bomb(30_000, 30_000)).unwrap();
    std::fs::write(path("notes.png"), b"just some text, not an image\n").unwrap();

    let names = [
        "truncated.png",
        "empty.png",
        "good.png",
        "huge.png",
        "notes.png",
    ];
    let mut args: Vec<&str> = names.to_vec();
    args.extend(["--format", "json", "-o", "out"]);
    let out = ocrd_ocr(dir.path(), &args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "some files failed: exit 3\n{stderr}"
    );

    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("ocrd: ")).collect();
    assert_eq!(lines.len(), 4, "one line per bad file:\n{stderr}");
    let line_for = |name: &str| {
        lines
            .iter()
            .find(|l| l.contains(name))
            .copied()
            .unwrap_or_else(|| panic!("no error for {name}:\n{stderr}"))
    };
    assert!(line_for("truncated.png").contains("truncated"));
    assert!(line_for("empty.png").contains("empty"));
    assert!(line_for("huge.png").contains("30000×30000"));
    assert!(line_for("notes.png").contains("not a supported document type"));

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path("out/good.json")).unwrap()).unwrap();
    assert!(!json["pages"][0]["blocks"].as_array().unwrap().is_empty());
    for bad in ["truncated", "empty", "huge", "notes"] {
        assert!(!path(&format!("out/{bad}.json")).exists());
    }
}

#[test]
fn a_library_that_is_not_onnx_runtime_names_the_fetch_script() {
    let dir = tempfile::tempdir().unwrap();
    snippet().save(dir.path().join("a.png")).unwrap();
    let not_onnx_runtime = "/usr/lib/x86_64-linux-gnu/libz.so.1";
    assert!(
        Path::new(not_onnx_runtime).exists(),
        "zlib is part of every Debian install"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ocrd"))
        .current_dir(dir.path())
        .args(["ocr", "a.png"])
        .env("OCRD_OCR__MODELS_DIR", repo().join("models"))
        .env("OCRD_OCR__RUNTIME", not_onnx_runtime)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("scripts/fetch-models.sh"), "{stderr}");
}

#[test]
fn missing_models_name_the_fetch_script() {
    let dir = tempfile::tempdir().unwrap();
    snippet().save(dir.path().join("a.png")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ocrd"))
        .current_dir(dir.path())
        .args(["ocr", "a.png"])
        .env("OCRD_OCR__MODELS_DIR", dir.path().join("no-models"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("scripts/fetch-models.sh"));
}

#[test]
fn a_searchable_pdf_is_written_and_encrypted_pdfs_open_with_their_password() {
    let dir = tempfile::tempdir().unwrap();
    snippet().save(dir.path().join("snippet.png")).unwrap();
    let out = ocrd_ocr(
        dir.path(),
        &["--format", "pdf", "-o", "snippet.pdf", "snippet.png"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = Command::new("pdftotext")
        .args(["-layout", "snippet.pdf", "-"])
        .current_dir(dir.path())
        .output()
        .expect("pdftotext (Debian's poppler-utils; make test installs it) must run");
    assert!(text.status.success());
    // Each line's words are on one line of the PDF's text, spaces and all.
    let text = String::from_utf8(text.stdout).unwrap();
    let squeezed: Vec<String> = text
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_snippet_text(&squeezed.join("\n"), Path::new("snippet.pdf"));

    let fixture = repo().join("tests/fixtures/pdf/encrypted_text.pdf");
    let fixture = fixture.to_str().unwrap();
    let locked = ocrd_ocr(dir.path(), &[fixture]);
    assert_eq!(locked.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&locked.stderr);
    assert!(stderr.contains("password-protected"), "{stderr}");
    let wrong = ocrd_ocr(dir.path(), &["--password", "guess", fixture]);
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        stderr.contains("the password does not open this PDF"),
        "{stderr}"
    );
    let opened = ocrd_ocr_with(dir.path(), &[fixture], &[("PDF_PASSWORD", "secret")]);
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    assert_eq!(
        String::from_utf8(opened.stdout).unwrap().trim(),
        "Confidential minutes of 12 March 2024\nBudget approved: 48,500 EUR"
    );
}
