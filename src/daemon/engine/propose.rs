//! An environment's updates proposed as a pull (merge) request rather than pushed.
//!
//! Each cycle that checks one of the environment's images:
//! 1. asks the forge what became of the request last opened: merged by a person (the values
//!    the branch now holds count as written), closed without merging (its values are held, as
//!    a revert is), gone (a 404: forgotten, and found or opened again), or still open;
//! 2. rebuilds the update branch from the environment's branch with every change still
//!    wanted: this cycle's, and those proposed before for images not checked this cycle;
//! 3. opens the request, or edits the open one in place, or closes it with a comment when
//!    nothing is left to propose;
//! 4. with `auto_merge`, asks the forge to merge it at the pushed head once its rules allow.
//!
//! Right before the update branch is pushed, the request is read again (compare and swap): one
//! merged or closed in the meantime (auto-merge makes a merge within seconds likely) is
//! settled as in step 1 and never updated, and what is still newer goes into a new request.
//! What a merge recorded is read from the branch, not assumed from the proposal.
//!
//! A forge that cannot be reached is an error for the environment, retried next cycle; the
//! environment's branch is never pushed to instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use sha2::Digest as _;

use super::{BranchError, Chosen, Engine};
use crate::config::{Environment, Repository};
use crate::daemon::safety;
use crate::forge::{self, Merge, State};
use crate::state::{OpenRequest, Proposal as Proposed, RevertHold, now};
use crate::writeback::request::{delete_update_branch, write_update_branch};
use crate::writeback::{Applied, Desired, ImageChange, Mirror, Outcome, WriteError, branch};

impl Engine {
    /// The forge client of `repo`, made once per config, for a write to `branch`.
    fn forge(&self, repo: &Repository, branch: &str) -> Result<Arc<forge::Client>, BranchError> {
        let mut forges = self.shared.forges.lock().expect("forges lock");
        if let Some(client) = forges.get(&repo.name) {
            return Ok(client.clone());
        }
        let config = repo
            .forge
            .as_ref()
            .ok_or_else(|| BranchError::NoForge(repo.name.clone()))?;
        let client = forge::Client::new(config).map_err(|error| BranchError::Forge {
            error,
            branch: branch.to_string(),
        })?;
        let client = Arc::new(client);
        forges.insert(repo.name.clone(), client.clone());
        Ok(client)
    }

    /// Proposes `changes` (this cycle's, for `checked` images) in the environment's request.
    pub(super) async fn propose(
        &self,
        env: &Environment,
        repo: &Repository,
        mut changes: Vec<ImageChange>,
        chosen: &BTreeMap<&str, &Chosen>,
        checked: &[String],
        dry_run: bool,
    ) -> Result<Outcome, BranchError> {
        let client = self.forge(repo, &env.branch)?;
        let fail = |error: forge::ForgeError| BranchError::Forge {
            error,
            branch: env.branch.clone(),
        };
        // 1 and 2: what became of the request last opened, and every change still wanted.
        let mut known = self.shared.requests.get(&env.name);
        self.look_after(
            env,
            repo,
            &client,
            &mut known,
            &mut changes,
            checked,
            dry_run,
        )
        .await
        .map_err(fail)?;
        let update = env.pull_request.branch.as_str();
        let proposed = {
            let mirror = self.mirror(repo).await?;
            let m = mirror.as_ref().expect("opened by mirror()");
            write_update_branch(m, repo, env, update, &changes, dry_run).await?
        };
        let mut outcome = proposed.outcome;
        let open = open_request(env, &client, known.as_ref())
            .await
            .map_err(fail)?;
        if let (Some((number, url)), None) = (&open, &known)
            && !dry_run
            && self.kept_reopened(env, client.noun(), *number, url)
        {
            outcome.request = Some(format!(
                "kept {} {url}, reopened by a person",
                client.noun()
            ));
            return Ok(outcome);
        }
        // 3a. Nothing left to propose: the open request goes.
        if outcome.applied.is_empty() {
            if let Some((number, url)) = open {
                let closing = Closing {
                    number,
                    url: &url,
                    known: known.as_ref(),
                    why: self.why_closed(env, known.as_ref(), checked, &outcome),
                };
                let closed = self
                    .close_unwanted(env, repo, &client, closing, dry_run)
                    .await
                    .map_err(fail)?;
                outcome.request = closed.or(outcome.request);
            }
            return Ok(outcome);
        }
        let text = Text::of(env, repo, update, &outcome.applied, chosen);
        if dry_run {
            outcome.request = Some(text.would(env, client.noun(), open.as_ref()));
            return Ok(outcome);
        }
        if outcome.commit.is_some() {
            self.shared
                .metrics
                .pushed(&repo.name, update, true, outcome.retries);
        }
        // 3b and 4.
        let head = proposed.head.expect("changes were committed").to_string();
        let said = self
            .open_or_update(env, &client, open, known, &text, &head, &outcome, chosen)
            .await
            .map_err(fail)?;
        outcome.request = Some(said);
        Ok(outcome)
    }

