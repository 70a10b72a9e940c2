//! The integration suite, one binary: `cargo test` (or `make test`, which starts the services).

mod admin;
mod all_in_one;
mod api;
mod backup;
mod blobs;
mod browser;
mod chaos;
mod cli;
mod config;
mod db;
mod deploy;
mod docs;
mod edge;
mod events;
mod hostile;
mod install;
mod ocr;
mod ocr_cli;
mod pdf;
mod queue;
mod qwen3vl;
mod redis;
mod searchable;
mod support;
mod worker;
