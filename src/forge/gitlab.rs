//! GitLab's REST API v4 (gitlab.com and self-managed), for merge requests.
//!
//! Endpoints: `GET /projects/:id/merge_requests?state=opened&source_branch=…&target_branch=…`,
//! `GET/PUT /projects/:id/merge_requests/:iid`, `POST /projects/:id/merge_requests` (409 when
//! another open merge request has the source branch), `POST …/merge_requests/:iid/notes`,
//! `GET /users?username=…` (reviewers and assignees are given by id) and
//! `PUT …/merge_requests/:iid/merge` with `auto_merge`, GitLab's own "merge when checks
//! pass", pinned to the head commit with `sha`. `:id` is the project's path, URL-encoded.
//!
//! `auto_merge` exists from GitLab 17.11; before, the same is `merge_when_pipeline_succeeds`,
//! and an older GitLab given only `auto_merge` merges at once where the project does not
//! require pipelines. So the version (`GET /version`) is read once per forge, and an older or
//! unknown one is sent `merge_when_pipeline_succeeds` (which 17.11 and later still accept).
//!
//! A draft is a title that starts with `Draft:`.

use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::http::{Api, Auth, segment};
use super::{Answer, Call};
use super::{
    ForgeError, Merge, Proposal, Request, State, TitledDraft, checked_sha, checked_url, titled,
};
use reqwest::header::HeaderName;

/// What marks a draft: a title that starts with it.
const DRAFT: &str = "Draft:";
use crate::config::{MergeMethod, PullRequest};

/// GitLab's REST API. It names reviewers when it opens a request, so the trait's default
/// `request_reviews` (nothing) is GitLab's.
#[derive(Default)]
pub struct GitLab {
    /// The instance's version, read once (`None`: unreadable, taken as older than 17.11).
    version: tokio::sync::OnceCell<Option<(u64, u64)>>,
}

impl super::Forge for GitLab {
    super::same_calls!();

    fn authorization(&self, token: &str) -> (HeaderName, String) {
        (HeaderName::from_static("private-token"), token.to_string())
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
        Box::pin(async move {
            let version = *self
                .version
                .get_or_init(|| version(call.api, call.auth))
                .await;
            merge(
                call.api,
                call.auth,
                call.project,
                request,
                head,
                settings,
                version,
            )
            .await
        })
    }
}

#[derive(Debug, Deserialize)]
struct MergeRequest {
    iid: u64,
    web_url: Option<String>,
    state: String,
    source_branch: Option<String>,
    target_branch: Option<String>,
    sha: Option<String>,
    #[serde(default)]
    title: String,
}

impl MergeRequest {
    fn request(self) -> Result<Request, ForgeError> {
        if self.iid == 0 {
            return Err(ForgeError::Invalid {
                what: "a merge request".into(),
                reason: "its iid is 0".into(),
            });
        }
        Ok(Request {
            number: self.iid,
            url: checked_url(self.web_url).unwrap_or_default(),
            state: match self.state.as_str() {
                "opened" | "locked" => State::Open,
                "merged" => State::Merged,
                _ => State::Closed,
            },
            head: checked_sha(self.sha),
            ready: None,
            draft: self.title.starts_with(DRAFT),
            node_id: None,
        })
    }
}

#[derive(Debug, Deserialize)]
struct User {
    id: u64,
    username: String,
}

fn project_path(project: &str) -> String {
    format!("/projects/{}", segment(project))
}

