//! The supply-chain gate end to end: the real binary against the real distribution registry
//! and the real git server, with images signed and attested in the test exactly as cosign lays
//! them out ([`harness::cosign`]), by keys the test makes with openssl.
//!
//! Only a digest signed by the configured key is written; every other candidate is skipped
//! with its reason (in `status`, `plan` and `test`), and the next eligible tag is taken.

mod harness;

use harness::cosign::{self, Key};
use harness::world::World;
use harness::{PushAuth, push_index};

const FILE: &str = "prod/kustomization.yaml";
const OVERLAY: &str = "\
images:
  - name: REGISTRY/org/api
    newTag: v1.0.0
  - name: REGISTRY/org/multi
    newTag: v1.0.0
  - name: REGISTRY/org/built
    newTag: v1.0.0
";

fn target(host: &str, repo: &str) -> String {
    format!(
        "[[images.{alias}.targets]]\nkind = \"kustomization\"\nfile = \"{{environment}}/kustomization.yaml\"\nname = \"{host}/org/{repo}\"\n",
        alias = repo
    )
}

/// The registry and the git server with the overlay on `deploy/prod`; the registry's host
/// (as image names use it) and url (for pushing).
async fn prod_world() -> (World, String, String) {
    let world = World::new(&[(FILE, OVERLAY)], &["deploy/prod"]).await;
    let (host, base) = (world.host(), world.registry.url());
    (world, host, base)
}

/// The `api` image in prod, verified by `key`, with `extra` keys.
fn api_signed_by(host: &str, key: &Key, extra: &str) -> String {
    format!(
        "\n[images.api]\nimage = \"{host}/org/api\"\nenvironments = [\"prod\"]\n{extra}verify = {{ cosign_key = \"file:{}\" }}\n{}",
        key.public.display(),
        target(host, "api")
    )
}

/// Writes the config: the world's registry and repository, `envs`, and `images`.
fn configure(world: &World, envs: &[&str], images: &str) {
    let mut config = world.base_config(envs);
    config.push_str(images);
    world.write_config(&config);
}

/// Whether the api entry holds `tag` at `digest` (kustomize's `newTag` and `digest`).
fn holds(world: &World, tag: &str, digest: &str) -> bool {
    let file = world.file_on("deploy/prod", FILE);
    file.contains(&format!("newTag: {tag}")) && file.contains(&format!("digest: {digest}"))
}

fn stdout(world: &World, args: &[&str]) -> (bool, String) {
    let out = world.run(args);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn status(world: &World, alias: &str) -> serde_json::Value {
    let out = world.run(&["status", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| r["image"] == alias)
        .cloned()
        .unwrap()
}

/// Signed written; unsigned, another key's and a copied signature skipped with their reasons;
/// a signature added later found on the next poll; a re-pushed tag with a new unsigned digest
/// not written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_the_key_signed_is_written() {
    let (world, host, base) = prod_world().await;
    let ours = Key::generate(world.dir.path(), "ours");
    let theirs = Key::generate(world.dir.path(), "theirs");
    configure(
        &world,
        &["prod"],
        &api_signed_by(&host, &ours, "pin_digest = true\n"),
    );
    world.push("org/api", "v1.0.0").await;

    // A signed release is written, with its digest.
    let v110 = world.push("org/api", "v1.1.0").await;
    cosign::sign(&base, &host, "org/api", &v110, &ours).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(holds(&world, "v1.1.0", &v110), "{out}");

    // Unsigned, signed by another key, and carrying a signature copied from v1.1.0: none is
    // eligible, each says why, and the file keeps v1.1.0.
    let v120 = world.push("org/api", "v1.2.0").await;
    let v130 = world.push("org/api", "v1.3.0").await;
    cosign::sign(&base, &host, "org/api", &v130, &theirs).await;
    let v140 = world.push("org/api", "v1.4.0").await;
    let copied = cosign::payload(&format!("{host}/org/api"), &v110);
    cosign::sign_payload(&base, "org/api", &v140, &copied, &ours).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        holds(&world, "v1.1.0", &v110),
        "an unverified tag was written: {out}"
    );
    let row = status(&world, "api");
    let unverified = row["unverified"].as_str().unwrap_or_default();
    assert!(
        unverified.contains("v1.4.0: the signature by key sha256:")
            && unverified.contains(&format!("found for {v140} signs {v110} instead")),
        "{row}"
    );
    assert!(
        unverified.contains("v1.3.0: no signature by key sha256:")
            && unverified.contains(&format!("for {v130}: 1 signature by others")),
        "{row}"
    );
    assert!(
        unverified.contains(&format!("v1.2.0: no cosign signature for {v120}")),
        "{row}"
    );
    let (ok, plan) = stdout(&world, &["plan"]);
    assert!(ok, "{plan}");
    assert!(
        plan.contains(&format!(
            "# api (prod): not eligible: v1.2.0: no cosign signature for {v120}"
        )),
        "{plan}"
    );
    let (_, test) = stdout(&world, &["test", "api", "--env", "prod"]);
    assert!(test.contains("no cosign signature"), "{test}");
    assert!(
        test.contains("verify: the digest must carry a cosign signature"),
        "{test}"
    );

    // Signed properly later (another layer on the same .sig): found on the next poll, since
    // a failure is never remembered.
    cosign::sign(&base, &host, "org/api", &v140, &ours).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(holds(&world, "v1.4.0", &v140), "{out}");
    let row = status(&world, "api");
    assert!(
        row["unverified"].is_null() || !row["unverified"].as_str().unwrap().contains("v1.4.0"),
        "{row}"
    );

    // v1.4.0 pushed again over the signed one, unsigned: its new digest is not written.
    let again = world.push("org/api", "v1.4.0").await;
    assert_ne!(again, v140);
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    let file = world.file_on("deploy/prod", FILE);
    assert!(
        holds(&world, "v1.4.0", &v140) && !file.contains(&again),
        "{file}"
    );
    assert!(
        status(&world, "api")["unverified"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("v1.4.0: no cosign signature for {again}")),
    );
}

