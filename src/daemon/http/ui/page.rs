//! The status page's HTML: written out here, every value from outside escaped on the way in
//! ([`esc`]). Semantic tables with captions and header cells, labelled forms, a state always
//! said in words beside its mark (colour is never the only signal), and nothing that needs
//! the script to be read.

use std::fmt::Write as _;

use super::auth::Access;
use super::{Detail, Facts, Matrix};
use crate::daemon::overview::{Row, State};
use crate::daemon::safety::human;

pub const SCRIPT: &str = include_str!("app.js");
pub const STYLE: &str = include_str!("style.css");

/// Text made safe for HTML, in an element or in a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `text` percent-encoded for a path segment or a query value.
pub fn path_segment(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn layout(title: &str, who: &str, generation: Option<&str>, body: &str) -> String {
    let generation = generation
        .map(|g| format!(" data-generation=\"{}\"", esc(g)))
        .unwrap_or_default();
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} · image-updater</title>\n<link rel=\"stylesheet\" href=\"/ui/style.css\">\n<script src=\"/ui/app.js\" defer></script>\n</head>\n<body>\n<a class=\"skip\" href=\"#main\">Skip to the content</a>\n<header>\n<p class=\"brand\"><a href=\"/\">image-updater</a></p>\n{who}\n</header>\n<main id=\"main\"{generation}>\n{body}</main>\n<p id=\"live\" class=\"live\" role=\"status\" aria-live=\"polite\"></p>\n</body>\n</html>\n",
        esc(title)
    )
}

/// The header's account of the session, with sign-in or sign-out.
fn who(access: &Access) -> String {
    match access {
        Access::Act {
            by,
            csrf: Some(csrf),
        } => format!(
            "<form class=\"session\" method=\"post\" action=\"/ui/logout\"><span>Signed in as <strong>{}</strong>, may act</span> <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
            esc(by),
            esc(csrf)
        ),
        Access::Act { by, csrf: None } => {
            format!("<p class=\"session\">Acting as {}</p>", esc(by))
        }
        _ => sign_in_form("session"),
    }
}

fn sign_in_form(class: &str) -> String {
    format!(
        "<form class=\"{class}\" method=\"post\" action=\"/ui/login\">\
<label for=\"token-{class}\">Token</label> <input id=\"token-{class}\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required> \
<label for=\"name-{class}\">Your name</label> <input id=\"name-{class}\" name=\"name\" type=\"text\" maxlength=\"64\" autocomplete=\"username\"> \
<button type=\"submit\">Sign in</button></form>"
    )
}

/// The page for a request that may not read: the sign-in form alone.
pub fn sign_in(error: Option<&str>) -> String {
    let mut body = String::from("<h1>Sign in</h1>\n");
    if let Some(e) = error {
        let _ = writeln!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    body.push_str("<p>Reading this page needs a token: the read token of <code>[ui]</code>, or the control token in <code>control.json</code> in the daemon's state dir, which also allows holds, releases and polls.</p>\n");
    body.push_str(&sign_in_form("page"));
    body.push('\n');
    layout("Sign in", "", None, &body)
}

/// The page for a refused post.
pub fn refused(why: &str) -> String {
    let body = format!(
        "<h1>Refused</h1>\n<p class=\"error\" role=\"alert\">{}</p>\n<p><a href=\"/\">Back to the status page</a></p>\n",
        esc(why)
    );
    layout("Refused", "", None, &body)
}

pub fn message(facts: &Facts, title: &str, text: &str, access: &Access) -> String {
    let body = format!("<h1>{}</h1>\n<p>{}</p>\n", esc(title), esc(text));
    layout(title, &who(access), Some(&facts.generation), &body)
}

/// A state's mark and word: the mark for the eye, the word for everyone.
fn badge(state: State) -> String {
    let mark = match state {
        State::UpToDate => "✓",
        State::Pending => "→",
        State::Waiting => "…",
        State::Held => "‖",
        State::Failing => "✗",
        State::Unknown => "?",
    };
    format!(
        "<span class=\"badge {}\"><span aria-hidden=\"true\">{mark}</span> {}</span>",
        state.slug(),
        state.word()
    )
}

/// A value with its digests shortened for the eye, whole in a tooltip.
fn value(v: Option<&str>) -> String {
    match v {
        None => "<span class=\"none\">—</span>".into(),
        Some(v) => {
            let short = crate::reference::short_digests(v);
            if short == v {
                format!("<code>{}</code>", esc(v))
            } else {
                format!("<code title=\"{}\">{}</code>", esc(v), esc(&short))
            }
        }
    }
}

fn ago(at: Option<&str>) -> String {
    at.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            let since = jiff::Timestamp::now().duration_since(t);
            let words = std::time::Duration::try_from(since)
                .map(|d| format!("{} ago", human(d)))
                .unwrap_or_else(|_| "just now".into());
            format!("<time datetime=\"{t}\">{}</time>", esc(&words))
        })
        .unwrap_or_else(|| "never".into())
}