/// Merge request `iid`, for edits that keep or take off its `Draft:` mark.
fn merge_request<'a>(api: &'a Api, auth: &'a Auth, project: &str, iid: u64) -> TitledDraft<'a> {
    TitledDraft {
        api,
        auth,
        path: format!("{}/merge_requests/{iid}", project_path(project)),
        method: Method::PUT,
        name: format!("merge request !{iid}"),
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
    let mut url = api.url(&format!("{}/merge_requests", project_path(project)))?;
    url.query_pairs_mut()
        .append_pair("state", "opened")
        .append_pair("source_branch", head)
        .append_pair("target_branch", base)
        .append_pair("per_page", "100");
    let list: Vec<MergeRequest> = api.list(url, Some(auth), "listing merge requests").await?;
    list.into_iter()
        .filter(|m| {
            m.state == "opened"
                && m.source_branch.as_deref() == Some(head)
                && m.target_branch.as_deref() == Some(base)
        })
        .map(MergeRequest::request)
        .next()
        .transpose()
}

pub async fn get(api: &Api, auth: &Auth, project: &str, iid: u64) -> Result<Request, ForgeError> {
    let path = format!("{}/merge_requests/{iid}", project_path(project));
    let what = format!("reading merge request !{iid}");
    let reply = api.call(Method::GET, &path, auth, None, &what).await?;
    reply.json::<MergeRequest>(&what)?.request()
}

/// The ids of users named in the config: GitLab takes ids, people write names.
async fn user_ids(api: &Api, auth: &Auth, names: &[String]) -> Result<Vec<u64>, ForgeError> {
    let mut ids = Vec::new();
    for name in names {
        let mut url = api.url("/users")?;
        url.query_pairs_mut().append_pair("username", name);
        let what = format!("looking up user {name}");
        let reply = api.send(Method::GET, url, Some(auth), None).await?;
        if !reply.status.is_success() {
            return Err(ForgeError::refused(&what, &reply));
        }
        let users: Vec<User> = reply.json(&what)?;
        match users.into_iter().find(|u| u.username == *name) {
            Some(u) => ids.push(u.id),
            None => {
                tracing::warn!(user = %name, "no such GitLab user; left out of the merge request")
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
        "source_branch": p.head,
        "target_branch": p.base,
        "title": title,
        "description": p.body,
        "squash": settings.merge_method == MergeMethod::Squash,
    });
    if !settings.labels.is_empty() {
        body["labels"] = json!(settings.labels.join(","));
    }
    if !settings.assignees.is_empty() {
        body["assignee_ids"] = json!(user_ids(api, auth, &settings.assignees).await?);
    }
    if !settings.reviewers.is_empty() {
        body["reviewer_ids"] = json!(user_ids(api, auth, &settings.reviewers).await?);
    }
    let url = api.url(&format!("{}/merge_requests", project_path(project)))?;
    let what = "opening a merge request";
    let reply = api.send(Method::POST, url, Some(auth), Some(&body)).await?;
    if reply.status.as_u16() == 409 {
        return Ok(None);
    }
    if reply.status.as_u16() != 201 {
        return Err(ForgeError::refused(what, &reply));
    }
    reply.json::<MergeRequest>(what)?.request().map(Some)
}

pub async fn edit(
    api: &Api,
    auth: &Auth,
    project: &str,
    iid: u64,
    title: &str,
    body: &str,
) -> Result<(), ForgeError> {
    merge_request(api, auth, project, iid)
        .edit(title, ("description", body))
        .await
}

pub async fn close(
    api: &Api,
    auth: &Auth,
    project: &str,
    iid: u64,
    comment: &str,
) -> Result<(), ForgeError> {
    let path = format!("{}/merge_requests/{iid}/notes", project_path(project));
    let body = json!({"body": comment});
    api.call(Method::POST, &path, auth, Some(&body), "commenting")
        .await?;
    let what = format!("closing merge request !{iid}");
    merge_request(api, auth, project, iid)
        .send(json!({"state_event": "close"}), &what)
        .await
}

/// GitLab's version as `GET /version` gives it (`17.10.2-ee`): major and minor, or `None` when
/// it cannot be read (a token without the scope, say).
pub async fn version(api: &Api, auth: &Auth) -> Option<(u64, u64)> {
    #[derive(Deserialize)]
    struct Version {
        version: String,
    }
    let reply = api
        .call(
            Method::GET,
            "/version",
            auth,
            None,
            "reading GitLab's version",
        )
        .await
        .ok()?;
    let v: Version = reply.json("GitLab's version").ok()?;
    let mut parts = v.version.split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether a GitLab of `version` knows `auto_merge` (17.11 and later).
fn auto_merge_known(version: Option<(u64, u64)>) -> bool {
    version.is_some_and(|v| v >= (17, 11))
}

pub async fn merge(
    api: &Api,
    auth: &Auth,
    project: &str,
    request: &Request,
    head: &str,
    settings: &PullRequest,
    version: Option<(u64, u64)>,
) -> Result<Merge, ForgeError> {
    let url = api.url(&format!(
        "{}/merge_requests/{}/merge",
        project_path(project),
        request.number
    ))?;
    let when_ready = if auto_merge_known(version) {
        "auto_merge"
    } else {
        "merge_when_pipeline_succeeds"
    };
    let mut body = json!({
        "sha": head,
        "squash": settings.merge_method == MergeMethod::Squash,
    });
    body[when_ready] = json!(true);
    let reply = api.send(Method::PUT, url, Some(auth), Some(&body)).await?;
    match reply.status.as_u16() {
        200 => {
            let mr: MergeRequest = reply.json("merging")?;
            Ok(if mr.state == "merged" {
                Merge::Merged
            } else {
                Merge::Scheduled
            })
        }
        // 405: not mergeable now; 406: cannot be merged (conflicts); 409: sha is not the
        // head; 422: the merge failed.
        405 | 406 | 409 | 422 => Ok(Merge::NotYet(reply.message())),
        _ => Err(ForgeError::refused("merging", &reply)),
    }
}

/// Takes `Draft:` off the merge request's title.
pub async fn mark_ready(api: &Api, auth: &Auth, project: &str, iid: u64) -> Result<(), ForgeError> {
    merge_request(api, auth, project, iid).mark_ready().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn auto_merge_from_17_11_on() {
        for (version, known) in [
            (None, false),
            (Some((16, 11)), false),
            (Some((17, 10)), false),
            (Some((17, 11)), true),
            (Some((18, 0)), true),
        ] {
            assert_eq!(super::auto_merge_known(version), known, "{version:?}");
        }
    }
}
