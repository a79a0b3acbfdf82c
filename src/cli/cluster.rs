//! `image-updater cluster status`: the live replicas, as etcd has them, and which replica owns
//! each image, computed as every replica computes it.

use serde::Serialize;

use super::{ConfigArgs, Outcome, small_runtime};
use image_updater::cluster::Members;

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// The live replicas and the images each owns.
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    common: ConfigArgs,
    /// text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    output: String,
}

#[derive(Serialize)]
struct View {
    members: Vec<String>,
    images: Vec<Owned>,
}

#[derive(Serialize)]
struct Owned {
    image: String,
    repository: String,
    /// `None` when no replica is live.
    owner: Option<String>,
}

pub fn run(command: ClusterCommand) -> Outcome {
    let ClusterCommand::Status(args) = command;
    let Some(config) = args.common.load() else {
        return Outcome::Negative;
    };
    let Some(cluster) = &config.cluster else {
        eprintln!(
            "error: {} has no [cluster] section",
            args.common.config.display()
        );
        return Outcome::Usage;
    };
    let runtime = match small_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    let live = match runtime.block_on(image_updater::cluster::etcd::live(cluster)) {
        Ok(live) => live,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Negative;
        }
    };
    let view = Members {
        me: String::new(),
        live,
    };
    let images: Vec<Owned> = config
        .images
        .values()
        .map(|image| {
            let repository = image.reference.repository();
            Owned {
                image: image.alias.clone(),
                owner: view.owner(&repository).map(String::from),
                repository,
            }
        })
        .collect();
    let out = View {
        members: view.live.clone(),
        images,
    };
    if args.output == "json" {
        println!(
            "{}",
            serde_json::to_string_pretty(&out).expect("plain data serializes")
        );
        return Outcome::Success;
    }
    println!(
        "cluster {} at {}: {} live replica{}",
        cluster.name,
        cluster.endpoints.join(", "),
        out.members.len(),
        if out.members.len() == 1 { "" } else { "s" }
    );
    for member in &out.members {
        let owned = out
            .images
            .iter()
            .filter(|i| i.owner.as_deref() == Some(member))
            .count();
        println!(
            "  {member}: {owned} image{}",
            if owned == 1 { "" } else { "s" }
        );
    }
    let width = out
        .images
        .iter()
        .map(|i| i.image.len())
        .max()
        .unwrap_or(5)
        .max(5);
    println!("\n{:width$}  OWNER", "IMAGE");
    for i in &out.images {
        println!(
            "{:width$}  {}",
            i.image,
            i.owner.as_deref().unwrap_or("- (no live replica)")
        );
    }
    Outcome::Success
}