fn cell(row: &Row) -> String {
    let mut out = format!("{}<br>{}", badge(row.state), value(row.current.as_deref()));
    if row.candidate.is_some() && row.candidate != row.current {
        let _ = write!(
            out,
            "<br><span class=\"label\">candidate</span> {}",
            value(row.candidate.as_deref())
        );
    }
    if row.state != State::UpToDate && row.state_text != "-" {
        let _ = write!(
            out,
            "<br><span class=\"why\">{}</span>",
            esc(&row.state_text)
        );
    }
    out
}

pub fn matrix(facts: &Facts, m: &Matrix, access: &Access) -> String {
    let mut body = String::from("<h1>What runs where</h1>\n");
    // The filter: a plain GET form, bookmarkable.
    let q = &m.query;
    let _ = write!(
        body,
        "<form class=\"filter\" method=\"get\" action=\"/\" role=\"search\" aria-label=\"Filter images\">\
<label for=\"f-image\">Image</label> <input id=\"f-image\" name=\"image\" type=\"search\" value=\"{}\"> ",
        esc(q.image.as_deref().unwrap_or(""))
    );
    body.push_str("<label for=\"f-env\">Environment</label> <select id=\"f-env\" name=\"env\"><option value=\"\">all</option>");
    for e in facts.config.environments.keys() {
        let selected = if q.env.as_deref() == Some(e) {
            " selected"
        } else {
            ""
        };
        let _ = write!(body, "<option{selected}>{}</option>", esc(e));
    }
    body.push_str("</select> <label for=\"f-state\">State</label> <select id=\"f-state\" name=\"state\"><option value=\"\">any</option>");
    for s in State::ALL {
        let selected = if q.state.as_deref() == Some(s.slug()) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            body,
            "<option value=\"{}\"{selected}>{}</option>",
            s.slug(),
            s.word()
        );
    }
    body.push_str("</select> <button type=\"submit\">Filter</button></form>\n");
    let per = facts
        .config
        .ui
        .as_ref()
        .map_or(crate::config::ui::PAGE_SIZE, |u| u.page_size);
    let first = (m.page - 1) * per + 1;
    let last = (first + m.images.len()).saturating_sub(1);
    if m.total == 0 {
        body.push_str("<p>No image matches.</p>\n");
    } else {
        let _ = writeln!(
            body,
            "<p>Images {first} to {last} of {}; page {} of {}.</p>",
            m.total, m.page, m.pages
        );
    }
    body.push_str("<table class=\"matrix\">\n<caption>Each image in each environment: what the branch holds, the candidate, and why it waits</caption>\n<thead><tr><th scope=\"col\">Image</th>");
    for e in &m.environments {
        let branch = facts
            .config
            .environments
            .get(e)
            .map(|x| x.branch.as_str())
            .unwrap_or("");
        let _ = write!(
            body,
            "<th scope=\"col\">{}<br><span class=\"branch\">{}</span></th>",
            esc(e),
            esc(branch)
        );
    }
    body.push_str("</tr></thead>\n<tbody>\n");
    for (alias, cells) in &m.images {
        let first = cells.iter().flatten().next();
        let source = first.map(|r| r.source.as_str()).unwrap_or("");
        let owner = first
            .and_then(|r| r.owner.as_deref())
            .map(|o| format!("<br><span class=\"label\">owner</span> {}", esc(o)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr><th scope=\"row\"><a href=\"/image/{}\">{}</a><br><span class=\"source\">{}</span>{owner}</th>",
            path_segment(alias),
            esc(alias),
            esc(source)
        );
        for c in cells {
            match c {
                Some(row) => {
                    let _ = write!(
                        body,
                        "<td class=\"{}\">{}</td>",
                        row.state.slug(),
                        cell(row)
                    );
                }
                None => body.push_str("<td><span class=\"none\">not deployed</span></td>"),
            }
        }
        body.push_str("</tr>\n");
    }
    body.push_str("</tbody>\n</table>\n");
    pager(&mut body, m);
    registries(&mut body, facts);
    layout(
        "What runs where",
        &who(access),
        Some(&facts.generation),
        &body,
    )
}

