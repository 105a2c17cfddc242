//! trinity-watchdog reconciles Trinity's execution records with what its agents and Redis really
//! hold: gather a snapshot, plan (pure), apply when asked, render. `run` is the whole program; the
//! binary and the demo both call it.
//!
//! The modules form layers, and imports point down (only the clap pair `cli` ↔ `commands` points
//! both ways):
//! - helpers: `atomic_file`, `broken`, `descriptors`, `exit_code`, `host`, `log`, `redact`,
//!   `timestamp`, `tls`;
//! - the pure domain: `snapshot`, `shard`, `plan`, `safety`, `reviewed`;
//! - adapters: `store`, `agents`, `capacity` (Redis), `audit`;
//! - orchestration: `gather`, `lock`, `guard`, `apply`, `reconcile`;
//! - output: `output`, `metrics`;
//! - the command line: `cli`, `settings`, `commands`.

// Helpers.
mod atomic_file;
mod broken;
mod descriptors;
mod exit_code;
mod host;
mod log;
mod redact;
mod timestamp;
mod tls;
// The pure domain.
mod plan;
mod reviewed;
mod safety;
mod shard;
mod snapshot;
// Adapters.
mod agents;
mod audit;
mod capacity;
mod store;
// Orchestration.
mod apply;
mod gather;
mod guard;
mod lock;
mod reconcile;
// Output.
mod metrics;
mod output;
// The command line.
mod cli;
mod commands;
mod settings;

use std::ffi::OsString;

use clap::FromArgMatches;

pub use cli::man_page;
pub use exit_code::ExitCode;

/// Runs trinity-watchdog with these arguments (the first is the program name): prints the result
/// on stdout, everything else on stderr, and returns the exit code.
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let mut command = cli::command();
    let parsed = command
        .try_get_matches_from_mut(args)
        .and_then(|matches| Ok((cli::Cli::from_arg_matches(&matches)?, matches)));
    let (cli, matches) = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::Usage
            } else {
                ExitCode::Ok
            };
        }
    };
    let given = cli::given_on_command_line(&matches);
    if given.db && given.database_url {
        let _ = command
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "--db and --database-url name two databases: give one",
            )
            .print();
        return ExitCode::Usage;
    }
    commands::run(&cli, given)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    use strum::VariantArray;

    /// The layers of the module doc above, bottom first.
    const LAYERS: [&[&str]; 6] = [
        &[
            "atomic_file",
            "broken",
            "descriptors",
            "exit_code",
            "host",
            "log",
            "tls",
            "redact",
            "timestamp",
        ],
        &["snapshot", "shard", "plan", "safety", "reviewed"],
        &["store", "agents", "capacity", "audit"],
        &["gather", "lock", "guard", "apply", "reconcile"],
        &["output", "metrics"],
        &["cli", "settings", "commands"],
    ];

    fn layer(module: &str) -> usize {
        LAYERS
            .iter()
            .position(|layer| layer.contains(&module))
            .unwrap_or_else(|| panic!("module {module} is in no layer of lib.rs"))
    }

    /// `module -> modules it names as crate::…`, from the sources (code before `#[cfg(test)]`).
    fn imports() -> BTreeMap<String, BTreeSet<String>> {
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut files = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("src")];
        let pattern = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
        while let Some(path) = files.pop() {
            if path.is_dir() {
                files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
            let mut parts = relative.iter().skip(1);
            let first = parts.next().unwrap().to_string_lossy().into_owned();
            let module = first.trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for found in pattern.captures_iter(code) {
                if found[1] != *module {
                    edges
                        .entry(module.clone())
                        .or_default()
                        .insert(found[1].to_owned());
                }
            }
        }
        edges
    }

    #[test]
    fn imports_point_down_the_layers() {
        let edges = imports();
        assert!(edges.len() > 10, "the sources were read: {edges:?}");
        for (module, used) in &edges {
            for other in used {
                assert!(
                    layer(other) <= layer(module),
                    "{module} (layer {}) imports {other} (layer {}): imports must point down",
                    layer(module),
                    layer(other)
                );
                let mutual = edges.get(other).is_some_and(|back| back.contains(module));
                let clap_pair = [module.as_str(), other.as_str()] == ["cli", "commands"]
                    || [module.as_str(), other.as_str()] == ["commands", "cli"];
                assert!(
                    !mutual || clap_pair,
                    "{module} and {other} import each other"
                );
            }
        }
    }

    #[test]
    fn readme_lists_every_verdict_action_and_outcome() {
        let readme = include_str!("../README.md");
        let verdicts = readme
            .split("### Verdicts")
            .nth(1)
            .and_then(|rest| rest.split("\n\n").nth(1))
            .expect("README has a verdict table");
        for verdict in crate::plan::Verdict::VARIANTS {
            assert!(
                verdicts.contains(&format!("| `{}` |", verdict.as_str())),
                "README's verdict table lacks {}",
                verdict.as_str()
            );
        }
        for action in crate::plan::Action::VARIANTS {
            assert!(
                readme.contains(&format!("`{}`", action.as_str())),
                "README never names the action {}",
                action.as_str()
            );
        }
        for outcome in crate::plan::Outcome::VARIANTS {
            assert!(
                readme.contains(&format!("`{}`", outcome.as_str())),
                "README never names the outcome {}",
                outcome.as_str()
            );
        }
    }
}
