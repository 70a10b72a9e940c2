//! The integration suite, one binary: `cargo test` (or `make test`, which starts the services).

mod blobs;
mod cli;
mod config;
mod db;
mod ocr;
mod ocr_cli;
mod redis;
mod support;
