//! The supply-chain gate end to end: the real binary against the real distribution registry
//! and the real git server, with images signed and attested in the test exactly as cosign lays
//! them out ([`harness::cosign`]), by keys the test makes with openssl.
//!
//! Only a digest signed by the configured key is written; every other candidate is skipped
//! with its reason (in `status`, `plan` and `test`), and the next eligible tag is taken.

mod harness;

use harness::cosign::{self, Key};
use harness::need::{self, Component};
use harness::sigstore::{self, Spelling};
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

/// `once`, which must succeed and leave `tag` in prod's kustomization; its output.
fn once_writes(world: &World, tag: &str) -> String {
    let (ok, out) = stdout(world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains(&format!("newTag: {tag}")),
        "{tag} not written\n{out}"
    );
    out
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

    once_writes(&world, "v1.1.0");
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
    once_writes(&world, "v1.0.0");
    assert!(
        status(&world, "api")["unverified"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!("signs {v110} instead")),
    );
    // Listed for v1.1.0, where it belongs: v1.1.0 is written (v1.2.0 still is not).
    front.refer(&v110, signature);
    once_writes(&world, "v1.1.0");
}

/// Twenty unsigned builds above the last signed release do not hide it: a poll walks down the
/// ranked candidates until one verifies (up to 64 digests a poll, each refusal remembered per
/// digest). The signature is made from cosign's SIGNATURE_SPEC.md by Python's `cryptography`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_unsigned_tags_above_a_signed_one_do_not_hide_it() {
    if need::missing(
        "twenty_unsigned_tags_above_a_signed_one_do_not_hide_it",
        &[Component::PythonCryptography],
    ) {
        return;
    }
    let (world, host, base) = prod_world().await;
    let key = sigstore::keypair(world.dir.path(), "ours");
    configure(&world, &["prod"], &api_signed_by(&host, &key, ""));
    world.push("org/api", "v1.0.0").await;
    let v110 = world.push("org/api", "v1.1.0").await;
    sigstore::sign_spec(&base, "org/api", &v110, &key, Spelling::Cosign);
    let mut newest = String::new();
    for minor in 2..=21 {
        newest = world.push("org/api", &format!("v1.{minor}.0")).await;
    }
    once_writes(&world, "v1.1.0");
    let unverified = status(&world, "api")["unverified"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        unverified.matches("no cosign signature").count(),
        20,
        "{unverified}"
    );
    // The newest signed: written.
    sigstore::sign_spec(&base, "org/api", &newest, &key, Spelling::Cosign);
    once_writes(&world, "v1.21.0");
}

/// SIGNATURE_SPEC.md's own example spells the payload's key `Docker-manifest-digest`; cosign
/// reads the keys in any case, and so must we. Signed by Python's `cryptography`, as the spec
/// says, not by our fixtures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_spelled_as_the_spec_spells_it_verifies() {
    if need::missing(
        "a_signature_spelled_as_the_spec_spells_it_verifies",
        &[Component::PythonCryptography],
    ) {
        return;
    }
    let (world, host, base) = prod_world().await;
    let key = sigstore::keypair(world.dir.path(), "ours");
    let stranger = sigstore::keypair(world.dir.path(), "stranger");
    configure(&world, &["prod"], &api_signed_by(&host, &key, ""));
    let v110 = world.push("org/api", "v1.1.0").await;
    sigstore::sign_spec(&base, "org/api", &v110, &key, Spelling::Spec);
    let v120 = world.push("org/api", "v1.2.0").await;
    sigstore::sign_spec(&base, "org/api", &v120, &stranger, Spelling::Spec);
    let out = once_writes(&world, "v1.1.0");
    assert!(
        status(&world, "api")["unverified"]
            .as_str()
            .unwrap_or_default()
            .contains("v1.2.0: no signature by key"),
        "{out}"
    );
}

/// A signed tag seen once (by `plan`), then pushed over with unsigned content: with the default
/// `tags = "immutable"` and no `pin_digest`, the digest remembered from the sighting was the one
/// verified, and the unsigned content was committed under the old signature. What is verified
/// is the digest the tag names when the decision is made. Signed by Python's `cryptography`
/// following cosign's SIGNATURE_SPEC.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_tag_pushed_over_unsigned_is_not_written() {
    if need::missing(
        "a_signed_tag_pushed_over_unsigned_is_not_written",
        &[Component::PythonCryptography],
    ) {
        return;
    }
    let (world, host, base) = prod_world().await;
    let ours = sigstore::keypair(world.dir.path(), "ours");
    configure(&world, &["prod"], &api_signed_by(&host, &ours, ""));
    world.push("org/api", "v0.9.0").await;
    let v100 = world.push("org/api", "v1.0.0").await;
    sigstore::sign_spec(&base, "org/api", &v100, &ours, Spelling::Cosign);
    once_writes(&world, "v1.0.0");

    // v1.6.0, signed, is seen once: plan resolves and remembers its digest.
    let v160 = world.push("org/api", "v1.6.0").await;
    sigstore::sign_spec(&base, "org/api", &v160, &ours, Spelling::Cosign);
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

