//! Signing images in the tests exactly as cosign lays signatures out in a registry, with keys
//! the tests make: ECDSA P-256 keys and signatures from `openssl` (cosign's key type, and its
//! signature encoding, ASN.1 DER over SHA-256), so the signer shares no code with the verifier.
//!
//! - A signature: the simple-signing payload naming the digest, stored as a layer
//!   (`application/vnd.dev.cosign.simplesigning.v1+json`) of an image manifest tagged
//!   `sha256-<hex>.sig`, with the base64 signature in the layer's
//!   `dev.cosignproject.cosign/signature` annotation. Signing again appends a layer, as cosign
//!   does.
//! - An attestation: an in-toto statement in a DSSE envelope
//!   (`application/vnd.dsse.envelope.v1+json`) signed over DSSE's pre-authentication encoding,
//!   as a layer of the manifest tagged `sha256-<hex>.att`, annotated with its `predicateType`.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::{Value, json};

use super::{PushAuth, put_manifest, upload_blob};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
const DSSE: &str = "application/vnd.dsse.envelope.v1+json";

/// A key pair made with openssl: `private` signs, `public` (PEM `PUBLIC KEY`, as cosign.pub)
/// goes into the config.
pub struct Key {
    pub private: PathBuf,
    pub public: PathBuf,
}

fn openssl(args: &[&str], input: Option<&Path>) -> Vec<u8> {
    let mut cmd = Command::new("openssl");
    cmd.args(args);
    if let Some(input) = input {
        cmd.stdin(std::fs::File::open(input).unwrap());
    }
    let out = cmd
        .output()
        .expect("openssl is installed: apt-get install openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Key {
    pub fn generate(dir: &Path, name: &str) -> Key {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                private.to_str().unwrap(),
            ],
            None,
        );
        openssl(
            &[
                "pkey",
                "-in",
                private.to_str().unwrap(),
                "-pubout",
                "-out",
                public.to_str().unwrap(),
            ],
            None,
        );
        Key { private, public }
    }

    /// The DER ECDSA signature over SHA-256 of `data`, base64, as cosign stores it.
    pub fn sign(&self, data: &[u8]) -> String {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), data).unwrap();
        let der = openssl(
            &["dgst", "-sha256", "-sign", self.private.to_str().unwrap()],
            Some(file.path()),
        );
        base64::engine::general_purpose::STANDARD.encode(der)
    }
}

/// cosign's signature payload for `digest` of `reference` (`host/repo`).
pub fn payload(reference: &str, digest: &str) -> String {
    format!(
        r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
    )
}

/// The manifest at `tag`, if there is one.
async fn existing(base: &str, repo: &str, tag: &str) -> Option<Value> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    if resp.status() == 404 {
        return None;
    }
    assert!(resp.status().is_success(), "{}", resp.status());
    Some(serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap())
}

/// Adds a layer to the artifact manifest at `tag` (making it when absent), as cosign does
/// when it attaches another signature.
async fn attach(
    base: &str,
    repo: &str,
    tag: &str,
    media_type: &str,
    blob: &[u8],
    annotations: Value,
) {
    let auth = PushAuth::None;
    let digest = upload_blob(base, &auth, repo, blob).await;
    let layer = json!({"mediaType": media_type, "size": blob.len(), "digest": digest, "annotations": annotations});
    let mut manifest = match existing(base, repo, tag).await {
        Some(m) => m,
        None => {
            let config = serde_json::to_vec(&json!({
                "architecture": "", "created": "0001-01-01T00:00:00Z", "os": "",
                "rootfs": {"type": "layers", "diff_ids": [digest]}, "config": {},
            }))
            .unwrap();
            let config_digest = upload_blob(base, &auth, repo, &config).await;
            json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": config.len(), "digest": config_digest},
                "layers": [],
            })
        }
    };
    manifest["layers"].as_array_mut().unwrap().push(layer);
    put_manifest(
        base,
        &auth,
        repo,
        tag,
        OCI_MANIFEST,
        &serde_json::to_vec(&manifest).unwrap(),
    )
    .await;
}

fn tag_for(digest: &str, suffix: &str) -> String {
    format!(
        "sha256-{}.{suffix}",
        digest.strip_prefix("sha256:").unwrap()
    )
}

/// Signs `digest` of `repo` with `key`, as `cosign sign --key` does.
pub async fn sign(base: &str, host: &str, repo: &str, digest: &str, key: &Key) {
    sign_payload(
        base,
        repo,
        digest,
        &payload(&format!("{host}/{repo}"), digest),
        key,
    )
    .await;
}