    /// Steps 1 and 2: settles what became of the request last opened (`known`), marks it
    /// ready when `draft` was turned off, and adds to `changes` what it proposed for images
    /// not `checked` this cycle; then settles it again right before the update branch is
    /// written (compare and swap: one merged or closed meanwhile is never updated).
    #[allow(clippy::too_many_arguments)]
    async fn look_after(
        &self,
        env: &Environment,
        repo: &Repository,
        client: &forge::Client,
        known: &mut Option<OpenRequest>,
        changes: &mut Vec<ImageChange>,
        checked: &[String],
        dry_run: bool,
    ) -> Result<(), forge::ForgeError> {
        let seen = self
            .settle(env, repo, client, known, changes, dry_run)
            .await?;
        // `draft = false` now, and the open request is a draft: it is marked ready.
        if let Some(now) = seen.filter(|r| r.draft && !env.pull_request.draft)
            && !dry_run
        {
            client.mark_ready(&now).await?;
            tracing::info!(environment = %env.name, url = %now.url, "{} marked ready for review (draft = false)", client.noun());
        }
        // Changes proposed before for images not checked this cycle are still wanted.
        if let Some(request) = known.as_ref() {
            changes.extend(
                request
                    .proposed
                    .iter()
                    .filter(|(alias, _)| !checked.contains(alias))
                    .filter_map(|(alias, proposal)| self.carried(env, alias, proposal)),
            );
            changes.sort_by(|a, b| a.alias.cmp(&b.alias));
        }
        if known.is_some() && !dry_run {
            self.settle(env, repo, client, known, changes, dry_run)
                .await?;
        }
        Ok(())
    }

    /// Steps 3b and 4: the request opened, or the open one brought up to date with the
    /// update branch at `head`, reviews asked for, and with `auto_merge` merged by the forge's
    /// rules (never past them); what the report says of it.
    #[allow(clippy::too_many_arguments)]
    async fn open_or_update(
        &self,
        env: &Environment,
        client: &forge::Client,
        open: Option<(u64, String)>,
        known: Option<OpenRequest>,
        text: &Text,
        head: &str,
        outcome: &Outcome,
        chosen: &BTreeMap<&str, &Chosen>,
    ) -> Result<String, forge::ForgeError> {
        let (number, url, opened_at, ask_reviews) = self
            .publish(env, client, open, known.as_ref(), text)
            .await?;
        let mut record = OpenRequest {
            number,
            url: url.clone(),
            noun: client.noun().to_string(),
            branch: env.pull_request.branch.clone(),
            head: head.to_string(),
            proposed: proposals(&outcome.applied, chosen),
            text_hash: text.hash(),
            merge_asked: known
                .as_ref()
                .and_then(|k| k.merge_asked.clone())
                .filter(|h| *h == head),
            opened_at,
            reviews_refused: known.as_ref().and_then(|k| k.reviews_refused.clone()),
        };
        if ask_reviews {
            record.reviews_refused = self.ask_reviews(env, client, &record).await;
        }
        self.proposed(env, &record, &outcome.applied);
        if self.merge_if_asked(env, client, &mut record).await? {
            return Ok(format!("merged {} {url}", client.noun()));
        }
        let said = format!("{} {url}", record.name());
        self.shared.requests.set(&env.name, Some(record));
        Ok(said)
    }