fn pager(body: &mut String, m: &Matrix) {
    if m.pages <= 1 {
        return;
    }
    let q = &m.query;
    let link = |page: usize| {
        let mut parts = vec![format!("page={page}")];
        for (k, v) in [("image", &q.image), ("env", &q.env), ("state", &q.state)] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", path_segment(v)));
            }
        }
        format!("/?{}", parts.join("&amp;"))
    };
    body.push_str("<nav aria-label=\"Pages\"><ul class=\"pager\">");
    if m.page > 1 {
        let _ = write!(
            body,
            "<li><a href=\"{}\" rel=\"prev\">Previous page</a></li>",
            link(m.page - 1)
        );
    }
    if m.page < m.pages {
        let _ = write!(
            body,
            "<li><a href=\"{}\" rel=\"next\">Next page</a></li>",
            link(m.page + 1)
        );
    }
    body.push_str("</ul></nav>\n");
}

fn registries(body: &mut String, facts: &Facts) {
    body.push_str("<h2>Registries</h2>\n<table>\n<caption>Each registry's request budget, and how much longer than configured its images' intervals are</caption>\n<thead><tr><th scope=\"col\">Registry</th><th scope=\"col\">Images</th><th scope=\"col\">Budget for polls</th><th scope=\"col\">Needed</th><th scope=\"col\">Lag</th></tr></thead>\n<tbody>\n");
    for r in facts.plan.registries.values() {
        let lag = if r.stretched() {
            format!("intervals {:.2} times as long as configured", r.stretch)
        } else {
            "none: intervals as configured".into()
        };
        let _ = writeln!(
            body,
            "<tr><th scope=\"row\">{}</th><td>{}</td><td>{:.2} of {:.2} requests/s ({})</td><td>{:.3} requests/s</td><td>{}</td></tr>",
            esc(&r.registry),
            r.images,
            r.budget(),
            r.rate,
            esc(&r.source),
            r.demand,
            esc(&lag)
        );
    }
    body.push_str("</tbody>\n</table>\n");
    if let Some(m) = facts.members() {
        let _ = writeln!(
            body,
            "<h2>Cluster</h2>\n<p>This replica is <code>{}</code>. Live replicas: {}. Each image's owner is shown beside it; every replica shows the whole cluster, read from etcd.</p>",
            esc(&m.me),
            if m.live.is_empty() {
                "none".into()
            } else {
                m.live
                    .iter()
                    .map(|l| format!("<code>{}</code>", esc(l)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    }
}

pub fn image(facts: &Facts, d: &Detail, access: &Access) -> String {
    let mut body = format!(
        "<p><a href=\"/\">All images</a></p>\n<h1>{}</h1>\n",
        esc(&d.alias)
    );
    if let Some(said) = &d.said {
        let _ = writeln!(body, "<p class=\"said\" role=\"status\">{}</p>", esc(said));
    }
    let csrf = match access {
        Access::Act { csrf, .. } => Some(csrf.clone().unwrap_or_default()),
        _ => None,
    };
    if let Some(csrf) = &csrf {
        let _ = writeln!(
            body,
            "<form method=\"post\" action=\"/ui/poll\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"image\" value=\"{}\"><button type=\"submit\" id=\"poll-all\">Poll now (every environment)</button></form>",
            esc(csrf),
            esc(&d.alias)
        );
    } else {
        body.push_str(
            "<p class=\"note\">Sign in with the control token to hold, release or poll.</p>\n",
        );
    }
    for row in &d.rows {
        let env = &row.environment;
        let id = path_segment(env);
        let _ = writeln!(
            body,
            "<section aria-labelledby=\"env-{id}\">\n<h2 id=\"env-{id}\">{}</h2>",
            esc(env)
        );
        body.push_str("<dl class=\"facts\">");
        let mut fact = |name: &str, value: String| {
            let _ = write!(body, "<dt>{}</dt><dd>{value}</dd>", esc(name));
        };
        fact(
            "State",
            format!(
                "{} <span class=\"why\" id=\"state-{id}\">{}</span>",
                badge(row.state),
                esc(&row.state_text)
            ),
        );
        fact("Branch", format!("<code>{}</code>", esc(&row.branch)));
        fact("On the branch", value(row.current.as_deref()));
        fact("Digest", value(row.digest.as_deref()));
        fact("Candidate", value(row.candidate.as_deref()));
        if let Some(w) = &row.waiting {
            fact("Waiting", esc(w));
        }
        if let Some(u) = &row.unverified {
            fact("Refused by the signature rules", esc(u));
        }
        if let Some(h) = &row.hold {
            fact("Hold", esc(h));
        }
        if let Some(r) = &row.request {
            fact("Pull request", link(r));
        }
        if let Some(o) = &row.owner {
            fact("Owner", esc(o));
        }
        fact("Checked", ago(row.last_check.as_deref()));
        fact(
            "Polled every",
            esc(&human(std::time::Duration::from_secs_f64(
                row.interval_seconds.max(0.0),
            ))),
        );
        if let Some(e) = &row.last_error {
            fact(
                "Last error",
                format!("<span class=\"error\">{}</span>", esc(e)),
            );
        }
        body.push_str("</dl>\n");
        if let Some(csrf) = &csrf {
            actions(&mut body, csrf, &d.alias, env, &id);
        }
        writes(&mut body, d, env);
        tags(&mut body, d, env);
        body.push_str("</section>\n");
    }
    body.push_str("<h2>Holds, releases and polls</h2>\n");
    if d.actions.is_empty() {
        body.push_str("<p>None recorded.</p>\n");
    } else {
        body.push_str("<table><caption>Who held, released or polled this image, newest first</caption><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Who</th><th scope=\"col\">What</th><th scope=\"col\">Environment</th><th scope=\"col\">Detail</th></tr></thead><tbody>\n");
        for a in &d.actions {
            let _ = writeln!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                ago(Some(&a.at)),
                esc(&a.by),
                esc(&a.action),
                esc(&a.environment),
                esc(a.detail.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</tbody></table>\n");
    }
    layout(&d.alias, &who(access), Some(&facts.generation), &body)
}

/// A link to a URL from outside, only when it is http(s); otherwise the text.
fn link(url: &str) -> String {
    if url.starts_with("https://") || url.starts_with("http://") {
        format!(
            "<a href=\"{}\" rel=\"noreferrer\">{}</a>",
            esc(url),
            esc(url)
        )
    } else {
        esc(url)
    }
}

fn actions(body: &mut String, csrf: &str, alias: &str, env: &str, id: &str) {
    let hidden = format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"image\" value=\"{}\"><input type=\"hidden\" name=\"env\" value=\"{}\">",
        esc(csrf),
        esc(alias),
        esc(env)
    );
    let _ = write!(
        body,
        "<div class=\"actions\">\
<form method=\"post\" action=\"/ui/hold\" aria-label=\"Hold in {env_e}\">{hidden}\
<label for=\"for-{id}\">Hold for</label> <input id=\"for-{id}\" name=\"for\" type=\"text\" placeholder=\"24h\" size=\"6\"> \
<label for=\"until-{id}\">or until (UTC)</label> <input id=\"until-{id}\" name=\"until\" type=\"datetime-local\"> \
<label for=\"reason-{id}\">Reason</label> <input id=\"reason-{id}\" name=\"reason\" type=\"text\" maxlength=\"500\"> \
<button type=\"submit\" id=\"hold-{id}\">Hold</button></form>\
<form method=\"post\" action=\"/ui/release\">{hidden}<button type=\"submit\" id=\"release-{id}\">Release</button></form>\
<form method=\"post\" action=\"/ui/poll\">{hidden}<button type=\"submit\" id=\"poll-{id}\">Poll now</button></form>\
</div>",
        env_e = esc(env)
    );
}

fn writes(body: &mut String, d: &Detail, env: &str) {
    let Some((_, writes)) = d.writes.iter().find(|(e, _)| e == env) else {
        return;
    };
    body.push_str("<h3>Recent writes</h3>\n");
    if writes.is_empty() {
        body.push_str("<p>None yet.</p>\n");
        return;
    }
    let _ = write!(
        body,
        "<table><caption>The last writes to {}, newest first</caption><thead><tr><th scope=\"col\">When</th><th scope=\"col\">Change</th><th scope=\"col\">Commit</th><th scope=\"col\">Pull request</th></tr></thead><tbody>",
        esc(env)
    );
    for w in writes {
        let short: String = w.commit.chars().take(12).collect();
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td><code title=\"{}\">{}</code></td><td>{}</td></tr>",
            ago(Some(&w.at)),
            esc(&crate::reference::short_digests(&w.change)),
            esc(&w.commit),
            esc(&short),
            w.request.as_deref().map(link).unwrap_or_else(|| "—".into())
        );
    }
    body.push_str("</tbody></table>\n");
}

fn tags(body: &mut String, d: &Detail, env: &str) {
    let Some((_, seen)) = d.tags.iter().find(|(e, _)| e == env) else {
        return;
    };
    body.push_str("<h3>Tags seen</h3>\n");
    let Some(seen) = seen else {
        body.push_str("<p>Not checked by this replica since it started.</p>\n");
        return;
    };
    let _ = write!(
        body,
        "<table><caption>The last check's verdicts: the candidate, then the highest of the {} tags ({})</caption><thead><tr><th scope=\"col\">Tag</th><th scope=\"col\">Verdict</th><th scope=\"col\">Why</th></tr></thead><tbody>",
        seen.total,
        ago(Some(&seen.at))
    );
    for v in &seen.verdicts {
        let verdict = if v.chosen {
            "chosen"
        } else if v.eligible {
            "eligible, ranked lower"
        } else {
            "rejected"
        };
        let _ = writeln!(
            body,
            "<tr><td><code>{}</code></td><td>{verdict}</td><td>{}</td></tr>",
            esc(&v.tag),
            esc(&v.reason)
        );
    }
    body.push_str("</tbody></table>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_from_outside_cannot_make_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(esc("a\u{1b}[31mb"), "a\u{fffd}[31mb");
        assert_eq!(path_segment("web api/x"), "web%20api%2Fx");
        assert_eq!(link("javascript:alert(1)"), "javascript:alert(1)");
        assert!(link("https://forge/pr/1").starts_with("<a href="));
    }
}
