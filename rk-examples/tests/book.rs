//! The book (`book/`) includes its code from `examples/` and `rk-examples/`
//! by anchor. mdbook reports a missing file but silently includes nothing for
//! a missing anchor, so this test checks what mdbook does not: every chapter
//! in SUMMARY.md exists, and every `{{#include path:anchor}}` names an
//! existing file with that anchor, with non-empty content between the
//! markers.

use std::path::{Path, PathBuf};

fn book_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../book/src")
}

fn chapters() -> Vec<PathBuf> {
    let src = book_src();
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    summary
        .split("](")
        .skip(1)
        .map(|rest| src.join(&rest[..rest.find(')').unwrap()]))
        .collect()
}

fn includes(text: &str) -> Vec<String> {
    text.split("{{#include ")
        .skip(1)
        .map(|rest| rest[..rest.find("}}").unwrap()].trim().to_owned())
        .collect()
}

#[test]
fn every_chapter_in_the_summary_exists() {
    let chapters = chapters();
    assert!(chapters.len() > 20, "{chapters:?}");
    for chapter in chapters {
        assert!(chapter.is_file(), "missing chapter {}", chapter.display());
    }
}

#[test]
fn every_include_names_an_existing_file_and_anchor() {
    let mut checked = 0;
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for include in includes(&text) {
            let (path, anchor) = match include.split_once(':') {
                Some((p, a)) => (p, Some(a)),
                None => (include.as_str(), None),
            };
            let file = chapter.parent().unwrap().join(path);
            let source = std::fs::read_to_string(&file)
                .unwrap_or_else(|e| panic!("{}: include {path}: {e}", chapter.display()));
            if let Some(anchor) = anchor {
                let start = format!("ANCHOR: {anchor}");
                let end = format!("ANCHOR_END: {anchor}");
                let lines: Vec<&str> = source.lines().collect();
                let from = lines.iter().position(|l| l.contains(&start));
                let to = lines.iter().position(|l| l.contains(&end));
                let (Some(from), Some(to)) = (from, to) else {
                    panic!("{}: anchor {anchor} not found in {path}", chapter.display());
                };
                assert!(
                    to > from + 1,
                    "{}: anchor {anchor} in {path} is empty",
                    chapter.display()
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} includes found");
}

/// The shell blocks of a chapter.
fn sh_blocks(text: &str) -> Vec<String> {
    text.split("```sh\n")
        .skip(1)
        .map(|rest| rest[..rest.find("```").unwrap()].to_owned())
        .collect()
}

#[test]
fn the_quick_start_runs_the_readmes_tested_commands() {
    // tests/rk_up.rs runs the README's commands; the Quick start must show
    // the same ones, character for character.
    let readme = std::fs::read_to_string(book_src().join("../../README.md")).unwrap();
    let quick_start = std::fs::read_to_string(book_src().join("quick-start.md")).unwrap();
    let blocks = sh_blocks(&quick_start);
    let from_readme: Vec<&String> = blocks
        .iter()
        .filter(|b| readme.contains(b.as_str()))
        .collect();
    assert!(
        from_readme
            .iter()
            .any(|b| b.contains("cargo run --release -- up")),
        "the Quick start's `rk up` block differs from the README's"
    );
    assert!(
        from_readme
            .iter()
            .any(|b| b.contains("kubectl expose deployment web")),
        "the Quick start's Deployment and Service block differs from the README's"
    );
}