/// A multi-platform index is signed at the index level, as `cosign sign` signs what the tag
/// names: that signature is what counts, not the platform images'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_platform_index_is_verified_at_the_index() {
    let (world, host, base) = prod_world().await;
    let key = Key::generate(world.dir.path(), "ours");
    configure(
        &world,
        &["prod"],
        &format!(
            "\n[images.multi]\nimage = \"{host}/org/multi\"\nenvironments = [\"prod\"]\nplatforms = [\"linux/amd64\", \"linux/arm64\"]\n\n[images.multi.verify]\ncosign_keys = [\"file:{}\"]\n\n{}",
            key.public.display(),
            target(&host, "multi")
        ),
    );
    let platforms = ["linux/amd64", "linux/arm64"];
    let at = "2026-01-01T00:00:00Z";
    push_index(
        &base,
        &PushAuth::None,
        "org/multi",
        "v1.0.0",
        at,
        &platforms,
    )
    .await;
    // v1.1.0: only a platform image is signed, not the index the tag names.
    let v110 = push_index(
        &base,
        &PushAuth::None,
        "org/multi",
        "v1.1.0",
        at,
        &platforms,
    )
    .await;
    let index: serde_json::Value = serde_json::from_slice(
        &reqwest::Client::new()
            .get(format!("{base}/v2/org/multi/manifests/{v110}"))
            .header("accept", "application/vnd.oci.image.index.v1+json")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let amd64 = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    cosign::sign(&base, &host, "org/multi", &amd64, &key).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.0.0")
    );
    assert!(
        status(&world, "multi")["unverified"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("v1.1.0: no cosign signature for {v110}")),
    );
    // The index signed: written.
    cosign::sign(&base, &host, "org/multi", &v110, &key).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    let file = world.file_on("deploy/prod", FILE);
    assert!(
        file.contains(&format!("{host}/org/multi\n    newTag: v1.1.0")),
        "{file}"
    );
}

