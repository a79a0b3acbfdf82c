//! Gitea's and Forgejo's REST API v1 (they share it), for pull requests.
//!
//! Endpoints: `GET /repos/{o}/{r}/pulls?state=open` (paginated with `page` and `limit`; head
//! and base are matched here, as older servers have no filter for them),
//! `GET/PATCH /repos/{o}/{r}/pulls/{index}`, `POST /repos/{o}/{r}/pulls` (409 when a pull
//! request for the same branches exists), `GET /repos/{o}/{r}/labels` (labels are given by
//! id), `POST /repos/{o}/{r}/pulls/{index}/requested_reviewers`,
//! `POST /repos/{o}/{r}/issues/{index}/comments` and `POST /repos/{o}/{r}/pulls/{index}/merge`
//! with `merge_when_checks_succeed`, the forge's own auto-merge, pinned to the head commit.
//!
//! A draft is a title that starts with `WIP:`.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::http::{Api, Auth, segment};
use super::{Answer, Call};
use super::{
    ForgeError, Merge, Proposal, Request, State, TitledDraft, checked_sha, checked_url, titled,
};
use reqwest::header::{AUTHORIZATION, HeaderName};

/// What marks a draft: a title that starts with it.
const DRAFT: &str = "WIP:";
use crate::config::PullRequest;

/// Gitea's and Forgejo's REST API.
pub struct Gitea;

impl super::Forge for Gitea {
    super::same_calls!();

    fn authorization(&self, token: &str) -> (HeaderName, String) {
        (AUTHORIZATION, format!("token {token}"))
    }

    fn request_reviews<'a>(
        &'a self,
        call: Call<'a>,
        number: u64,
        reviewers: &'a [String],
    ) -> Answer<'a, ()> {
        Box::pin(request_reviews(
            call.api,
            call.auth,
            call.project,
            number,
            reviewers,
        ))
    }

    fn mark_ready<'a>(&'a self, call: Call<'a>, request: &'a Request) -> Answer<'a, ()> {
        Box::pin(mark_ready(
            call.api,
            call.auth,
            call.project,
            request.number,
        ))
    }

    fn merge<'a>(
        &'a self,
        call: Call<'a>,
        request: &'a Request,
        head: &'a str,
        settings: &'a PullRequest,
    ) -> Answer<'a, Merge> {
        Box::pin(merge(
            call.api,
            call.auth,
            call.project,
            request,
            head,
            settings,
        ))
    }
}

#[derive(Debug, Deserialize)]
struct Pull {
    number: u64,
    html_url: Option<String>,
    state: String,
    #[serde(default)]
    merged: bool,
    head: Option<Branch>,
    base: Option<Branch>,
    #[serde(default)]
    title: String,
}

