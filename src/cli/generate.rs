//! `image-updater completions SHELL`, `image-updater man` and `image-updater schema`: shell
//! completions and the man page, generated from the same definitions as the parser, and the
//! JSON Schema of `updater.toml`, generated from the types the loader reads it into; none can
//! fall behind what it describes.

use std::io::Write;

use clap::CommandFactory;

use super::{Cli, Outcome};

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn completions(args: CompletionsArgs) -> Outcome {
    let mut command = Cli::command();
    clap_complete::generate(
        args.shell,
        &mut command,
        "image-updater",
        &mut std::io::stdout(),
    );
    Outcome::Success
}

/// The man page, image-updater(1), with a section per subcommand.
pub fn man() -> Outcome {
    let command = Cli::command();
    let mut page = Vec::new();
    let rendered = clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .and_then(|()| {
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                writeln!(
                    page,
                    ".SH \"IMAGE-UPDATER {}\"",
                    sub.get_name().to_uppercase()
                )?;
                let man = clap_mangen::Man::new(sub.clone());
                man.render_description_section(&mut page)?;
                man.render_options_section(&mut page)?;
            }
            std::io::stdout().write_all(&page)
        });
    match rendered {
        Ok(()) => Outcome::Success,
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Usage
        }
    }
}

/// The JSON Schema of `updater.toml`, for taplo and Even Better TOML.
pub fn schema() -> Outcome {
    let schema = image_updater::config::schema::schema();
    println!(
        "{}",
        serde_json::to_string_pretty(&schema).expect("a schema serializes")
    );
    Outcome::Success
}