/// With an attestation rule, a signature is not enough: the key must also have attested the
/// digest with the predicate type, and the named field must have the value asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attestation_rule_needs_the_provenance_it_names() {
    let (world, host, base) = prod_world().await;
    let key = Key::generate(world.dir.path(), "ours");
    let slsa = "https://slsa.dev/provenance/v0.2";
    let builder = "https://github.com/acme/builders/.github/workflows/build.yml@refs/heads/main";
    configure(
        &world,
        &["prod"],
        &format!(
            "\n[images.built]\nimage = \"{host}/org/built\"\nenvironments = [\"prod\"]\n\n[images.built.verify]\ncosign_key = \"file:{key}\"\nattestation = {{ predicate_type = \"{slsa}\", field = \"predicate.builder.id\", equals = \"{builder}\" }}\n\n{target}",
            key = key.public.display(),
            target = target(&host, "built")
        ),
    );
    world.push("org/built", "v1.0.0").await;
    let provenance = |id: &str| serde_json::json!({"builder": {"id": id}, "buildType": "https://example.com/build"});
    // v1.1.0: signed and attested by the right builder.
    let v110 = world.push("org/built", "v1.1.0").await;
    cosign::sign(&base, &host, "org/built", &v110, &key).await;
    cosign::attest(
        &base,
        &host,
        "org/built",
        &v110,
        slsa,
        provenance(builder),
        &key,
    )
    .await;
    // v1.2.0: signed, attested, but built elsewhere.
    let v120 = world.push("org/built", "v1.2.0").await;
    cosign::sign(&base, &host, "org/built", &v120, &key).await;
    cosign::attest(
        &base,
        &host,
        "org/built",
        &v120,
        slsa,
        provenance("https://evil.example/builder"),
        &key,
    )
    .await;
    // v1.3.0: signed, with no attestation.
    let v130 = world.push("org/built", "v1.3.0").await;
    cosign::sign(&base, &host, "org/built", &v130, &key).await;

    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.1.0"),
        "{out}"
    );
    let unverified = status(&world, "built")["unverified"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        unverified.contains(&format!(
            "v1.3.0: no `{slsa}` attestation for {v130} signed by the configured key"
        )),
        "{unverified}"
    );
    assert!(
        unverified.contains("v1.2.0: no `https://slsa.dev/provenance/v0.2` attestation")
            && unverified.contains("`predicate.builder.id` is `https://evil.example/builder`"),
        "{unverified}"
    );
}

/// A promotion is verified again under the target environment's rules: what dev runs
/// unsigned does not reach prod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_is_verified_in_the_target_environment() {
    let files = [
        ("dev/kustomization.yaml", OVERLAY),
        ("prod/kustomization.yaml", OVERLAY),
    ];
    let world = World::new(&files, &["deploy/dev", "deploy/prod"]).await;
    let host = world.host();
    let base = world.registry.url();
    let key = Key::generate(world.dir.path(), "ours");
    configure(
        &world,
        &["dev", "prod"],
        &format!(
            "\n[images.api]\nimage = \"{host}/org/api\"\nenvironments = [\"dev\", \"prod\"]\n\n[images.api.env.prod]\npromote_from = \"dev\"\nverify = {{ cosign_key = \"file:{}\" }}\n\n{}",
            key.public.display(),
            target(&host, "api")
        ),
    );
    world.push("org/api", "v1.0.0").await;
    let v110 = world.push("org/api", "v1.1.0").await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/dev", "dev/kustomization.yaml")
            .contains("newTag: v1.1.0")
    );
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.0.0"),
        "an unsigned image was promoted: {out}"
    );
    let row = status(&world, "api");
    let prod = world.run(&["status", "--output", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&prod.stdout).unwrap();
    let prod = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["environment"] == "prod")
        .unwrap();
    assert!(
        prod["waiting"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("not promoted: no cosign signature for {v110}")),
        "{prod} {row}"
    );
    cosign::sign(&base, &host, "org/api", &v110, &key).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", "prod/kustomization.yaml")
            .contains("newTag: v1.1.0"),
        "{out}"
    );
}

