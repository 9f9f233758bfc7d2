//! `cargo xtask fuzz [SECONDS]`: every target under `fuzz/` (cargo-fuzz, libFuzzer) for a bounded time
//! each (60 s by default), corpus kept under `target/fuzz/corpus/` between runs. A crash fails the task
//! with the input that caused it (under `target/fuzz/artifacts/`), to become a regression test.

use crate::{cargo, step, tools};
use anyhow::{Context, Result, bail};
use std::path::Path;

/// The targets, in `fuzz/Cargo.toml`'s order.
const TARGETS: &[&str] = &[
    "host",
    "localtunnel_control",
    "openbazaar_json",
    "shared_rules",
];

pub fn fuzz(root: &Path, seconds: Option<&str>) -> Result<()> {
    let seconds: u64 = seconds
        .unwrap_or("60")
        .parse()
        .context("cargo xtask fuzz [SECONDS]: SECONDS is a whole number")?;
    let total = TARGETS.len() + 1;
    step(1, total, "cargo-fuzz and the targets' build");
    tools::ensure_cargo_fuzz()?;
    let dir = root.join("fuzz");
    let target_dir = root.join("target/fuzz");
    let run = |args: &[&str]| {
        let mut cmd = cargo();
        cmd.arg("fuzz")
            .args(args)
            .args(["--sanitizer", "none", "--target-dir"])
            .arg(&target_dir)
            .env("CARGO_BUILD_JOBS", "2")
            .current_dir(&dir);
        cmd
    };
    crate::sh(&mut run(&["build"]))?;
    let mut report = Vec::new();
    for (i, target) in TARGETS.iter().enumerate() {
        step(i + 2, total, &format!("{target} for {seconds} s"));
        let corpus = target_dir.join("corpus").join(target);
        let artifacts = target_dir.join("artifacts").join(target);
        std::fs::create_dir_all(&corpus)?;
        std::fs::create_dir_all(&artifacts)?;
        let out = run(&["run", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .arg("-print_final_stats=1")
            .output()
            .with_context(|| format!("running the {target} target"))?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            eprintln!("{log}");
            bail!(
                "{target} found a crash: the input is in {} (make it a regression test)",
                artifacts.display()
            );
        }
        let runs = log
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .map(str::trim)
            .unwrap_or("?")
            .to_owned();
        let corpus_size = std::fs::read_dir(&corpus)?.count();
        eprintln!("{target}: {runs} inputs in {seconds} s, no crash; corpus {corpus_size}");
        report.push(format!(
            "| {target} | {seconds} s | {runs} | {corpus_size} | none |"
        ));
    }
    println!(
        "| target | time | inputs run | corpus | crashes |\n|---|---|---|---|---|\n{}",
        report.join("\n")
    );
    Ok(())
}
