//! `cargo xtask mutants`: cargo-mutants (installed first when missing) over the layers that hold the
//! release order, each with the tests that can see its mutants:
//! - `qc-stream`: its unit tests and qcc's (the in-memory scenarios drive descriptors and budgets);
//! - `qcs`: its unit tests and qcc's;
//! - `qcc`: its unit and in-memory tests;
//! - `worker`: the worker's release and dispatch functions, with qproxy's unit and end-to-end tests.
//!
//! It runs in place (the build in `target/` is reused, so the tree must not change while it runs) and
//! writes cargo-mutants' output to `target/mutants/SCOPE`. Tests run under cargo-nextest, which stops
//! a mutant's run at its first failing test (`--max-fail 1:immediate`): a caught mutant costs seconds,
//! not the whole suite, and a hang in one test does not hold the others. cargo-mutants' own baseline
//! would build and test the mutated package alone (another feature set, so another quiche build); the
//! xtask runs the scope's tests unmutated itself and skips it. The report gives caught, missed, unviable and
//! timed-out mutants per scope, and lists the missed ones in functions `docs/release-order.md` names.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

struct Scope {
    name: &'static str,
    /// What to mutate.
    mutate: &'static [&'static str],
    /// The packages whose tests run against each mutant.
    tests: &'static [&'static str],
    /// Seconds a mutant's tests may take. cargo-mutants would derive it from its baseline, which is
    /// skipped (see above).
    timeout: &'static str,
}

const SCOPES: [Scope; 4] = [
    Scope {
        name: "qc-stream",
        mutate: &["--package", "qc-stream"],
        tests: &["qc-stream", "qcc"],
        timeout: "45",
    },
    Scope {
        name: "qcs",
        mutate: &["--package", "qcs"],
        tests: &["qcs", "qcc"],
        timeout: "45",
    },
    Scope {
        name: "qcc",
        mutate: &["--package", "qcc"],
        tests: &["qcc"],
        timeout: "45",
    },
    Scope {
        name: "worker",
        mutate: &[
            "--file",
            "crates/proxy/src/worker/conns.rs",
            "--re",
            "release|handle_events|unqueue|drop_awaiting",
        ],
        tests: &["qproxy"],
        timeout: "900",
    },
];

pub(crate) fn mutants(root: &Path, args: &[String]) -> Result<()> {
    let mut only: Vec<&str> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--scope" => {
                let value = it.next().context("--scope needs a value")?;
                if !SCOPES.iter().any(|s| s.name == value) {
                    bail!("no scope '{value}'; expected one of {}", names());
                }
                only.push(SCOPES.iter().find(|s| s.name == value).unwrap().name);
            }
            // Passed to cargo-mutants as they are: `--shard K/N`, `--re REGEX`, `--exclude-re REGEX`, `--file PATH`, `--list`, `--iterate`.
            "--shard" | "--re" | "--exclude-re" | "--file" => {
                extra.push(flag.clone());
                extra.push(
                    it.next()
                        .with_context(|| format!("{flag} needs a value"))?
                        .clone(),
                );
            }
            // `--iterate` skips the mutants an earlier run (its output in target/mutants/SCOPE) caught
            // or found unviable.
            "--list" | "--iterate" => extra.push(flag.clone()),
            other => bail!(
                "unknown mutants option {other}; expected --scope NAME, --shard K/N, --re REGEX, --exclude-re REGEX, --file PATH, --list or --iterate"
            ),
        }
    }
    for (tool, krate) in [("mutants", "cargo-mutants"), ("nextest", "cargo-nextest")] {
        let installed = Command::new("cargo")
            .args([tool, "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            println!("installing {krate} from crates.io");
            let ok = Command::new("cargo")
                .args(["install", krate, "--locked"])
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                bail!("could not install {krate}; run 'cargo install {krate} --locked' by hand");
            }
        }
    }
    let named = release_order_names(root)?;
    let mut table = Vec::new();
    for scope in SCOPES
        .iter()
        .filter(|s| only.is_empty() || only.contains(&s.name))
    {
        let out = root.join("target/mutants").join(scope.name);
        std::fs::create_dir_all(&out)?;
        println!("mutants: {} (tests of {})", scope.name, scope.tests.join(", "));
        let listing = extra.iter().any(|a| a == "--list");
        if !listing {
            let mut baseline = Command::new("cargo");
            baseline.current_dir(root).args(["nextest", "run"]);
            for t in scope.tests {
                baseline.args(["--package", t]);
            }
            if !baseline
                .status()
                .context("running the unmutated tests")?
                .success()
            {
                bail!("{}: the tests fail without a mutant; fix them first", scope.name);
            }
        }
        let mut cmd = Command::new("cargo");
        cmd.current_dir(root)
            .args([
                "mutants",
                "--in-place",
                "--no-shuffle",
                "--baseline",
                "skip",
                "--test-tool",
                "nextest",
                "--timeout",
                scope.timeout,
                "--output",
            ])
            .arg(&out)
            .args(scope.mutate)
            .args(&extra);
        for t in scope.tests {
            cmd.args(["--test-package", t]);
        }
        cmd.args(["--", "--max-fail", "1:immediate"]);
        // cargo-mutants exits non-zero when a mutant is missed: the report says which.
        let status = cmd.status().context("running cargo mutants")?;
        if listing {
            continue;
        }
        let outcomes = out.join("mutants.out/outcomes.json");
        let text = std::fs::read_to_string(&outcomes)
            .with_context(|| format!("cargo mutants ({status}) left no {}", outcomes.display()))?;
        let json: Value = serde_json::from_str(&text).context("outcomes.json")?;
        let n = |k: &str| json[k].as_u64().unwrap_or(0);
        let (caught, missed, unviable, timeout) = (n("caught"), n("missed"), n("unviable"), n("timeout"));
        let viable = caught + missed + timeout;
        let missed_lines = std::fs::read_to_string(out.join("mutants.out/missed.txt")).unwrap_or_default();
        let in_named: Vec<&str> = missed_lines
            .lines()
            .filter(|l| named.iter().any(|name| l.contains(name.as_str())))
            .collect();
        table.push(format!(
            "| {} | {caught} | {missed} | {unviable} | {timeout} | {:.1} % | {} |",
            scope.name,
            if viable == 0 {
                100.0
            } else {
                100.0 * (caught + timeout) as f64 / viable as f64
            },
            in_named.len(),
        ));
        for line in in_named {
            println!("  missed in a function release-order.md names: {line}");
        }
    }
    if !table.is_empty() {
        println!("\n| scope | caught | missed | unviable | timed out | caught of viable | missed in named functions |");
        println!("|---|---|---|---|---|---|---|");
        for row in table {
            println!("{row}");
        }
        println!("\nmissed mutants: target/mutants/SCOPE/mutants.out/missed.txt");
    }
    Ok(())
}

fn names() -> String {
    SCOPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The function names `docs/release-order.md` gives in backticks (`Connection::release`, `detach_sink`):
/// the last path segment of each, as cargo-mutants names functions in its report.
fn release_order_names(root: &Path) -> Result<Vec<String>> {
    let doc = std::fs::read_to_string(root.join("docs/release-order.md")).context("docs/release-order.md")?;
    let mut names: Vec<String> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == ':') && s.contains(['_', ':']))
        .map(|s| s.trim_end_matches("()").to_string())
        .filter(|s| s.len() > 3)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}