/// Keyless signatures: the certificate must come from the trusted root's authority, name the
/// configured identity and issuer, and have been valid when it signed (the offline bundle's
/// time, verified with the transparency log's key, for this very signature).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_signatures_name_who_signed() {
    let (world, host, base) = prod_world().await;
    let dir = world.dir.path();
    let fulcio = cosign::Fulcio::new(dir, "fulcio");
    let stranger_ca = cosign::Fulcio::new(dir, "stranger");
    let rekor = cosign::Rekor::new(dir);
    let root = dir.join("trusted_root.json");
    std::fs::write(&root, cosign::trusted_root(&fulcio, &rekor)).unwrap();
    let workflow = "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main";
    let actions = "https://token.actions.githubusercontent.com";
    configure(
        &world,
        &["prod"],
        &format!(
            "\n[images.api]\nimage = \"{host}/org/api\"\nenvironments = [\"prod\"]\n\n[images.api.verify]\ncertificate_identity = \"{workflow}\"\ncertificate_oidc_issuer = \"{actions}\"\ntrusted_root = \"file:{}\"\n\n{}",
            root.display(),
            target(&host, "api")
        ),
    );
    // Logged as it is signed, after its certificate was issued.
    let now = || jiff::Timestamp::now().as_second();
    let logged_now =
        |payload: &[u8], sig: &str, cert: &str| Some(rekor.bundle(payload, sig, cert, now()));
    world.push("org/api", "v1.0.0").await;

    // v1.1.0: the release workflow, logged now.
    let v110 = world.push("org/api", "v1.1.0").await;
    let (key, cert) = fulcio.issue("release", workflow, actions);
    cosign::sign_keyless(&base, &host, "org/api", &v110, &key, &cert, |p, s| {
        logged_now(p, s, &cert)
    })
    .await;
    // v1.2.0: a person, not the workflow.
    let v120 = world.push("org/api", "v1.2.0").await;
    let (bob, bob_cert) = fulcio.issue("bob", "bob@example.com", "https://accounts.google.com");
    cosign::sign_keyless(&base, &host, "org/api", &v120, &bob, &bob_cert, |p, s| {
        logged_now(p, s, &bob_cert)
    })
    .await;
    // v1.3.0: the workflow's name, on a certificate from an authority the root does not name.
    let v130 = world.push("org/api", "v1.3.0").await;
    let (forged, forged_cert) = stranger_ca.issue("forged", workflow, actions);
    cosign::sign_keyless(
        &base,
        &host,
        "org/api",
        &v130,
        &forged,
        &forged_cert,
        |p, s| logged_now(p, s, &forged_cert),
    )
    .await;
    // v1.4.0: logged two days before its certificate was valid.
    let v140 = world.push("org/api", "v1.4.0").await;
    let (early, early_cert) = fulcio.issue("early", workflow, actions);
    cosign::sign_keyless(
        &base,
        &host,
        "org/api",
        &v140,
        &early,
        &early_cert,
        |p, s| Some(rekor.bundle(p, s, &early_cert, now() - 2 * 86_400)),
    )
    .await;
    // v1.5.0: a bundle that records another signature (v1.1.0's).
    let v150 = world.push("org/api", "v1.5.0").await;
    let (late, late_cert) = fulcio.issue("late", workflow, actions);
    let other_payload = cosign::payload(&format!("{host}/org/api"), &v110);
    let other_sig = late.sign(other_payload.as_bytes());
    cosign::sign_keyless(&base, &host, "org/api", &v150, &late, &late_cert, |_, _| {
        Some(rekor.bundle(other_payload.as_bytes(), &other_sig, &late_cert, now()))
    })
    .await;

    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains(&format!("{host}/org/api\n    newTag: v1.1.0")),
        "{out}"
    );
    let unverified = status(&world, "api")["unverified"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    for needle in [
        format!("v1.5.0: a keyless signature for {v150}: its bundle records another signature"),
        format!("v1.4.0: a keyless signature for {v140}: signed at "),
        "outside its certificate's validity".to_string(),
        format!(
            "v1.3.0: a keyless signature for {v130}: its certificate was not issued by an authority of the trusted root"
        ),
        format!(
            "v1.2.0: a keyless signature for {v120}: signed by bob@example.com, not {workflow}"
        ),
    ] {
        assert!(
            unverified.contains(&needle),
            "{needle} missing from {unverified}"
        );
    }

    // v1.6.0: the workflow, without a bundle: its certificate is valid now, which is enough.
    let v160 = world.push("org/api", "v1.6.0").await;
    let (key, cert) = fulcio.issue("plain", workflow, actions);
    cosign::sign_keyless(&base, &host, "org/api", &v160, &key, &cert, |_, _| None).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains(&format!("{host}/org/api\n    newTag: v1.6.0")),
        "{out}"
    );
}

