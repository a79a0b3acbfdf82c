//! `image-updater test ALIAS --env ENV --config FILE`: one image's policy taken from the
//! config and run through the daemon's own decision ([`Engine::choose`]), with the state dir's
//! holds, first sightings and revert holds, so what it prints is what the next cycle would
//! choose. It reads the state dir and writes nothing.

use std::path::Path;
use std::sync::Arc;

use image_updater::config::{self, AgeFrom, Config, Deployment};
use image_updater::daemon::safety::human;
use image_updater::daemon::{Engine, Shared};
use image_updater::poll::Cycle;
use image_updater::state::Holds;
use serde::Serialize;

use super::{Args, OutputFormat, report};
use crate::cli::Outcome;
use crate::cli::terminal::safe;

/// An image alias of the config, and the environment whose policy is run.
pub struct Found {
    config: Config,
    alias: String,
    environment: String,
}

/// What the daemon would do, beside the selection itself.
#[derive(Debug, Serialize)]
pub struct Decision {
    pub alias: String,
    /// `image` or `chart`.
    pub kind: &'static str,
    /// What is polled: the image's repository, or the chart and where it is published.
    pub source: String,
    pub environment: String,
    pub branch: String,
    /// Each safety rule of the environment, and what it does here.
    pub rules: Vec<String>,
    /// The value the next cycle would write (subject to the branch's value: no downgrade, a
    /// person's revert respected).
    pub writes: Option<String>,
    /// Why nothing would be written although the policy may have chosen a tag.
    pub waiting: Option<String>,
}

/// Why `test` cannot run a configured image's policy.
pub enum Refused {
    /// The config does not load: its diagnostics, each already headed `error:` with its
    /// file:line:col.
    Config(config::Diagnostics),
    /// The arguments do not fit the config.
    Usage(String),
}

/// The alias and environment `args` name in the config at `path`; `None` when the image
/// argument is not an alias there (it is then an image reference, as without a config).
pub fn find(args: &Args, path: &Path) -> Result<Option<Found>, Refused> {
    let config = config::load(path).map_err(Refused::Config)?;
    find_in(args, path, config).map_err(Refused::Usage)
}

fn find_in(args: &Args, path: &Path, config: Config) -> Result<Option<Found>, String> {
    let Some(image) = config.images.get(&args.image) else {
        if let Some(env) = &args.env {
            let aliases: Vec<&str> = config.images.keys().map(String::as_str).collect();
            return Err(format!(
                "--env {env} runs an image's policy from the config, and `{}` is not an image alias in {} (aliases: {})",
                args.image,
                path.display(),
                aliases.join(", ")
            ));
        }
        return Ok(None);
    };
    let flags = args.policy_flags();
    if !flags.is_empty() {
        return Err(format!(
            "the policy of `{}` comes from {}; drop {} (or name the image itself to try another policy)",
            args.image,
            path.display(),
            flags.join(", ")
        ));
    }
    let names: Vec<&str> = image
        .deployments
        .iter()
        .map(|d| d.environment.as_str())
        .collect();
    let environment = match (&args.env, names.as_slice()) {
        (Some(e), _) if names.contains(&e.as_str()) => e.clone(),
        (Some(e), _) => {
            return Err(format!(
                "`{}` is not deployed to `{e}`; it is deployed to: {}",
                args.image,
                names.join(", ")
            ));
        }
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Err(format!(
                "`{}` is deployed to several environments; name one with --env: {}",
                args.image,
                names.join(", ")
            ));
        }
    };
    Ok(Some(Found {
        alias: args.image.clone(),
        environment,
        config,
    }))
}

