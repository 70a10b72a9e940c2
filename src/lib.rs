//! ocrd: a self-hosted OCR platform in one binary. The architecture is described in the README
//! and `DESIGN.md`; each module below is one concern.

pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backup;
pub mod blobs;
pub mod cli;
pub mod config;
pub mod db;
pub mod document;
pub mod edge;
pub mod error;
pub mod eval;
pub mod events;
pub mod fuzz;
pub mod logs;
pub mod names;
pub mod ocr;
pub mod outage;
pub mod process;
pub mod queue;
pub mod quota;
pub mod redis_pool;
pub mod render;
pub mod results;
pub mod retention;
pub mod search;
pub mod settings;
pub mod tasks;
pub mod telemetry;
pub mod timeline;
pub mod web;
pub mod webhooks;
pub mod worker;