    /// A request a person closed, then reopened: the person wants it. Its values are no
    /// longer held, and it is kept open (and current from the next cycle on) rather than
    /// closed again. Says whether it was such a request.
    fn kept_reopened(&self, env: &Environment, noun: &str, number: u64, url: &str) -> bool {
        let reopened = self.lift_holds_of(env, number);
        if reopened.is_empty() {
            return false;
        }
        tracing::info!(environment = %env.name, %url, images = ?reopened, "{noun} reopened by a person: its values are no longer held, and it is kept open");
        for alias in &reopened {
            self.shared.status.update(alias, &env.name, |s| {
                s.request = Some(url.to_string());
                s.waiting = Some(format!("{url} was reopened: proposed again"));
            });
        }
        true
    }

    /// Closes the open request, which has nothing left to propose, saying `why`; in a dry
    /// run, what the report says instead.
    async fn close_unwanted(
        &self,
        env: &Environment,
        repo: &Repository,
        client: &forge::Client,
        Closing {
            number,
            url,
            known,
            why,
        }: Closing<'_>,
        dry_run: bool,
    ) -> Result<Option<String>, forge::ForgeError> {
        let noun = client.noun();
        if dry_run {
            return Ok(Some(format!("would close {noun} {url}")));
        }
        let comment = format!("{why}\n\nClosed by image-updater.");
        client.close(number, &comment).await?;
        tracing::info!(environment = %env.name, %url, "{noun} closed: nothing left to propose");
        self.shared.requests.set(&env.name, None);
        self.forget_request(env, known);
        let update = env.pull_request.branch.as_str();
        if let Err(e) = self.delete_branch(repo, update).await {
            tracing::warn!(branch = %update, error = %e, "cannot delete the update branch");
        }
        Ok(None)
    }

    /// Opens the request, or brings the open one's text up to date: its number, url, when it
    /// was opened, and whether reviews are to be asked for now (when it is opened, and again
    /// each cycle while the forge refuses: a refusal never fails the cycle, the request is
    /// there).
    async fn publish(
        &self,
        env: &Environment,
        client: &forge::Client,
        open: Option<(u64, String)>,
        known: Option<&OpenRequest>,
        text: &Text,
    ) -> Result<(u64, String, String, bool), forge::ForgeError> {
        let refused_before = known.is_some_and(|k| k.reviews_refused.is_some());
        match (open, known) {
            (Some((number, url)), Some(k)) => {
                if k.text_hash != text.hash() {
                    client.edit(number, &text.title, &text.body).await?;
                }
                Ok((number, url, k.opened_at.clone(), refused_before))
            }
            (Some((number, url)), None) => {
                // Found on the forge (state lost, another replica): brought up to date.
                client.edit(number, &text.title, &text.body).await?;
                Ok((number, url, now(), refused_before))
            }
            (None, _) => {
                let (request, adopted) = client
                    .open(&forge::Proposal {
                        head: &env.pull_request.branch,
                        base: &env.branch,
                        title: text.title.clone(),
                        body: text.body.clone(),
                        settings: &env.pull_request,
                    })
                    .await?;
                tracing::info!(environment = %env.name, url = %request.url, "{} opened", client.noun());
                // One opened elsewhere asked for its own reviews.
                Ok((request.number, request.url, now(), !adopted))
            }
        }
    }