/// The verify rule for keyless signatures by the release workflow, under `root`.
fn api_keyless(host: &str, root: &std::path::Path, extra: &str) -> String {
    format!(
        "\n[images.api]\nimage = \"{host}/org/api\"\nenvironments = [\"prod\"]\n\n[images.api.verify]\ncertificate_identity = \"{WORKFLOW}\"\ncertificate_oidc_issuer = \"{ACTIONS}\"\ntrusted_root = \"file:{}\"\n{extra}\n{}",
        root.display(),
        target(host, "api")
    )
}

const WORKFLOW: &str = "https://github.com/acme/api/.github/workflows/release.yml@refs/heads/main";
const ACTIONS: &str = "https://token.actions.githubusercontent.com";

fn unverified(world: &World) -> String {
    status(world, "api")["unverified"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// cosign 3's format, made by sigstore-js and attached by `@sigstore/oci`: a Sigstore bundle as
/// an OCI referrer. On a registry without the referrers API (Debian's distribution) it is
/// listed in the referrers tag schema's index at `sha256-<hex>`; in front of one with the API,
/// only there. A DSSE bundle of cosign's sign predicate and a message signature over the
/// manifest both count; another key's bundle, an attestation that is not a signature, and a
/// bundle copied from another image do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cosign_3_bundles_as_referrers_and_under_the_fallback_tag() {
    if need::missing(
        "cosign_3_bundles_as_referrers_and_under_the_fallback_tag",
        &[Component::PythonCryptography, Component::SigstoreJs],
    ) {
        return;
    }
    let (world, host, base) = prod_world().await;
    let dir = world.dir.path();
    let ours = sigstore::keypair(dir, "ours");
    let stranger = sigstore::keypair(dir, "stranger");
    configure(&world, &["prod"], &api_signed_by(&host, &ours, ""));
    let v110 = world.push("org/api", "v1.1.0").await;
    let v120 = world.push("org/api", "v1.2.0").await;
    let v130 = world.push("org/api", "v1.3.0").await;
    let v140 = world.push("org/api", "v1.4.0").await;
    let v150 = world.push("org/api", "v1.5.0").await;
    let key = |k: &Key| k.private.to_str().unwrap().to_string();
    sigstore::sigstore_js(
        &host,
        dir,
        serde_json::json!([
            {"repo": "org/api", "digest": v110, "form": "message", "key": key(&ours), "attach": true},
            {"repo": "org/api", "digest": v120, "form": "dsse", "key": key(&ours), "attach": true},
            {"repo": "org/api", "digest": v130, "form": "dsse", "key": key(&stranger), "attach": true},
            {"repo": "org/api", "digest": v140, "form": "dsse", "key": key(&ours), "attach": true,
             "predicate_type": "https://slsa.dev/provenance/v1", "predicate": {"buildDefinition": {}}},
            {"repo": "org/api", "digest": v110, "attach_to": v150, "form": "message", "key": key(&ours), "attach": true},
        ]),
    );
    // Under the fallback tag: the registry has no referrers API.
    let tags = reqwest::get(format!("{base}/v2/org/api/tags/list"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(tags.contains(&format!("sha256-{}\"", &v120[7..])), "{tags}");
    once_writes(&world, "v1.2.0");
    let why = unverified(&world);
    let bundle =
        |digest: &str, why: &str| format!("the Sigstore bundle attached to {digest}: {why}");
    for expected in [
        format!(
            "v1.5.0: {}",
            bundle(&v150, &format!("signs {v110} instead"))
        ),
        format!(
            "v1.4.0: {}",
            bundle(
                &v140,
                "an attestation of `https://slsa.dev/provenance/v1`, not a signature"
            )
        ),
        format!("v1.3.0: {}", bundle(&v130, "not signed by key sha256:")),
    ] {
        assert!(why.contains(&expected), "{expected}\n{why}");
    }

    // The message signature over the manifest counts as well: v1.1.0 alone, in dev's place.
    configure(
        &world,
        &["prod"],
        &api_signed_by(&host, &ours, "pin = \"v1.1.0\"\n"),
    );
    once_writes(&world, "v1.1.0");

    // A registry with the referrers API: @sigstore/oci writes no fallback tag, and the bundle
    // is found through the API.
    let front = harness::referrers::Referrers::start(base.clone()).await;
    let front_host = front.url().trim_start_matches("http://").to_string();
    let mut config = world.base_config(&["prod"]).replace(
        &format!("api_url = \"http://{host}\""),
        &format!("api_url = \"{}\"", front.url()),
    );
    config.push_str(&api_signed_by(&host, &ours, ""));
    world.write_config(&config);
    let v200 = world.push("org/api", "v2.0.0").await;
    sigstore::sigstore_js(
        &front_host,
        dir,
        serde_json::json!([
            {"repo": "org/api", "digest": v200, "form": "dsse", "key": key(&ours), "attach": true},
        ]),
    );
    let tags = reqwest::get(format!("{base}/v2/org/api/tags/list"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !tags.contains(&format!("sha256-{}\"", &v200[7..])),
        "{tags}"
    );
    once_writes(&world, "v2.0.0");
}

/// Keyless signatures made by sigstore-js against `@sigstore/mock`'s Fulcio and Rekor, whose
/// keys are the trusted root: as cosign 3 bundles (message signature and DSSE, attestation
/// included), and in cosign 2's classic layout built from sigstore-js's log entry, whose
/// certificate PEM is on one line. A certificate of another Fulcio, or naming another
/// workflow, is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_bundles_made_by_sigstore_js() {
    if need::missing(
        "keyless_bundles_made_by_sigstore_js",
        &[Component::SigstoreJs],
    ) {
        return;
    }
    let (world, host, _) = prod_world().await;
    let dir = world.dir.path();
    let other = tempfile::tempdir().unwrap();
    let v110 = world.push("org/api", "v1.1.0").await;
    let v120 = world.push("org/api", "v1.2.0").await;
    let v130 = world.push("org/api", "v1.3.0").await;
    let v140 = world.push("org/api", "v1.4.0").await;
    let keyless = |who: &str| serde_json::json!({"identity": who, "issuer": ACTIONS});
    // Another Fulcio and Rekor (another run of the mocks): its root is not trusted.
    sigstore::sigstore_js(
        &host,
        other.path(),
        serde_json::json!([
            {"repo": "org/api", "digest": v140, "form": "dsse", "keyless": keyless(WORKFLOW), "tlog": true, "attach": true},
        ]),
    );
    let bundles = sigstore::sigstore_js(
        &host,
        dir,
        serde_json::json!([
            {"repo": "org/api", "digest": v110, "form": "classic", "keyless": keyless(WORKFLOW), "tlog": true},
            {"repo": "org/api", "digest": v120, "form": "message", "keyless": keyless(WORKFLOW), "tlog": true, "tsa": true, "attach": true},
            {"repo": "org/api", "digest": v130, "form": "dsse", "keyless": keyless("https://github.com/acme/api/.github/workflows/pr.yml@refs/pull/7/merge"), "tlog": true, "attach": true},
        ]),
    );
    let root = dir.join("trusted_root.json");
    // The log entry sigstore-js made records the certificate's PEM on one line.
    let entry = &bundles[0]["verificationMaterial"]["tlogEntries"][0]["canonicalizedBody"];
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    };
    let body: serde_json::Value = serde_json::from_slice(&b64(entry.as_str().unwrap())).unwrap();
    let pem = String::from_utf8(b64(body["spec"]["signature"]["publicKey"]["content"]
        .as_str()
        .unwrap()))
    .unwrap();
    assert_eq!(pem.lines().count(), 3, "{pem}");

    configure(&world, &["prod"], &api_keyless(&host, &root, ""));
    once_writes(&world, "v1.2.0");
    let why = unverified(&world);
    // Another Fulcio's certificate, logged by another Rekor: the log is not trusted.
    assert!(
        why.contains(&format!(
            "v1.4.0: the Sigstore bundle attached to {v140}: its transparency-log entry is from a log the trusted root does not name"
        )),
        "{why}"
    );
    assert!(
        why.contains(&format!("v1.3.0: the Sigstore bundle attached to {v130}: signed by https://github.com/acme/api/.github/workflows/pr.yml@refs/pull/7/merge, not {WORKFLOW}")),
        "{why}"
    );
    // The classic layout with the one-line PEM: v1.1.0 alone.
    configure(
        &world,
        &["prod"],
        &api_keyless(&host, &root, "").replace(
            "environments = [\"prod\"]\n",
            "environments = [\"prod\"]\npin = \"v1.1.0\"\n",
        ),
    );
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.1.0"),
        "{out}\n{}",
        unverified(&world)
    );
}

/// Without `pin_digest` the tag alone is written, so a push over it between the decision and
/// the commit would deploy what was never verified: the tag is resolved again right before its
/// branch is written, and a tag that moved is not written (the next cycle verifies what it
/// names then). The pause is the daemon's fault injection, in that very window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_pushed_over_between_decision_and_write_is_not_written() {
    if need::missing(
        "a_tag_pushed_over_between_decision_and_write_is_not_written",
        &[Component::PythonCryptography],
    ) {
        return;
    }
    let (world, host, base) = prod_world().await;
    let ours = sigstore::keypair(world.dir.path(), "ours");
    configure(&world, &["prod"], &api_signed_by(&host, &ours, ""));
    let v110 = world.push("org/api", "v1.1.0").await;
    sigstore::sign_spec(&base, "org/api", &v110, &ours, Spelling::Cosign);
    let pause = world.dir.path().join("paused");
    let once = world
        .command(&["once"])
        .env(
            "IMAGE_UPDATER_FAULT",
            format!("pause-before-write:{}", pause.display()),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !pause.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never paused"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Decided and verified; now pushed over, unsigned, before the commit.
    let again = world.push("org/api", "v1.1.0").await;
    assert_ne!(again, v110);
    std::fs::remove_file(&pause).unwrap();
    let out = once.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    let file = world.file_on("deploy/prod", FILE);
    assert!(
        file.contains("newTag: v1.0.0") && !file.contains("v1.1.0"),
        "the pushed-over tag was written: {file}\n{log}"
    );
    assert!(
        log.contains(&format!(
            "v1.1.0 was pushed over after it was verified (now {again}, verified {v110})"
        )),
        "{log}"
    );
    // The next cycle judges what the tag names now: unsigned, not written.
    let out = once_writes(&world, "v1.0.0");
    assert!(
        unverified(&world).contains(&format!("v1.1.0: no cosign signature for {again}")),
        "{out}"
    );
}

/// Keyless as cosign verifies it, each check with material from sigstore-js and
/// `@sigstore/mock` and a spoiled counterpart that is refused: the certificate's embedded SCT
/// (signed by a CT log of the trusted root), the Rekor entry's inclusion proof and the
/// checkpoint the log signed, and RFC 3161 timestamps from a timestamp authority of the root
/// (the time the certificate must have been valid at).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sct_inclusion_proof_and_timestamp_are_checked() {
    if need::missing(
        "sct_inclusion_proof_and_timestamp_are_checked",
        &[Component::SigstoreJs],
    ) {
        return;
    }
    let (world, host, _) = prod_world().await;
    let dir = world.dir.path();
    let mut digests = Vec::new();
    for minor in 0..=7 {
        digests.push(world.push("org/api", &format!("v1.{minor}.0")).await);
    }
    let hour_later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    let hours_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2)).to_string();
    let item = |minor: usize, extra: serde_json::Value| {
        let mut item = serde_json::json!({
            "repo": "org/api", "digest": digests[minor], "form": "dsse", "attach": true,
            "keyless": {"identity": WORKFLOW, "issuer": ACTIONS},
        });
        item.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        item
    };
    use serde_json::json;
    sigstore::sigstore_js(
        &host,
        dir,
        json!([
            // The good ones: a logged entry with its proof; a timestamp alone.
            item(0, json!({"tlog": true})),
            item(1, json!({"tsa": true})),
            // Spoiled.
            item(2, json!({"tlog": true, "tamper": "sct"})),
            item(3, json!({"tlog": true, "tamper": "proof"})),
            item(4, json!({"tlog": true, "tamper": "checkpoint"})),
            item(5, json!({"tsa": true, "tamper": "timestamp"})),
            // A timestamp from after the certificate expired; a certificate expired now, with
            // no time but now's.
            item(6, json!({"tsa": true, "tsa_clock": hour_later})),
            item(7, json!({"clock": hours_ago})),
        ]),
    );
    let root = dir.join("trusted_root.json");
    configure(&world, &["prod"], &api_keyless(&host, &root, ""));
    // `check` says what the trusted root makes the rule check.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_image-updater"))
        .arg("check")
        .arg("--config")
        .arg(world.config_path())
        .output()
        .unwrap();
    let check = String::from_utf8_lossy(&check.stdout).to_string();
    assert!(
        check.contains(&format!("api (prod): keyless: a certificate for {WORKFLOW} from {ACTIONS} issued by 1 certificate authority; an embedded SCT from one of 1 CT log; signing time from 1 transparency log (signed entry timestamp; inclusion proof and checkpoint when present) or 4 timestamp authorities (RFC 3161)")),
        "{check}"
    );
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    let why = unverified(&world);
    let refused = |minor: usize, reason: &str| {
        format!(
            "v1.{minor}.0: the Sigstore bundle attached to {}: {reason}",
            digests[minor]
        )
    };
    for expected in [
        refused(
            2,
            "its certificate's SCT is not signed by the CT log it names",
        ),
        refused(3, "its inclusion proof does not lead to the log's root"),
        refused(4, "its checkpoint is not signed by the log"),
        refused(5, "its timestamp is not signed by its timestamp authority"),
        refused(6, "signed at "),
        refused(7, "its certificate is valid "),
    ] {
        assert!(why.contains(&expected), "{expected}\n{why}\n{out}");
    }
    assert!(why.contains("outside its certificate's validity"), "{why}");
    assert!(
        why.contains("and no transparency-log entry or timestamp shows when it signed"),
        "{why}"
    );
    assert!(!why.contains("v1.1.0") && !why.contains("v1.0.0"), "{why}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.1.0"),
        "{out}"
    );
    // The logged one counts as well, on its own.
    configure(
        &world,
        &["prod"],
        &api_keyless(&host, &root, "").replace(
            "environments = [\"prod\"]\n",
            "environments = [\"prod\"]\npin = \"v1.0.0\"\nallow_downgrade = true\n",
        ),
    );
    let (ok, out) = stdout(&world, &["once"]);
    assert!(ok, "{out}");
    assert!(
        world
            .file_on("deploy/prod", FILE)
            .contains("newTag: v1.0.0"),
        "{out}\n{}",
        unverified(&world)
    );
}