pub fn run(args: &Args, found: Found) -> Outcome {
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| found.config.settings.state_dir.clone());
    if !state_dir.join("status.json").exists() {
        eprintln!(
            "note: {} holds no state yet: no hold, revert or first sighting applies",
            state_dir.display()
        );
    }
    let shared = Shared::open(state_dir.clone());
    shared.join_cluster_state(&found.config);
    let Found {
        config,
        alias,
        environment,
    } = found;
    let engine = match Engine::new(Arc::new(config), &shared) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {}", safe(&e));
            return Outcome::Usage;
        }
    };
    let image = &engine.config.images[&alias];
    let deployment = image
        .deployments
        .iter()
        .find(|d| d.environment == environment)
        .expect("found deployments exist");
    let runtime = match crate::cli::small_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Usage;
        }
    };
    // In a cluster, the holds and this image's record as the replicas share them.
    let holds = match shared.handover.get() {
        None => Holds::read(&state_dir),
        Some(h) => match runtime.block_on(h.prepare(&[image], &shared.status, &shared.seen)) {
            Ok(holds) => holds,
            Err(e) => {
                eprintln!("error: {}", safe(&e.to_string()));
                return Outcome::Negative;
            }
        },
    };
    let chosen = match runtime.block_on(engine.choose(&Cycle::new(), &holds, image, deployment)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {}", safe(&e.to_string()));
            return Outcome::Usage;
        }
    };
    // A promotion is resolved from the source environment's state, as at write time.
    let chosen = match &chosen.promote_from {
        Some(from) => runtime.block_on(engine.verify_promotion(
            image,
            deployment,
            engine.promote(&alias, deployment, from),
        )),
        None => chosen,
    };
    let mut rules = rules(deployment);
    if let Some(held) = &shared.status.get(&alias, &environment).held {
        rules.push(format!(
            "revert: {} was reverted on the branch (to {}); it and what ranks below it stay out until something newer or `image-updater release`",
            held.value, held.found
        ));
    }
    if holds.active(&alias, &environment).is_some() {
        rules.push("hold: `image-updater hold` is in force".into());
    }
    let decision = Decision {
        branch: engine.config.environments[&environment].branch.clone(),
        kind: image.noun(),
        source: match image.source.chart(&image.reference) {
            Some((repository, name)) => format!("{name} from {repository}"),
            None => image.reference.repository(),
        },
        alias,
        environment,
        rules,
        writes: chosen.desired.as_ref().map(|d| d.describe()),
        waiting: chosen.waiting.as_ref().map(ToString::to_string),
    };
    let (candidates, mut selection) = chosen
        .choice
        .as_deref()
        .map(|c| (c.candidates.clone(), c.selection.clone()))
        .unwrap_or_default();
    // With signature rules, only the winner (and the tags refused above it) were checked:
    // a lower tag is eligible by the policy, its signature unknown.
    if deployment.verify.is_some() {
        for (i, v) in selection.verdicts.iter_mut().enumerate() {
            if v.eligible && selection.selected != Some(i) {
                v.reason.push_str(" (its signature was not checked)");
            }
        }
    }
    report(
        args,
        &image.reference,
        &deployment.policy,
        &candidates,
        &selection,
        Some(&decision),
    );
    if matches!(args.output, OutputFormat::Text)
        && candidates.is_empty()
        && !chosen.reason.is_empty()
    {
        println!("{}", safe(&format!("because:  {}", chosen.reason)));
    }
    if decision.writes.is_some() {
        Outcome::Success
    } else {
        Outcome::Negative
    }
}

/// The environment's safety rules, one line each, in words.
fn rules(d: &Deployment) -> Vec<String> {
    let s = &d.safety;
    let mut rules = Vec::new();
    if let Some(pin) = &s.pin {
        rules.push(format!("pin: exactly {pin}; the strategy is not consulted"));
    }
    if let Some(from) = &s.promote_from {
        rules.push(format!(
            "promote_from: only what image-updater deployed to {from}, once it has run there for {}",
            human(s.soak)
        ));
    }
    if let Some(age) = s.min_age {
        let from = match s.age_from {
            AgeFrom::FirstSeen => "from when image-updater first saw the tag",
            AgeFrom::Created => "from the image's created time",
        };
        rules.push(format!("min_age: a tag must be {} old, {from}", human(age)));
    }
    if s.pin_digest {
        rules.push("pin_digest: the digest is written beside the tag".into());
    }
    if let Some(v) = &d.verify {
        let mut signers: Vec<String> = v.keys.iter().map(|k| format!("the key {k}")).collect();
        if let Some(k) = &v.keyless {
            signers.push(format!(
                "{} vouched for by {} (keyless: a certificate from an authority of {}, with a CT log's SCT when the root names CT logs, valid when one of the root's transparency logs or timestamp authorities says it signed, or now)",
                k.identity, k.issuer, k.trusted_root
            ));
        }
        let mut rule = format!(
            "verify: the digest must carry a cosign signature (classic, or a Sigstore bundle) by {}",
            signers.join(", or ")
        );
        if let Some(a) = &v.attestation {
            rule.push_str(&format!(", and a `{}` attestation", a.predicate_type));
            if let Some((field, value)) = &a.field {
                rule.push_str(&format!(" whose {field} is `{value}`"));
            }
        }
        rules.push(rule);
    }
    rules.push(if s.allow_downgrade {
        "allow_downgrade: a tag ranking below the branch's may be written".into()
    } else {
        "no downgrade: a tag ranking below the branch's is not written".into()
    });
    rules
}