    /// Asks for the environment's reviewers; why the forge refused, if it did (asked again
    /// next cycle).
    async fn ask_reviews(
        &self,
        env: &Environment,
        client: &forge::Client,
        record: &OpenRequest,
    ) -> Option<String> {
        match client
            .request_reviews(record.number, &env.pull_request.reviewers)
            .await
        {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(environment = %env.name, url = %record.url, error = %e, "reviews not requested; asked again next cycle");
                Some(e.to_string())
            }
        }
    }

    /// Each proposed image says where it was proposed.
    fn proposed(&self, env: &Environment, record: &OpenRequest, applied: &[Applied]) {
        let url = &record.url;
        let reviews = record
            .reviews_refused
            .as_ref()
            .map(|why| format!(" (reviews not requested yet: {why})"))
            .unwrap_or_default();
        for a in applied {
            tracing::info!(image = %a.alias, environment = %env.name, old = %a.old, new = %a.new, %url, "proposed");
            self.shared.status.update(&a.alias, &env.name, |s| {
                s.request = Some(url.clone());
                s.waiting = Some(format!("proposed in {}: {url}{reviews}", record.name()));
            });
        }
    }

    /// With `auto_merge`, asks the forge to merge the request at its pushed head once its
    /// rules allow; says whether it merged now (then the request is settled and forgotten).
    async fn merge_if_asked(
        &self,
        env: &Environment,
        client: &forge::Client,
        record: &mut OpenRequest,
    ) -> Result<bool, forge::ForgeError> {
        let head = record.head.clone();
        if !env.pull_request.auto_merge
            || env.pull_request.draft
            || record.merge_asked.as_deref() == Some(head.as_str())
        {
            return Ok(false);
        }
        let (noun, url) = (client.noun(), record.url.clone());
        if let Some(closed) = self.closed(env) {
            let why = closed.describe(super::fault::now());
            tracing::info!(environment = %env.name, %url, "{noun} not merged: {why}");
            return Ok(false);
        }
        let request = forge::Request {
            number: record.number,
            url: url.clone(),
            state: State::Open,
            head: Some(head.clone()),
            ready: None,
            draft: false,
            node_id: None,
        };
        match client.merge(&request, &head, &env.pull_request).await? {
            Merge::Merged => {
                tracing::info!(environment = %env.name, %url, "{noun} merged");
                // Merged at `head` (the forge was told to merge only that): as proposed.
                self.merged_as_proposed(env, record, &record.proposed);
                self.shared.requests.set(&env.name, None);
                return Ok(true);
            }
            Merge::Scheduled => {
                tracing::info!(environment = %env.name, %url, "{noun} set to merge when its checks pass");
                record.merge_asked = Some(head);
            }
            Merge::NotYet(why) => {
                tracing::info!(environment = %env.name, %url, reason = %why, "{noun} not merged yet");
            }
        }
        Ok(false)
    }

    /// Why a request with nothing left to propose is closed: per image it proposed, what
    /// keeps it back now (a hold, a pin, a safety rule: this cycle's check says), or that the
    /// branch holds its value already.
    fn why_closed(
        &self,
        env: &Environment,
        known: Option<&OpenRequest>,
        checked: &[String],
        outcome: &Outcome,
    ) -> String {
        let mut aliases: Vec<&str> = known
            .map(|k| k.proposed.keys().map(String::as_str).collect())
            .unwrap_or_default();
        aliases.extend(outcome.skipped.iter().map(|s| s.alias.as_str()));
        aliases.sort_unstable();
        aliases.dedup();
        let reasons: Vec<String> = aliases
            .into_iter()
            .filter_map(|alias| {
                let skipped = outcome.skipped.iter().find(|s| s.alias == alias);
                let why = match skipped {
                    Some(s) => Some(s.reason.clone()),
                    None if checked.iter().any(|c| c == alias) => {
                        self.shared.status.get(alias, &env.name).waiting
                    }
                    None => None,
                };
                why.map(|why| format!("- {alias}: {why}"))
            })
            .collect();
        if reasons.is_empty() {
            format!(
                "Every change this request proposed is on `{}` now.",
                env.branch
            )
        } else {
            format!("No longer wanted:\n\n{}", reasons.join("\n"))
        }
    }

    /// A change proposed in an earlier cycle, for an image this cycle did not check.
    fn carried(&self, env: &Environment, alias: &str, proposal: &Proposed) -> Option<ImageChange> {
        let image = self.config.images.get(alias)?;
        let deployment = image
            .deployments
            .iter()
            .find(|d| d.environment == env.name)?;
        let (tag, digest) = match proposal.value.split_once('@') {
            Some((tag, digest)) => (tag, Some(digest.to_string())),
            None => (proposal.value.as_str(), None),
        };
        let desired = Desired::of(image, (!tag.is_empty()).then(|| tag.to_string()), digest);
        let status = self.shared.status.get(alias, &env.name);
        let guard = safety::guard(
            &deployment.policy,
            Vec::new(),
            &desired,
            &status,
            deployment.safety.allow_downgrade,
        );
        Some(ImageChange {
            alias: alias.to_string(),
            desired,
            targets: deployment.targets.clone(),
            guard: Some(guard),
        })
    }

    /// What became of `known`, the request last opened (see the module's steps); `known` is
    /// `None` afterwards unless it is still open, and then the forge's view of it is returned.
    async fn settle(
        &self,
        env: &Environment,
        repo: &Repository,
        client: &forge::Client,
        known: &mut Option<OpenRequest>,
        changes: &mut Vec<ImageChange>,
        dry_run: bool,
    ) -> Result<Option<forge::Request>, forge::ForgeError> {
        let Some(request) = known.clone() else {
            return Ok(None);
        };
        let store = &self.shared.requests;
        let now = match client.get(request.number).await {
            Ok(now) => now,
            Err(e) if e.is_not_found() && !dry_run => {
                tracing::warn!(environment = %env.name, url = %request.url, "{} is gone (the forge answers 404): forgotten; one is found or opened again", request.name());
                self.forget_request(env, Some(&request));
                store.set(&env.name, None);
                *known = None;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match now.state {
            State::Open => return Ok(Some(now)),
            State::Merged if !dry_run => {
                self.merged(env, repo, &request).await;
                store.set(&env.name, None);
                *known = None;
            }
            State::Closed if !dry_run => {
                self.closed_unmerged(env, &request);
                changes.retain(|c| !request.proposed.contains_key(&c.alias));
                store.set(&env.name, None);
                *known = None;
            }
            _ => {}
        }
        Ok(None)
    }

    /// A request merged by a person or by the forge's auto-merge: what counts as written is
    /// what the branch holds now, read from it. A merge that landed while the request was
    /// being updated holds the values from before the update; those count, and the newer
    /// values are proposed again rather than taken as deployed (and then as reverted).
    async fn merged(&self, env: &Environment, repo: &Repository, request: &OpenRequest) {
        let carried: Vec<ImageChange> = request
            .proposed
            .iter()
            .filter_map(|(alias, p)| self.carried(env, alias, p))
            .collect();
        let update = env.pull_request.branch.as_str();
        let still_to_do = match self.mirror(repo).await {
            Ok(mirror) => {
                let m = mirror.as_ref().expect("opened by mirror()");
                write_update_branch(m, repo, env, update, &carried, true)
                    .await
                    .map(|p| p.outcome.applied)
            }
            Err(e) => Err(e.into()),
        };
        let still_to_do = match still_to_do {
            Ok(applied) => applied,
            Err(e) => {
                // The forge says merged; without the branch to read, its word is taken.
                tracing::warn!(environment = %env.name, error = %e, "cannot read the branch after a merge; taking the request's values as merged");
                Vec::new()
            }
        };
        let on_branch: BTreeMap<String, Proposed> = request
            .proposed
            .iter()
            .filter(|(alias, _)| !still_to_do.iter().any(|a| &a.alias == *alias))
            .map(|(alias, p)| (alias.clone(), p.clone()))
            .collect();
        for a in &still_to_do {
            tracing::warn!(image = %a.alias, environment = %env.name, url = %request.url, holds = %a.old, proposed = %a.new, "{} was merged holding {} for {}, not the {} proposed last (merged while it was updated); proposed again", request.name(), a.old, a.alias, a.new);
            self.shared.status.update(&a.alias, &env.name, |s| {
                s.current = Some(a.old.clone());
                s.request = None;
            });
        }
        self.merged_as_proposed(env, request, &on_branch);
    }

    /// `proposed`, values of a merged request that are on the branch, count as
    /// image-updater's writes.
    fn merged_as_proposed(
        &self,
        env: &Environment,
        request: &OpenRequest,
        proposed: &BTreeMap<String, Proposed>,
    ) {
        let name = request.name();
        for (alias, p) in proposed {
            self.shared.metrics.updated(alias, &env.name);
            self.shared.status.update(alias, &env.name, |s| {
                s.wrote(
                    format!("{} -> {}", p.old, p.value),
                    request.head.clone(),
                    Some(request.url.clone()),
                );
                s.written = Some(p.value.clone());
                s.written_digest = p.digest.clone();
                s.current = Some(p.value.clone());
                s.request = None;
                s.waiting = None;
                s.held = None;
            });
            tracing::info!(image = %alias, environment = %env.name, branch = %env.branch, old = %p.old, new = %p.value, url = %request.url, "updated: {name} was merged");
        }
    }

    /// A request closed without merging: a person said no to its values, as a revert says.
    fn closed_unmerged(&self, env: &Environment, request: &OpenRequest) {
        let name = request.name();
        for (alias, p) in &request.proposed {
            let reason = format!(
                "{name} was closed without merging: {} and older are held until something newer",
                p.value
            );
            tracing::warn!(image = %alias, environment = %env.name, url = %request.url, "{reason}");
            self.shared.metrics.reverted(alias, &env.name);
            self.shared.status.update(alias, &env.name, |s| {
                s.held = Some(Box::new(RevertHold {
                    value: p.value.clone(),
                    tag: safety::tag_of(&p.value).to_string(),
                    found: format!("{} closed", request.url),
                    since: now(),
                    request: Some(request.number),
                }));
                s.request = None;
                s.waiting = Some(reason.clone());
            });
        }
    }

    /// Lifts the holds that request `number`'s closing put on `env`'s images; returns them.
    fn lift_holds_of(&self, env: &Environment, number: u64) -> Vec<String> {
        let mut lifted = Vec::new();
        for alias in self.config.images.keys() {
            let held_by_it = self
                .shared
                .status
                .get(alias, &env.name)
                .held
                .is_some_and(|h| h.request == Some(number));
            if held_by_it {
                self.shared.status.update(alias, &env.name, |s| {
                    s.held = None;
                    s.waiting = None;
                });
                lifted.push(alias.clone());
            }
        }
        lifted
    }

    /// The statuses of a closed request's images no longer point at it.
    fn forget_request(&self, env: &Environment, request: Option<&OpenRequest>) {
        let Some(request) = request else { return };
        for alias in request.proposed.keys() {
            self.shared.status.update(alias, &env.name, |s| {
                s.request = None;
            });
        }
    }

    async fn delete_branch(&self, repo: &Repository, update: &str) -> Result<(), WriteError> {
        let mirror = self.mirror(repo).await?;
        let m: &Mirror = mirror.as_ref().expect("opened by mirror()");
        delete_update_branch(m, update).await
    }
}

/// The request this write goes to, as its number and url: the known one, or one opened on the
/// forge from the update branch before this replica knew of it (state lost, another writer).
async fn open_request(
    env: &Environment,
    client: &forge::Client,
    known: Option<&OpenRequest>,
) -> Result<Option<(u64, String)>, forge::ForgeError> {
    if let Some(r) = known {
        return Ok(Some((r.number, r.url.clone())));
    }
    let found = client
        .find_open(&env.pull_request.branch, &env.branch)
        .await?;
    Ok(found.map(|r| (r.number, r.url)))
}

/// The open request that has nothing left to propose, and why.
struct Closing<'a> {
    number: u64,
    url: &'a str,
    known: Option<&'a OpenRequest>,
    why: String,
}