/// A registry with the OCI 1.1 referrers API: a signature cosign pushed in its referrers mode
/// (untagged, naming the image as its subject) is found there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_found_through_the_referrers_api() {
    let (world, host, base) = prod_world().await;
    let front = harness::referrers::Referrers::start(base.clone()).await;
    let key = Key::generate(world.dir.path(), "ours");
    let mut config = world.base_config(&["prod"]).replace(
        &format!("api_url = \"http://{host}\""),
        &format!("api_url = \"{}\"", front.url()),
    );
    assert!(config.contains(&front.url()));
    config.push_str(&api_signed_by(&host, &key, ""));
    world.write_config(&config);
    world.push("org/api", "v1.0.0").await;
    let v110 = world.push("org/api", "v1.1.0").await;
    let v120 = world.push("org/api", "v1.2.0").await;
    // v1.2.0 has a referrer, but it is v1.1.0's signature: not counted for v1.2.0.
    let signature = cosign::sign_as_referrer(&base, &host, "org/api", &v110, &key).await;
    front.refer(&v120, signature.clone());
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.0.0"),
        "{out}"
    );
    assert!(
        status(&world, "api")["unverified"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("signs {v110} instead")),
    );
    // Listed for v1.1.0, where it belongs: v1.1.0 is written (v1.2.0 still is not).
    front.refer(&v110, signature);
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.1.0"),
        "{out}"
    );
}

/// A poll looks past at most sixteen winners that fail the rules (each costs requests): with
/// more unsigned builds above the last signed release, nothing older is checked until some
/// are signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_looks_past_at_most_sixteen_unsigned_tags() {
    let (world, host, base) = prod_world().await;
    let key = Key::generate(world.dir.path(), "ours");
    configure(&world, &["prod"], &api_signed_by(&host, &key, ""));
    world.push("org/api", "v1.0.0").await;
    let v110 = world.push("org/api", "v1.1.0").await;
    cosign::sign(&base, &host, "org/api", &v110, &key).await;
    let mut newest = String::new();
    for minor in 2..=18 {
        newest = world.push("org/api", &format!("v1.{minor}.0")).await;
    }
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.0.0"),
        "{out}"
    );
    let unverified = status(&world, "api")["unverified"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        unverified.matches("no cosign signature").count(),
        16,
        "{unverified}"
    );
    assert!(!unverified.contains("v1.2.0"), "{unverified}");
    // The newest signed: written.
    cosign::sign(&base, &host, "org/api", &newest, &key).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.18.0"),
        "{out}"
    );
}

/// A signed tag seen once (by `plan`), then pushed over with unsigned content: with the default
/// `tags = "immutable"` and no `pin_digest`, the digest remembered from the sighting was the one
/// verified, and the unsigned content was committed under the old signature. What is verified
/// is the digest the tag names when the decision is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_tag_pushed_over_unsigned_is_not_written() {
    let (world, host, base) = prod_world().await;
    let ours = Key::generate(world.dir.path(), "ours");
    configure(&world, &["prod"], &api_signed_by(&host, &ours, ""));
    world.push("org/api", "v0.9.0").await;
    let v100 = world.push("org/api", "v1.0.0").await;
    cosign::sign(&base, &host, "org/api", &v100, &ours).await;
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.0.0"),
        "{out}"
    );

    // v1.6.0, signed, is seen once: plan resolves and remembers its digest.
    let v160 = world.push("org/api", "v1.6.0").await;
    cosign::sign(&base, &host, "org/api", &v160, &ours).await;
    let (ok, plan) = stdout(&world, &["plan"]);
    assert!(ok && plan.contains("v1.6.0"), "{plan}");

    // Pushed over with other content, unsigned.
    let again = world.push("org/api", "v1.6.0").await;
    assert_ne!(again, v160);
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    let file = world.file_on("deploy/prod", FILE);
    assert!(
        file.contains("newTag: v1.0.0") && !file.contains("v1.6.0"),
        "the unsigned re-push was written: {file}\n{out}"
    );
    assert!(
        status(&world, "api")["unverified"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("v1.6.0: no cosign signature for {again}")),
        "{out}"
    );
    // `test` shows what was checked: a lower tag is eligible by the policy, its signature
    // unknown; cosign's own `sha256-….sig` tags are no candidates.
    let (_, test) = stdout(&world, &["test", "api", "--env", "prod"]);
    let v090 = test
        .lines()
        .find(|l| l.contains("v0.9.0"))
        .unwrap_or_default();
    assert!(v090.contains("(its signature was not checked)"), "{test}");
    assert!(!test.contains("sha256-"), "{test}");
    // The table says so too, not only `status --long`.
    let (_, table) = stdout(&world, &["status"]);
    assert!(
        table.contains(&format!(
            "up to date; newer refused: v1.6.0: no cosign signature for {again}"
        )),
        "{table}"
    );
}