#[derive(Debug, Deserialize)]
struct Branch {
    #[serde(rename = "ref")]
    name: String,
    sha: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Label {
    id: u64,
    name: String,
}

impl Pull {
    fn request(self) -> Result<Request, ForgeError> {
        if self.number == 0 {
            return Err(ForgeError::Invalid {
                what: "a pull request".into(),
                reason: "its number is 0".into(),
            });
        }
        Ok(Request {
            number: self.number,
            url: checked_url(self.html_url).unwrap_or_default(),
            state: match (self.state.as_str(), self.merged) {
                (_, true) => State::Merged,
                ("open", _) => State::Open,
                _ => State::Closed,
            },
            head: checked_sha(self.head.and_then(|h| h.sha)),
            ready: None,
            draft: self.title.starts_with(DRAFT),
            node_id: None,
        })
    }
}

fn repo_path(project: &str) -> String {
    let (owner, name) = project.split_once('/').unwrap_or((project, ""));
    format!("/repos/{}/{}", segment(owner), segment(name))
}

/// Pull request `index`, for edits that keep or take off its `WIP:` mark.
fn pull<'a>(api: &'a Api, auth: &'a Auth, project: &str, index: u64) -> TitledDraft<'a> {
    TitledDraft {
        api,
        auth,
        path: format!("{}/pulls/{index}", repo_path(project)),
        method: Method::PATCH,
        name: format!("pull request #{index}"),
        marker: DRAFT,
    }
}

pub async fn find_open(
    api: &Api,
    auth: &Auth,
    project: &str,
    head: &str,
    base: &str,
) -> Result<Option<Request>, ForgeError> {
    // Gitea's lookup by base and head: one request, however many pull requests are open.
    // A Gitea without it (or without such a pull request) answers 404: then the open ones
    // are listed, as far as MAX_PAGES goes.
    let direct = api.url(&format!(
        "{}/pulls/{}/{}",
        repo_path(project),
        segment(base),
        segment(head)
    ))?;
    let reply = api.send(Method::GET, direct, Some(auth), None).await?;
    match reply.status.as_u16() {
        200 => {
            let pull: Pull = reply.json("looking up the pull request")?;
            let same = pull.head.as_ref().is_some_and(|h| h.name == head)
                && pull.base.as_ref().is_some_and(|b| b.name == base);
            if same && pull.state == "open" {
                return pull.request().map(Some);
            }
        }
        404 => {}
        _ => return Err(ForgeError::refused("looking up the pull request", &reply)),
    }
    let mut url = api.url(&format!("{}/pulls", repo_path(project)))?;
    url.query_pairs_mut()
        .append_pair("state", "open")
        .append_pair("limit", "50");
    let pulls: Vec<Pull> = api.list(url, Some(auth), "listing pull requests").await?;
    pulls
        .into_iter()
        .filter(|p| {
            p.state == "open"
                && p.head.as_ref().is_some_and(|h| h.name == head)
                && p.base.as_ref().is_some_and(|b| b.name == base)
        })
        .map(Pull::request)
        .next()
        .transpose()
}

pub async fn get(api: &Api, auth: &Auth, project: &str, index: u64) -> Result<Request, ForgeError> {
    let path = format!("{}/pulls/{index}", repo_path(project));
    let what = format!("reading pull request #{index}");
    let reply = api.call(Method::GET, &path, auth, None, &what).await?;
    reply.json::<Pull>(&what)?.request()
}

/// The ids of the repository's labels named in the config; a name it lacks is left out.
async fn label_ids(
    api: &Api,
    auth: &Auth,
    project: &str,
    names: &[String],
) -> Result<Vec<u64>, ForgeError> {
    let mut url = api.url(&format!("{}/labels", repo_path(project)))?;
    url.query_pairs_mut().append_pair("limit", "50");
    let labels: Vec<Label> = api.list(url, Some(auth), "listing labels").await?;
    let mut ids = Vec::new();
    for name in names {
        match labels.iter().find(|l| l.name == *name) {
            Some(l) => ids.push(l.id),
            None => {
                tracing::warn!(label = %name, "the repository has no such label; left out of the pull request")
            }
        }
    }
    Ok(ids)
}

pub async fn open(
    api: &Api,
    auth: &Auth,
    project: &str,
    p: &Proposal<'_>,
) -> Result<Option<Request>, ForgeError> {
    let settings = p.settings;
    let title = titled(DRAFT, &p.title, settings.draft);
    let mut body = json!({
        "head": p.head,
        "base": p.base,
        "title": title,
        "body": p.body,
    });
    if !settings.labels.is_empty() {
        body["labels"] = json!(label_ids(api, auth, project, &settings.labels).await?);
    }
    if !settings.assignees.is_empty() {
        body["assignees"] = json!(settings.assignees);
    }
    let url = api.url(&format!("{}/pulls", repo_path(project)))?;
    let what = "opening a pull request";
    let reply = api.send(Method::POST, url, Some(auth), Some(&body)).await?;
    if reply.status.as_u16() == 409 {
        return Ok(None);
    }
    if reply.status.as_u16() != 201 {
        return Err(ForgeError::refused(what, &reply));
    }
    let request = reply.json::<Pull>(what)?.request()?;
    Ok(Some(request))
}

/// Asks `reviewers` to review request `index`.
pub async fn request_reviews(
    api: &Api,
    auth: &Auth,
    project: &str,
    index: u64,
    reviewers: &[String],
) -> Result<(), ForgeError> {
    let path = format!("{}/pulls/{index}/requested_reviewers", repo_path(project));
    let body = json!({"reviewers": reviewers});
    api.call(Method::POST, &path, auth, Some(&body), "requesting reviews")
        .await
        .map(drop)
}

pub async fn edit(
    api: &Api,
    auth: &Auth,
    project: &str,
    index: u64,
    title: &str,
    body: &str,
) -> Result<(), ForgeError> {
    pull(api, auth, project, index)
        .edit(title, ("body", body))
        .await
}

pub async fn close(
    api: &Api,
    auth: &Auth,
    project: &str,
    index: u64,
    comment: &str,
) -> Result<(), ForgeError> {
    let path = format!("{}/issues/{index}/comments", repo_path(project));
    let body = json!({"body": comment});
    api.call(Method::POST, &path, auth, Some(&body), "commenting")
        .await?;
    let what = format!("closing pull request #{index}");
    pull(api, auth, project, index)
        .send(json!({"state": "closed"}), &what)
        .await
}

pub async fn merge(
    api: &Api,
    auth: &Auth,
    project: &str,
    request: &Request,
    head: &str,
    settings: &PullRequest,
) -> Result<Merge, ForgeError> {
    let url = api.url(&format!(
        "{}/pulls/{}/merge",
        repo_path(project),
        request.number
    ))?;
    let body = json!({
        "Do": settings.merge_method.name(),
        "head_commit_id": head,
        "merge_when_checks_succeed": true,
    });
    let reply = api.send(Method::POST, url, Some(auth), Some(&body)).await?;
    match reply.status.as_u16() {
        200 => Ok(Merge::Merged),
        // Scheduled to merge once the checks succeed.
        201 => Ok(Merge::Scheduled),
        // 405: not allowed yet (protection, conflicts); 409: the head moved.
        405 | 409 => Ok(Merge::NotYet(reply.message())),
        _ => Err(ForgeError::refused("merging", &reply)),
    }
}

/// Takes `WIP:` off the pull request's title.
pub async fn mark_ready(
    api: &Api,
    auth: &Auth,
    project: &str,
    index: u64,
) -> Result<(), ForgeError> {
    pull(api, auth, project, index).mark_ready().await
}