/// Keyless attestations, as cosign 3 attaches them (a Sigstore bundle whose DSSE statement has
/// the attestation's predicate), made by sigstore-js: the rule's field decides, with the
/// certificate checked as for a signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_attestations_in_bundles() {
    if need::missing("keyless_attestations_in_bundles", &[Component::SigstoreJs]) {
        return;
    }
    let (world, host, _) = prod_world().await;
    let dir = world.dir.path();
    let slsa = "https://slsa.dev/provenance/v1";
    let ours = "https://github.com/acme/api/.github/workflows/release.yml";
    let v110 = world.push("org/api", "v1.1.0").await;
    let v120 = world.push("org/api", "v1.2.0").await;
    let keyless = serde_json::json!({"identity": WORKFLOW, "issuer": ACTIONS});
    let provenance =
        |builder: &str| serde_json::json!({"runDetails": {"builder": {"id": builder}}});
    sigstore::sigstore_js(
        &host,
        dir,
        serde_json::json!([
            {"repo": "org/api", "digest": v110, "form": "dsse", "keyless": keyless, "tlog": true, "attach": true},
            {"repo": "org/api", "digest": v110, "form": "dsse", "keyless": keyless, "tlog": true, "attach": true,
             "predicate_type": slsa, "predicate": provenance(ours)},
            {"repo": "org/api", "digest": v120, "form": "dsse", "keyless": keyless, "tlog": true, "attach": true},
            {"repo": "org/api", "digest": v120, "form": "dsse", "keyless": keyless, "tlog": true, "attach": true,
             "predicate_type": slsa, "predicate": provenance("https://example.com/laptop")},
        ]),
    );
    let root = dir.join("trusted_root.json");
    configure(
        &world,
        &["prod"],
        &api_keyless(
            &host,
            &root,
            &format!(
                "attestation = {{ predicate_type = \"{slsa}\", field = \"predicate.runDetails.builder.id\", equals = \"{ours}\" }}\n"
            ),
        ),
    );
    once_writes(&world, "v1.1.0");
    let why = unverified(&world);
    assert!(
        why.contains(&format!(
            "v1.2.0: no `{slsa}` attestation for {v120} as the rule asks: `predicate.runDetails.builder.id` is `https://example.com/laptop`, not `{ours}`"
        )),
        "{why}"
    );
}