/// A request's title and description.
struct Text {
    title: String,
    body: String,
}

impl Text {
    /// The title is the commit's subject; the description lists each change.
    fn of(
        env: &Environment,
        repo: &Repository,
        update: &str,
        applied: &[Applied],
        chosen: &BTreeMap<&str, &Chosen>,
    ) -> Text {
        let title = branch::message(repo, env, applied)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        Text {
            title,
            body: body(env, update, applied, chosen),
        }
    }

    /// What a dry run says it would do with the request `open` (none: open one).
    fn would(&self, env: &Environment, noun: &str, open: Option<&(u64, String)>) -> String {
        let title = &self.title;
        match open {
            Some((_, url)) => format!("would update {noun} {url}: {title}"),
            None => format!(
                "would open a {noun} from {} into {}: {title}",
                env.pull_request.branch, env.branch
            ),
        }
    }

    /// What the request's text is remembered by: edited only when this changes.
    fn hash(&self) -> String {
        hex_sha256(&format!("{}\n{}", self.title, self.body))
    }
}

/// What a request proposes, by image: the value, the one it replaces, and its digest.
fn proposals(applied: &[Applied], chosen: &BTreeMap<&str, &Chosen>) -> BTreeMap<String, Proposed> {
    applied
        .iter()
        .map(|a| {
            let proposal = Proposed {
                value: a.new.clone(),
                old: a.old.clone(),
                digest: chosen.get(a.alias.as_str()).and_then(|c| c.digest.clone()),
            };
            (a.alias.clone(), proposal)
        })
        .collect()
}

