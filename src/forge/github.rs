//! GitHub's REST API (also GitHub Enterprise Server at `https://HOST/api/v3`), version
//! 2022-11-28.
//!
//! Endpoints: `GET /repos/{o}/{r}/pulls?head=o:branch&base=…&state=open` (the head is
//! qualified by the owner), `GET/PATCH /repos/{o}/{r}/pulls/{n}`, `POST /repos/{o}/{r}/pulls`
//! (422 with "A pull request already exists" when one does),
//! `POST /repos/{o}/{r}/issues/{n}/comments`, `POST /repos/{o}/{r}/issues/{n}/labels`,
//! `POST /repos/{o}/{r}/issues/{n}/assignees`, `POST /repos/{o}/{r}/pulls/{n}/requested_reviewers`
//! and `PUT /repos/{o}/{r}/pulls/{n}/merge`.
//!
//! GitHub's own auto-merge exists only in its GraphQL API. So an auto-merged request is
//! merged here, through REST, when GitHub reports its `mergeable_state` as `clean` (every
//! required check and review satisfied), at the exact head commit image-updater pushed.
//! A merge that branch protection refuses is refused by GitHub too: nothing is bypassed.

use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;

use super::http::{Api, Auth, segment};
use super::{Answer, Call};
use super::{ForgeError, Merge, Proposal, Request, State, checked_sha, checked_url};
use crate::config::PullRequest;

/// GitHub's REST API (and GraphQL, to mark a draft ready).
pub struct GitHub;

impl super::Forge for GitHub {
    super::same_calls!();

    fn headers(&self) -> HeaderMap {
        headers()
    }

    fn authorization(&self, token: &str) -> (HeaderName, String) {
        (AUTHORIZATION, format!("Bearer {token}"))
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
        Box::pin(mark_ready(call.api, call.auth, request))
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

pub fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        ACCEPT,
        HeaderValue::from_static("application/vnd.github+json"),
    );
    h.insert(
        HeaderName::from_static("x-github-api-version"),
        HeaderValue::from_static("2022-11-28"),
    );
    h
}

