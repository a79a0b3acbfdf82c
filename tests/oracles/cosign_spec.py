#!/usr/bin/env python3
"""cosign's classic signatures, made from cosign's SIGNATURE_SPEC.md with Python's
`cryptography`, and pushed to a registry with nothing but the distribution API.

The tests use this as a signer this project did not write: the payload layout, the signature
(ECDSA P-256 over SHA-256, ASN.1 DER, base64 in the layer's `dev.cosignproject.cosign/signature`
annotation) and the `sha256-<hex>.sig` tag come from the spec, not from our verifier's code.

    cosign_spec.py keypair DIR NAME
        writes DIR/NAME.key (PKCS#8 PEM) and DIR/NAME.pub (SubjectPublicKeyInfo PEM)
    cosign_spec.py sign REGISTRY_URL REPO DIGEST KEY [--reference REF] [--spelling S]
        signs DIGEST of REPO and attaches the signature under cosign's tag; REF is the
        `docker-reference` (default: the registry's host/REPO). S is `cosign` (the keys as
        cosign writes them) or `spec` (`Docker-manifest-digest`, as the spec's example spells
        it; cosign reads keys case-insensitively).
"""

import base64
import hashlib
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"


def keypair(directory, name):
    key = ec.generate_private_key(ec.SECP256R1())
    with open(f"{directory}/{name}.key", "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(f"{directory}/{name}.pub", "wb") as f:
        f.write(
            key.public_key().public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )


def request(method, url, body=None, content_type=None, accept=None):
    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def upload(base, repo, blob):
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    status, headers, _ = request("POST", f"{base}/v2/{repo}/blobs/uploads/")
    assert status == 202, f"upload start: {status}"
    location = urllib.parse.urljoin(base, headers["Location"])
    sep = "&" if "?" in location else "?"
    status, _, body = request(
        "PUT",
        f"{location}{sep}digest={digest}",
        blob,
        "application/octet-stream",
    )
    assert status == 201, f"upload: {status} {body!r}"
    return digest


def payload(reference, digest, spelling):
    image_key = "Docker-manifest-digest" if spelling == "spec" else "docker-manifest-digest"
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {image_key: digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


def sign(base, repo, digest, key_file, reference=None, spelling="cosign"):
    with open(key_file, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    host = urllib.parse.urlparse(base).netloc
    body = payload(reference or f"{host}/{repo}", digest, spelling)
    signature = base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode()
    layer = {
        "mediaType": SIMPLE_SIGNING,
        "size": len(body),
        "digest": upload(base, repo, body),
        "annotations": {"dev.cosignproject.cosign/signature": signature},
    }
    tag = "sha256-" + digest.removeprefix("sha256:") + ".sig"
    status, _, existing = request(
        "GET", f"{base}/v2/{repo}/manifests/{tag}", accept=OCI_MANIFEST
    )
    if status == 200:
        manifest = json.loads(existing)
    else:
        assert status == 404, f"{tag}: {status}"
        config = json.dumps(
            {
                "architecture": "",
                "created": "0001-01-01T00:00:00Z",
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]},
                "config": {},
            }
        ).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": len(config),
                "digest": upload(base, repo, config),
            },
            "layers": [],
        }
    manifest["layers"].append(layer)
    status, _, body = request(
        "PUT",
        f"{base}/v2/{repo}/manifests/{tag}",
        json.dumps(manifest).encode(),
        OCI_MANIFEST,
    )
    assert status == 201, f"manifest {tag}: {status} {body!r}"


def main(argv):
    if argv[:1] == ["keypair"] and len(argv) == 3:
        keypair(argv[1], argv[2])
    elif argv[:1] == ["sign"] and len(argv) >= 5:
        options = dict(zip(argv[5::2], argv[6::2]))
        sign(
            argv[1],
            argv[2],
            argv[3],
            argv[4],
            reference=options.get("--reference"),
            spelling=options.get("--spelling", "cosign"),
        )
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
