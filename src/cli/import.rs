//! `image-updater import`: another tool's image automation, read from manifests (files,
//! directories, or standard input: what `kubectl get … -o yaml` prints), written as an
//! `updater.toml` that `check` accepts, with a summary of what was not translated exactly.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use image_updater::config;
use image_updater::import::{self, Input, Options};

use super::Outcome;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Manifest files or directories (read for `*.yaml` and `*.yml`); `-` or none reads
    /// standard input.
    paths: Vec<PathBuf>,
    /// Where to write the config; standard output unless given.
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// A checkout of the manifests repository, where each automation's markers are looked
    /// for (the only directory given, by default).
    #[arg(long)]
    repo_dir: Option<PathBuf>,
    /// The manifests repository's url, when no `GitRepository` among the inputs says it.
    #[arg(long)]
    repository_url: Option<String>,
}

pub fn run(args: Args) -> Outcome {
    let inputs = match read(&args.paths) {
        Ok(inputs) => inputs,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    let dirs: Vec<&PathBuf> = args.paths.iter().filter(|p| p.is_dir()).collect();
    let options = Options {
        repository_url: args.repository_url.clone(),
        repo_dir: args
            .repo_dir
            .clone()
            .or_else(|| (dirs.len() == 1).then(|| dirs[0].clone())),
    };
    let imported = match import::import(&inputs, &options) {
        Ok(imported) => imported,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Negative;
        }
    };
    let read: Vec<String> = imported
        .read
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(kind, n)| format!("{n} {kind}"))
        .collect();
    eprintln!("read {}", read.join(", "));
    if imported.notes.is_empty() {
        eprintln!("everything was translated exactly");
    } else {
        eprintln!(
            "{} not translated exactly (each is an `# import:` comment in the config):",
            imported.notes.len()
        );
        for note in &imported.notes {
            eprintln!("  - {note}");
        }
    }
    let name = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from("updater.toml"));
    // What is written must load: a config `check` refuses is a bug here, said at once.
    if let Err(diagnostics) = config::parse(&name, &imported.toml) {
        eprintln!("{diagnostics}");
        eprintln!("error: the imported config does not pass check (above); nothing written");
        return Outcome::Negative;
    }
    match &args.output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &imported.toml) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return Outcome::Negative;
            }
            eprintln!("wrote {}", path.display());
        }
        None => print!("{}", imported.toml),
    }
    Outcome::Success
}

/// The inputs named by `paths`, directories read for YAML files; standard input for `-` or
/// none.
fn read(paths: &[PathBuf]) -> Result<Vec<Input>, String> {
    let mut inputs = Vec::new();
    if paths.is_empty() || paths.iter().any(|p| p == Path::new("-")) {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        inputs.push(Input {
            name: "-".into(),
            text,
        });
    }
    for path in paths.iter().filter(|p| *p != Path::new("-")) {
        if path.is_dir() {
            for (file, text) in import::yaml_files(path, ".") {
                inputs.push(Input {
                    name: path.join(file).display().to_string(),
                    text,
                });
            }
        } else {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            inputs.push(Input {
                name: path.display().to_string(),
                text,
            });
        }
    }
    Ok(inputs)
}