#[derive(Debug, Deserialize)]
struct Pull {
    number: u64,
    html_url: Option<String>,
    state: String,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
    head: Option<Ref>,
    base: Option<Ref>,
    #[serde(default)]
    mergeable_state: Option<String>,
    #[serde(default)]
    draft: bool,
    #[serde(default)]
    node_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Ref {
    #[serde(rename = "ref")]
    name: String,
    sha: Option<String>,
}

impl Pull {
    fn request(self) -> Result<Request, ForgeError> {
        if self.number == 0 {
            return Err(ForgeError::Invalid {
                what: "a pull request".into(),
                reason: "its number is 0".into(),
            });
        }
        let merged = self.merged == Some(true) || self.merged_at.is_some();
        let state = match (self.state.as_str(), merged) {
            (_, true) => State::Merged,
            ("open", _) => State::Open,
            _ => State::Closed,
        };
        Ok(Request {
            number: self.number,
            url: checked_url(self.html_url).unwrap_or_default(),
            state,
            head: checked_sha(self.head.and_then(|h| h.sha)),
            ready: self.mergeable_state.map(|s| s == "clean"),
            draft: self.draft,
            node_id: self.node_id.filter(|id| id.len() <= 128),
        })
    }
}

fn repo_path(project: &str) -> String {
    let (owner, name) = project.split_once('/').unwrap_or((project, ""));
    format!("/repos/{}/{}", segment(owner), segment(name))
}

pub async fn find_open(
    api: &Api,
    auth: &Auth,
    project: &str,
    head: &str,
    base: &str,
) -> Result<Option<Request>, ForgeError> {
    let owner = project.split('/').next().unwrap_or_default();
    let mut url = api.url(&format!("{}/pulls", repo_path(project)))?;
    url.query_pairs_mut()
        .append_pair("state", "open")
        .append_pair("head", &format!("{owner}:{head}"))
        .append_pair("base", base)
        .append_pair("per_page", "100");
    let pulls: Vec<Pull> = api.list(url, Some(auth), "listing pull requests").await?;
    pulls
        .into_iter()
        // The filter is the server's; checked again here.
        .filter(|p| {
            p.state == "open"
                && p.head.as_ref().is_some_and(|h| h.name == head)
                && p.base.as_ref().is_some_and(|b| b.name == base)
        })
        .map(Pull::request)
        .next()
        .transpose()
}

pub async fn get(
    api: &Api,
    auth: &Auth,
    project: &str,
    number: u64,
) -> Result<Request, ForgeError> {
    let path = format!("{}/pulls/{number}", repo_path(project));
    let what = format!("reading pull request #{number}");
    let reply = api.call(Method::GET, &path, auth, None, &what).await?;
    reply.json::<Pull>(&what)?.request()
}

/// The new request, or `None` when GitHub says one is open already.
pub async fn open(
    api: &Api,
    auth: &Auth,
    project: &str,
    p: &Proposal<'_>,
) -> Result<Option<Request>, ForgeError> {
    let url = api.url(&format!("{}/pulls", repo_path(project)))?;
    let body = json!({
        "title": p.title,
        "head": p.head,
        "base": p.base,
        "body": p.body,
        "draft": p.settings.draft,
        "maintainer_can_modify": false,
    });
    let what = "opening a pull request";
    let reply = api.send(Method::POST, url, Some(auth), Some(&body)).await?;
    if reply.status.as_u16() == 422 && reply.message().contains("already exists") {
        return Ok(None);
    }
    if reply.status.as_u16() != 201 {
        return Err(ForgeError::refused(what, &reply));
    }
    let request = reply.json::<Pull>(what)?.request()?;
    let n = request.number;
    let issue = format!("{}/issues/{n}", repo_path(project));
    let settings = p.settings;
    if !settings.labels.is_empty() {
        post(
            api,
            auth,
            &format!("{issue}/labels"),
            json!({"labels": settings.labels}),
            "labelling it",
        )
        .await?;
    }
    if !settings.assignees.is_empty() {
        post(
            api,
            auth,
            &format!("{issue}/assignees"),
            json!({"assignees": settings.assignees}),
            "assigning it",
        )
        .await?;
    }
    Ok(Some(request))
}

/// Asks `reviewers` to review request `number`.
pub async fn request_reviews(
    api: &Api,
    auth: &Auth,
    project: &str,
    number: u64,
    reviewers: &[String],
) -> Result<(), ForgeError> {
    let path = format!("{}/pulls/{number}/requested_reviewers", repo_path(project));
    post(
        api,
        auth,
        &path,
        json!({"reviewers": reviewers}),
        "requesting reviews",
    )
    .await
}

async fn post(
    api: &Api,
    auth: &Auth,
    path: &str,
    body: serde_json::Value,
    what: &str,
) -> Result<(), ForgeError> {
    api.call(Method::POST, path, auth, Some(&body), what)
        .await
        .map(drop)
}

async fn patch(
    api: &Api,
    auth: &Auth,
    project: &str,
    number: u64,
    body: serde_json::Value,
    what: &str,
) -> Result<(), ForgeError> {
    let path = format!("{}/pulls/{number}", repo_path(project));
    api.call(Method::PATCH, &path, auth, Some(&body), what)
        .await
        .map(drop)
}

pub async fn edit(
    api: &Api,
    auth: &Auth,
    project: &str,
    number: u64,
    title: &str,
    body: &str,
) -> Result<(), ForgeError> {
    let what = format!("updating pull request #{number}");
    patch(
        api,
        auth,
        project,
        number,
        json!({"title": title, "body": body}),
        &what,
    )
    .await
}

pub async fn close(
    api: &Api,
    auth: &Auth,
    project: &str,
    number: u64,
    comment: &str,
) -> Result<(), ForgeError> {
    let path = format!("{}/issues/{number}/comments", repo_path(project));
    post(api, auth, &path, json!({"body": comment}), "commenting").await?;
    let what = format!("closing pull request #{number}");
    patch(
        api,
        auth,
        project,
        number,
        json!({"state": "closed"}),
        &what,
    )
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
    // `mergeable_state` is computed on a read of the one request, not in lists.
    let current = get(api, auth, project, request.number).await?;
    if current.ready != Some(true) {
        return Ok(Merge::NotYet(
            "GitHub does not report the pull request as clean (checks or reviews pending)".into(),
        ));
    }
    let url = api.url(&format!(
        "{}/pulls/{}/merge",
        repo_path(project),
        request.number
    ))?;
    let body = json!({"sha": head, "merge_method": settings.merge_method.name()});
    let reply = api.send(Method::PUT, url, Some(auth), Some(&body)).await?;
    match reply.status.as_u16() {
        200 => Ok(Merge::Merged),
        // 405: not mergeable (protection, conflicts); 409: the head moved.
        405 | 409 | 422 => Ok(Merge::NotYet(reply.message())),
        _ => Err(ForgeError::refused("merging", &reply)),
    }
}

/// Marks a draft pull request ready for review: GitHub's REST API cannot, its GraphQL API's
/// `markPullRequestReadyForReview` mutation can (on the same origin's `/graphql`).
pub async fn mark_ready(api: &Api, auth: &Auth, request: &Request) -> Result<(), ForgeError> {
    let what = "marking the pull request ready for review";
    let id = request
        .node_id
        .as_deref()
        .ok_or_else(|| ForgeError::Invalid {
            what: what.into(),
            reason: "GitHub gave no node id for it".into(),
        })?;
    let body = json!({
        "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }",
        "variables": { "id": id },
    });
    let reply = api
        .call(Method::POST, "/graphql", auth, Some(&body), what)
        .await?;
    let answer: serde_json::Value = reply.json(what)?;
    if let Some(errors) = answer["errors"].as_array().filter(|e| !e.is_empty()) {
        return Err(ForgeError::Invalid {
            what: what.into(),
            reason: errors
                .iter()
                .filter_map(|e| e["message"].as_str())
                .collect::<Vec<_>>()
                .join("; "),
        });
    }
    Ok(())
}
