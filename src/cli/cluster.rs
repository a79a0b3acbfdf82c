//! `image-updater cluster status`: the live replicas, as etcd has them, and which replica owns
//! each image, computed as every replica computes it.

use serde::Serialize;

use super::{ConfigArgs, Outcome, small_runtime};
use image_updater::cluster::Foreign;

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
    /// The config's work fingerprint, which every counted member publishes.
    fingerprint: String,
    members: Vec<String>,
    /// Member keys not counted, and why.
    foreign: Vec<Foreign>,
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
    let fingerprint = image_updater::cluster::fingerprint(&config);
    let view = match runtime.block_on(image_updater::cluster::etcd::live(cluster, &fingerprint)) {
        Ok(view) => view,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Negative;
        }
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
        fingerprint,
        members: view.live.clone(),
        foreign: view.foreign.clone(),
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
    if !out.foreign.is_empty() {
        println!(
            "\n{} member key{} not counted (this config's fingerprint is {}):",
            out.foreign.len(),
            if out.foreign.len() == 1 { "" } else { "s" },
            out.fingerprint
        );
        for f in &out.foreign {
            println!("  {}: {}", f.id, f.why.says());
        }
        println!(
            "  Give each deployment its own [cluster] name; remove a key written by hand with etcdctl del /image-updater/{}/members/ID.",
            cluster.name
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
