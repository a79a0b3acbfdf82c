//! Registry push events as senders deliver them to `POST /webhook`: signed with the secret
//! [`crate::harness::world::World::webhooks`] configures.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The webhook secret the harness configures.
pub const SECRET: &str = "hook-s3cret";

/// `X-Hub-Signature-256` of `body` under `secret`.
pub fn sign(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// Posts `body` signed with [`SECRET`]; returns the status.
pub async fn deliver_signed(client: &reqwest::Client, url: &str, body: &str) -> u16 {
    client
        .post(url)
        .header("x-hub-signature-256", sign(SECRET, body))
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A distribution notification of `repo:tag` pushed as the image manifest `digest` to the
/// registry at `host`, in the shape distribution sends (`target.mediaType`, `digest`,
/// `repository`, `tag`; `request.host`).
pub fn pushed_event(host: &str, repo: &str, tag: &str, digest: &str) -> String {
    format!(
        r#"{{"events":[{{"action":"push","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{digest}","repository":"{repo}","tag":"{tag}"}},"request":{{"host":"{host}"}}}}]}}"#
    )
}

/// The kustomization the webhook tests' daemons write, `REGISTRY/org/api` at `v1.0.0` (the
/// world puts the registry's host in).
pub const OVERLAY: &str = "\
images:
  - name: REGISTRY/org/api
    newTag: v1.0.0   # managed by image-updater
";

/// The image `api` at `host`, written into [`OVERLAY`] at `prod/kustomization.yaml` and polled
/// hourly: in a test, anything sooner was a push's doing.
pub fn api(host: &str) -> String {
    format!(
        r#"
[images.api]
image = "{host}/org/api"
interval = "1h"
[[images.api.targets]]
kind = "kustomization"
file = "prod/kustomization.yaml"
name = "{host}/org/api"
"#
    )
}