/// Attaches `payload` signed by `key` as a signature of `digest` (a payload for another
/// digest is how a copied signature looks).
pub async fn sign_payload(base: &str, repo: &str, digest: &str, payload: &str, key: &Key) {
    let signature = key.sign(payload.as_bytes());
    attach(
        base,
        repo,
        &tag_for(digest, "sig"),
        SIMPLE_SIGNING,
        payload.as_bytes(),
        json!({"dev.cosignproject.cosign/signature": signature}),
    )
    .await;
}

/// Attests `digest` of `repo` with `predicate` of `predicate_type`, signed by `key`, as
/// `cosign attest --key --type` does.
pub async fn attest(
    base: &str,
    host: &str,
    repo: &str,
    digest: &str,
    predicate_type: &str,
    predicate: Value,
    key: &Key,
) {
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": predicate_type,
        "subject": [{"name": format!("{host}/{repo}"), "digest": {"sha256": digest.strip_prefix("sha256:").unwrap()}}],
        "predicate": predicate,
    });
    let body = serde_json::to_vec(&statement).unwrap();
    let payload_type = "application/vnd.in-toto+json";
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        body.len()
    )
    .into_bytes();
    pae.extend_from_slice(&body);
    let b64 = base64::engine::general_purpose::STANDARD;
    let envelope = json!({
        "payloadType": payload_type,
        "payload": b64.encode(&body),
        "signatures": [{"keyid": "", "sig": key.sign(&pae)}],
    });
    attach(
        base,
        repo,
        &tag_for(digest, "att"),
        DSSE,
        &serde_json::to_vec(&envelope).unwrap(),
        json!({"dev.cosignproject.cosign/signature": "", "predicateType": predicate_type}),
    )
    .await;
}

/// A certificate authority like Sigstore's Fulcio: a P-384 CA that issues short-lived P-256
/// signing certificates naming an identity (email or URI, in the subject alternative name)
/// and the OIDC issuer that vouched for it (Fulcio's extension 1.3.6.1.4.1.57264.1.8).
pub struct Fulcio {
    dir: PathBuf,
    key: PathBuf,
    pub cert: PathBuf,
}

impl Fulcio {
    pub fn new(dir: &Path, name: &str) -> Fulcio {
        let key = dir.join(format!("{name}-ca.key"));
        let cert = dir.join(format!("{name}-ca.pem"));
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-nodes",
                "-subj",
                "/O=sigstore.dev/CN=sigstore-intermediate",
                "-days",
                "365",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
            None,
        );
        Fulcio {
            dir: dir.to_path_buf(),
            key,
            cert,
        }
    }

    /// A signing key and its certificate (PEM), valid from now for a day.
    pub fn issue(&self, name: &str, identity: &str, issuer: &str) -> (Key, String) {
        let key = Key::generate(&self.dir, name);
        let csr = self.dir.join(format!("{name}.csr"));
        let ext = self.dir.join(format!("{name}.ext"));
        let cert = self.dir.join(format!("{name}.pem"));
        let san = if identity.contains('@') && !identity.contains("://") {
            format!("email:{identity}")
        } else {
            format!("URI:{identity}")
        };
        std::fs::write(
            &ext,
            format!(
                "subjectAltName = critical,{san}\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = codeSigning\n1.3.6.1.4.1.57264.1.8 = ASN1:UTF8String:{issuer}\n"
            ),
        )
        .unwrap();
        openssl(
            &[
                "req",
                "-new",
                "-key",
                key.private.to_str().unwrap(),
                "-subj",
                "/O=signer",
                "-out",
                csr.to_str().unwrap(),
            ],
            None,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                csr.to_str().unwrap(),
                "-CA",
                self.cert.to_str().unwrap(),
                "-CAkey",
                self.key.to_str().unwrap(),
                "-CAcreateserial",
                "-days",
                "1",
                "-sha384",
                "-extfile",
                ext.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
            None,
        );
        (key, std::fs::read_to_string(&cert).unwrap())
    }

    /// The CA certificate, DER, base64.
    fn der_b64(&self) -> String {
        let der = openssl(
            &[
                "x509",
                "-in",
                self.cert.to_str().unwrap(),
                "-outform",
                "DER",
            ],
            None,
        );
        base64::engine::general_purpose::STANDARD.encode(der)
    }
}

/// A transparency log like Sigstore's Rekor: its key signs the entries' timestamps that
/// cosign's offline bundles carry.
pub struct Rekor {
    key: Key,
    /// The key's SubjectPublicKeyInfo, DER.
    der: Vec<u8>,
}

impl Rekor {
    pub fn new(dir: &Path) -> Rekor {
        let key = Key::generate(dir, "rekor");
        let der = openssl(
            &[
                "pkey",
                "-pubin",
                "-in",
                key.public.to_str().unwrap(),
                "-outform",
                "DER",
            ],
            None,
        );
        Rekor { key, der }
    }