/// The request's description: one row per change, with its digest and why it was chosen.
fn body(
    env: &Environment,
    update: &str,
    applied: &[Applied],
    chosen: &BTreeMap<&str, &Chosen>,
) -> String {
    let mut text = format!(
        "image-updater proposes these updates for `{}` (branch `{}`):\n\n| image | repository | from | to | digest | why | source |\n|---|---|---|---|---|---|---|\n",
        env.name, env.branch
    );
    for a in applied {
        let c = chosen.get(a.alias.as_str());
        let cell = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
        // Checked when read from the registry: a plain http(s) url, safe inside a link.
        let source = c
            .and_then(|c| c.source.as_deref())
            .map(|url| format!("[source]({url})"))
            .unwrap_or_else(|| "-".into());
        text.push_str(&format!(
            "| {} | {} | `{}` | `{}` | {} | {} | {source} |\n",
            cell(&a.alias),
            cell(&a.repository),
            cell(&a.old),
            cell(&a.new),
            c.and_then(|c| c.digest.as_deref())
                .map(|d| format!("`{}`", cell(d)))
                .unwrap_or_else(|| "-".into()),
            cell(
                c.map(|c| c.reason.as_str())
                    .filter(|r| !r.is_empty())
                    .unwrap_or("carried over from an earlier cycle")
            ),
        ));
    }
    text.push_str(&format!(
        "\nThe branch `{update}` is rebuilt from `{}` whenever this changes; commits pushed to it by hand are replaced. Closing this request without merging holds these versions back until newer ones appear.\n",
        env.branch
    ));
    text
}

fn hex_sha256(text: &str) -> String {
    crate::hex::encode(&sha2::Sha256::digest(text.as_bytes()))
}
