//! The documentation stays true: every configuration key is in `config/ocrd.toml`, and every
//! `ocrd …` command and `make` target in the README and `docs/` exists as written.

use clap::Parser;

/// Every key of the configuration, as `section.key` (nested sections joined with dots).
fn config_keys() -> Vec<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<String>) {
        if let serde_json::Value::Object(map) = value {
            for (key, value) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match value {
                    serde_json::Value::Object(_) => walk(&path, value, out),
                    _ => out.push(path),
                }
            }
        }
    }
    let mut keys = Vec::new();
    walk(
        "",
        &serde_json::to_value(ocrd::config::Config::default()).unwrap(),
        &mut keys,
    );
    keys
}

#[test]
fn every_configuration_key_is_documented_in_the_shipped_file() {
    let text = std::fs::read_to_string(crate::ocr::repo().join("config/ocrd.toml")).unwrap();
    // Which section each line of the file is in; keys may be commented out (defaults).
    let mut section = String::new();
    let mut documented = std::collections::BTreeSet::new();
    for line in text.lines() {
        let line = line.trim().trim_start_matches('#').trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((key, _)) = line.split_once('=') {
            let key = key.trim();
            if !key.is_empty() && !key.contains(' ') {
                documented.insert(if section.is_empty() {
                    key.to_owned()
                } else {
                    format!("{section}.{key}")
                });
            }
        }
    }
    let missing: Vec<String> = config_keys()
        .into_iter()
        .filter(|k| !documented.contains(k))
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from config/ocrd.toml: {missing:?}"
    );
}

/// Splits a command line as a POSIX shell would for plain words and quotes.
fn words(line: &str) -> Vec<String> {
    let (mut out, mut word, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => (quote, any) = (Some(c), true),
            (Some(q), c) if c == q => quote = None,
            // A comment runs to the end of the line.
            (None, '#') if !any => break,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut word));
                    any = false;
                }
            }
            (_, c) => (word, any) = (word + &c.to_string(), true),
        }
    }
    if any {
        out.push(word);
    }
    out
}

/// The shell lines of fenced `sh`/`bash`/`console` blocks, continuation lines joined.
fn shell_lines(markdown: &str) -> Vec<String> {
    let (mut lines, mut inside, mut pending) = (Vec::new(), false, String::new());
    for line in markdown.lines() {
        let fence = line.trim_start();
        if let Some(lang) = fence.strip_prefix("```") {
            inside = !inside && ["sh", "bash", "console", "shell"].contains(&lang.trim());
            continue;
        }
        if !inside {
            continue;
        }
        let line = line.trim().trim_start_matches("$ ");
        match line.strip_suffix('\\') {
            Some(head) => pending.push_str(head),
            None => {
                pending.push_str(line);
                lines.push(std::mem::take(&mut pending));
            }
        }
    }
    lines
}

#[test]
fn every_documented_ocrd_command_and_make_target_exists() {
    let repo = crate::ocr::repo();
    let makefile = std::fs::read_to_string(repo.join("Makefile")).unwrap();
    let mut files = vec![repo.join("README.md"), repo.join("deploy/README.md")];
    for entry in std::fs::read_dir(repo.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut checked = 0;
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file
            .strip_prefix(&repo)
            .unwrap_or(file)
            .display()
            .to_string();
        for line in shell_lines(&text) {
            // Each command of a list (`a && b`, `a; b`, `a | b`) on its own.
            for command in line.split(['|', ';', '&']).map(str::trim) {
                let command = command.split(['>', '<']).next().unwrap_or("").trim();
                let mut argv = words(command);
                // Leading `VAR=value`, `env` and `sudo [-u USER] [-E]`.
                loop {
                    match argv.first().map(String::as_str) {
                        Some(w) if w.contains('=') && !w.starts_with('-') => {
                            argv.remove(0);
                        }
                        Some("env") => {
                            argv.remove(0);
                        }
                        Some("sudo") => {
                            argv.remove(0);
                            while argv.first().is_some_and(|w| w.starts_with('-')) {
                                if argv.remove(0) == "-u" && !argv.is_empty() {
                                    argv.remove(0);
                                }
                            }
                        }
                        _ => break,
                    }
                }
                match argv.first().map(String::as_str) {
                    Some("ocrd") | Some("/usr/local/bin/ocrd") => {
                        checked += 1;
                        if let Err(e) = ocrd::cli::Cli::try_parse_from(&argv) {
                            use clap::error::ErrorKind::{DisplayHelp, DisplayVersion};
                            if !matches!(e.kind(), DisplayHelp | DisplayVersion) {
                                wrong.push(format!("{name}: `{command}`: {}", e.kind()));
                            }
                        }
                    }
                    Some("make") => {
                        checked += 1;
                        for target in argv
                            .iter()
                            .skip(1)
                            .filter(|t| !t.contains('=') && !t.starts_with('-'))
                        {
                            if !makefile
                                .lines()
                                .any(|l| l.starts_with(&format!("{target}:")))
                            {
                                wrong.push(format!("{name}: `{command}`: no make target {target}"));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    eprintln!("docs: {checked} ocrd commands and make targets checked");
    assert!(
        wrong.is_empty(),
        "documented commands that do not exist:\n{}",
        wrong.join("\n")
    );
    assert!(
        checked >= 10,
        "only {checked} commands found in {files:?}: is the parser still right?"
    );
}
