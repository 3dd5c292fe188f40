//! The rules of the house (ARCHITECTURE.md, "Rules"), checked by reading the
//! source files, so that a change cannot quietly break them: which module
//! may name which, where clap lives, one outlier constant, module docs,
//! file sizes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The pipeline stages: none of them names another.
const STAGES: &[&str] = &["ingest", "cluster", "select", "tune", "export", "route"];

struct Source {
    /// Path relative to `src/`, with `/` separators.
    rel: String,
    text: String,
}

impl Source {
    /// The top-level module the file belongs to (`cluster` for
    /// `cluster/algo.rs`, `call` for `call.rs`).
    fn module(&self) -> &str {
        let first = self.rel.split('/').next().unwrap_or("");
        first.strip_suffix(".rs").unwrap_or(first)
    }

    /// The code without comments (line comments and doc comments), so that
    /// prose may mention any module.
    fn code(&self) -> String {
        self.text
            .lines()
            .map(|l| match l.find("//") {
                // `//` inside a string literal ("http://") is rare in these
                // files; a quote before it keeps the line.
                Some(i) if !l[..i].contains('"') => &l[..i],
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The file's module path: `cluster/algo.rs` is `cluster::algo`,
    /// `cluster/mod.rs` is `cluster`, `call.rs` is `call`.
    fn module_path(&self) -> Vec<&str> {
        let mut parts: Vec<&str> = self.rel.split('/').collect();
        let last = parts.pop().unwrap_or("");
        if last != "mod.rs" && last != "lib.rs" && last != "main.rs" {
            parts.push(last.strip_suffix(".rs").unwrap_or(last));
        }
        parts
    }

    /// The crate's top-level modules this file names: `crate::x::...`
    /// paths, `super::` chains that climb to the crate root, and the
    /// members of `crate::{x, y::z}` groups.
    fn crate_refs(&self) -> BTreeSet<String> {
        let code = self.code();
        let depth = self.module_path().len();
        let mut out = BTreeSet::new();
        let mut i = 0;
        while i < code.len() {
            let rest = &code[i..];
            let starts_path = i == 0
                || !code[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if starts_path && rest.starts_with("crate::") {
                top_level_names(&rest["crate::".len()..], &mut out);
            } else if starts_path && rest.starts_with("super::") {
                let mut tail = rest;
                let mut up = 0;
                while let Some(t) = tail.strip_prefix("super::") {
                    tail = t;
                    up += 1;
                }
                if up >= depth {
                    top_level_names(tail, &mut out);
                }
            }
            i += rest.chars().next().map_or(1, char::len_utf8);
        }
        out.remove("");
        out
    }

    fn names(&self, module: &str) -> bool {
        self.crate_refs().contains(module)
    }
}

/// The first segment of the path at the start of `rest`, or each member's
/// first segment when it is a `{...}` group.
fn top_level_names(rest: &str, out: &mut BTreeSet<String>) {
    let Some(group) = rest.strip_prefix('{') else {
        out.insert(first_segment(rest));
        return;
    };
    let mut depth = 0;
    let mut start = 0;
    for (j, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                out.insert(first_segment(&group[start..j]));
                return;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.insert(first_segment(&group[start..j]));
                start = j + 1;
            }
            _ => {}
        }
    }
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let out: Vec<Source> = files
        .iter()
        .map(|p| Source {
            rel: p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/"),
            text: std::fs::read_to_string(p).unwrap(),
        })
        .collect();
    assert!(out.len() > 50, "found only {} source files", out.len());
    out
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Every file breaking `rule`, as "file: why" lines.
fn violations(rule: impl Fn(&Source) -> Option<String>) -> Vec<String> {
    sources()
        .iter()
        .filter_map(|s| rule(s).map(|why| format!("src/{}: {why}", s.rel)))
        .collect()
}

#[test]
fn the_source_parser_sees_grouped_and_plain_paths() {
    let s = Source {
        rel: "x.rs".into(),
        text: "use crate::{a::B, c, d::{e, f}};\n// crate::commented\nfn f() { crate::g::h(); }"
            .into(),
    };
    let refs: Vec<String> = s.crate_refs().into_iter().collect();
    assert_eq!(refs, ["a", "c", "d", "g"]);
    // `super::` counts when it climbs to the crate root.
    let s = Source {
        rel: "tune/train/mod.rs".into(),
        text:
            "use super::data::X;\nuse super::super::cluster::Y;\nuse super::super::{route, z::W};"
                .into(),
    };
    let refs: Vec<String> = s.crate_refs().into_iter().collect();
    assert_eq!(refs, ["cluster", "route", "z"]);
    let s = Source {
        rel: "cluster/mod.rs".into(),
        text: "use super::tune::T;".into(),
    };
    assert!(s.names("tune"));
}

#[test]
fn ml_knows_no_stage_no_clap_and_no_artifact() {
    let forbidden: Vec<&str> = STAGES
        .iter()
        .copied()
        .chain(["artifact", "cli", "dev", "redact"])
        .collect();
    let bad = violations(|s| {
        if s.module() != "ml" {
            return None;
        }
        let named: Vec<&str> = forbidden.iter().copied().filter(|m| s.names(m)).collect();
        if !named.is_empty() {
            return Some(format!("names {}", named.join(", ")));
        }
        s.code().contains("clap").then(|| "uses clap".to_string())
    });
    assert!(
        bad.is_empty(),
        "ml/ must stay below the stages:\n{}",
        bad.join("\n")
    );
}

#[test]
fn only_cli_knows_clap() {
    let bad = violations(|s| {
        let code = s.code();
        (s.module() != "cli"
            && (code.contains("clap") || code.contains("#[arg(") || code.contains("#[command(")))
        .then(|| "uses clap".to_string())
    });
    assert!(bad.is_empty(), "clap belongs to cli/:\n{}", bad.join("\n"));
}

#[test]
fn stages_do_not_name_each_other() {
    let bad = violations(|s| {
        let m = s.module();
        if !STAGES.contains(&m) {
            return None;
        }
        let named: Vec<&str> = STAGES
            .iter()
            .copied()
            .filter(|o| *o != m && s.names(o))
            .collect();
        (!named.is_empty()).then(|| format!("stage {m} names stage(s) {}", named.join(", ")))
    });
    assert!(
        bad.is_empty(),
        "stages meet only in artifact/, call and ml/:\n{}",
        bad.join("\n")
    );
}

#[test]
fn lower_layers_name_no_stage_cli_or_dev() {
    // What the stages stand on: the formats, the call, redaction, helpers;
    // and the report, which reads artifacts only (so it can be rebuilt from
    // a work directory at any time).
    let lower = ["artifact", "call", "redact", "util", "report"];
    let bad = violations(|s| {
        if !lower.contains(&s.module()) {
            return None;
        }
        let named: Vec<&str> = STAGES
            .iter()
            .copied()
            .chain(["cli", "dev"])
            .filter(|o| s.names(o))
            .collect();
        (!named.is_empty()).then(|| format!("names {}", named.join(", ")))
    });
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn only_dev_and_cli_name_dev_and_benches_do_not_call_their_parent() {
    let bad = violations(|s| {
        let m = s.module();
        if m != "dev" && m != "cli" && s.names("dev") {
            return Some("names dev/".into());
        }
        if s.rel.starts_with("dev/bench/") {
            let code = s.code();
            if code.contains("crate::dev::bench") {
                return Some("a bench names its parent module".into());
            }
            if code
                .match_indices("super::")
                .any(|(i, _)| !code[i..].starts_with("super::measure"))
            {
                return Some("a bench reaches into super:: other than super::measure".into());
            }
        }
        None
    });
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn one_outlier_constant() {
    let defs: Vec<String> = sources()
        .iter()
        .filter(|s| s.code().contains("const OUTLIER:"))
        .map(|s| s.rel.clone())
        .collect();
    assert_eq!(defs, ["artifact/mod.rs"], "OUTLIER is defined once");
}

#[test]
fn every_module_file_says_what_it_holds_and_stays_small() {
    let bad = violations(|s| {
        if !s.text.starts_with("//!") {
            return Some("does not start with a `//!` line".into());
        }
        let lines = s.text.lines().count();
        let is_stage_root = s.rel.ends_with("/mod.rs") && STAGES.contains(&s.module());
        (is_stage_root && lines > 1000)
            .then(|| format!("a stage's mod.rs of {lines} lines (split it into parts)"))
    });
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn no_function_runs_past_150_lines() {
    // A function starts at a line `fn name(` (any indentation, any
    // qualifiers) and ends at the first line holding only `}` at its
    // indentation. The synthetic-traffic scripts of dev/synth (one
    // conversation's templates and branches, one log format's shapes) read
    // as data, not as steps, and are left whole.
    const SCRIPTS: &[&str] = &[
        "dev/synth/workloads.rs",
        "dev/synth/formats.rs",
        "dev/synth/malformed.rs",
    ];
    let bad = violations(|s| {
        if SCRIPTS.contains(&s.rel.as_str()) {
            return None;
        }
        let lines: Vec<&str> = s.text.lines().collect();
        let mut long = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let t = l.trim_start();
            let indent = l.len() - t.len();
            let is_fn = t.starts_with("fn ")
                || t.starts_with("pub fn ")
                || t.starts_with("pub(crate) fn ")
                || t.starts_with("pub(super) fn ");
            if !is_fn || t.ends_with(';') {
                continue;
            }
            let close = format!("{}}}", " ".repeat(indent));
            if let Some(len) = lines[i + 1..].iter().position(|x| *x == close) {
                if len + 2 > 150 {
                    let name: String = t
                        .split("fn ")
                        .nth(1)
                        .unwrap_or("")
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    long.push(format!("{name} ({} lines)", len + 2));
                }
            }
        }
        (!long.is_empty()).then(|| format!("split into named steps: {}", long.join(", ")))
    });
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