    fn id(&self) -> Vec<u8> {
        use sha2::Digest as _;
        sha2::Sha256::digest(&self.der).to_vec()
    }

    /// cosign's bundle for a hashedrekord entry of `payload` signed (`signature`, base64) by
    /// the key of `cert` (PEM), logged at `integrated_time`.
    pub fn bundle(
        &self,
        payload: &[u8],
        signature: &str,
        cert: &str,
        integrated_time: i64,
    ) -> String {
        use sha2::Digest as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let hash: String = sha2::Sha256::digest(payload)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {"hash": {"algorithm": "sha256", "value": hash}},
                "signature": {"content": signature, "publicKey": {"content": b64.encode(cert)}},
            },
        });
        let body = b64.encode(serde_json::to_vec(&body).unwrap());
        let log_id: String = self.id().iter().map(|b| format!("{b:02x}")).collect();
        let log_index = 4242;
        let canonical = format!(
            r#"{{"body":"{body}","integratedTime":{integrated_time},"logID":"{log_id}","logIndex":{log_index}}}"#
        );
        json!({
            "SignedEntryTimestamp": self.key.sign(canonical.as_bytes()),
            "Payload": {"body": body, "integratedTime": integrated_time, "logIndex": log_index, "logID": log_id},
        })
        .to_string()
    }
}

/// Sigstore's trusted_root.json naming `fulcio` and `rekor`.
pub fn trusted_root(fulcio: &Fulcio, rekor: &Rekor) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{
            "baseUrl": "https://rekor.example",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {"rawBytes": b64.encode(&rekor.der), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": "2020-01-01T00:00:00Z"}},
            "logId": {"keyId": b64.encode(rekor.id())},
        }],
        "certificateAuthorities": [{
            "subject": {"organization": "sigstore.dev", "commonName": "sigstore"},
            "uri": "https://fulcio.example",
            "certChain": {"certificates": [{"rawBytes": fulcio.der_b64()}]},
            "validFor": {"start": "2020-01-01T00:00:00Z"},
        }],
        "ctlogs": [],
        "timestampAuthorities": [],
    })
    .to_string()
}

/// Signs `digest` keylessly, as `cosign sign` does with a Fulcio certificate: the payload
/// signed by `key`, with the certificate and (when given) the offline bundle annotated.
/// Returns the signature (base64).
pub async fn sign_keyless(
    base: &str,
    host: &str,
    repo: &str,
    digest: &str,
    key: &Key,
    cert: &str,
    bundle: impl FnOnce(&[u8], &str) -> Option<String>,
) -> String {
    let payload = payload(&format!("{host}/{repo}"), digest);
    let signature = key.sign(payload.as_bytes());
    let mut annotations = json!({
        "dev.cosignproject.cosign/signature": signature,
        "dev.sigstore.cosign/certificate": cert,
        "dev.sigstore.cosign/chain": "",
    });
    if let Some(b) = bundle(payload.as_bytes(), &signature) {
        annotations["dev.sigstore.cosign/bundle"] = b.into();
    }
    attach(
        base,
        repo,
        &tag_for(digest, "sig"),
        SIMPLE_SIGNING,
        payload.as_bytes(),
        annotations,
    )
    .await;
    signature
}

/// Signs `digest` with `key` as cosign does in the OCI 1.1 referrers mode: the signature
/// manifest names the image as its `subject` and is pushed by digest, untagged. Returns its
/// descriptor, as the referrers API lists it.
pub async fn sign_as_referrer(
    base: &str,
    host: &str,
    repo: &str,
    digest: &str,
    key: &Key,
) -> Value {
    let auth = PushAuth::None;
    let payload = payload(&format!("{host}/{repo}"), digest);
    let signature = key.sign(payload.as_bytes());
    let layer_digest = upload_blob(base, &auth, repo, payload.as_bytes()).await;
    let config = b"{}";
    let config_digest = upload_blob(base, &auth, repo, config).await;
    let artifact_type = "application/vnd.dev.cosign.artifact.sig.v1+json";
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "size": config.len(), "digest": config_digest},
        "layers": [{"mediaType": SIMPLE_SIGNING, "size": payload.len(), "digest": layer_digest,
                    "annotations": {"dev.cosignproject.cosign/signature": signature}}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": digest, "size": 0},
    });
    let body = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = super::sha256(&body);
    put_manifest(base, &auth, repo, &manifest_digest, OCI_MANIFEST, &body).await;
    json!({"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": body.len(), "artifactType": artifact_type})
}
