// Sigstore bundles made by sigstore-js, attached to images by @sigstore/oci: the tests' signer
// for cosign 3's format, which this project did not write.
//
//     node sign.js JOB.json
//
// JOB names the registry (`host:port`, on 127.0.0.1: @sigstore/oci speaks http there), a
// directory, and the items to sign. Keyless items get their certificate from @sigstore/mock's
// Fulcio (its CT log embeds an SCT), their transparency-log entry from its Rekor (a signed entry
// timestamp, an inclusion proof and a checkpoint) and, when asked, an RFC 3161 timestamp from
// its timestamp authority. The mocks answer sigstore-js's own HTTP requests through nock, and
// their keys are written as `trusted_root.json` in Sigstore's format, so the verifier under test
// is given exactly what a real deployment would give it.
//
// Each item: {repo, digest, form: "message" | "dsse" | "classic", key: PKCS#8 PEM file |
// keyless: {identity, issuer}, tlog, tsa, predicate_type, predicate, attach: true | false}. A
// "dsse" item signs an in-toto statement whose subject is the digest (cosign 3 signs images
// with the predicate type https://sigstore.dev/cosign/sign/v1); a "message" item signs the
// image manifest itself. A "classic" item signs cosign's simple-signing payload for the digest
// and attaches it the way cosign 2 does (`sha256-<hex>.sig`, the signature, certificate and
// offline bundle as annotations), the bundle's parts taken from sigstore-js's transparency-log
// entry. `attach_to` attaches the bundle to another digest than the one signed (a copied
// signature). `clock` (an ISO time) has the certificate issued then, `tsa_clock` the
// timestamp made then.
// `tamper` spoils one part after the fact, for the counterpart a verifier must refuse: "sct"
// (the CT log's signature in the certificate), "proof" (the inclusion proof's root),
// "checkpoint" (the checkpoint's note, its signature kept), "timestamp" (the timestamp
// authority's signature). Prints one JSON line per item: {bundle}.
'use strict';

const fs = require('fs');
const crypto = require('crypto');
const nock = require('nock');
const sign = require('@sigstore/sign');
const oci = require('@sigstore/oci');
const { bundleToJSON } = require('@sigstore/bundle');
const mock = require('@sigstore/mock');

const FULCIO = 'https://fulcio.mock.test';
const REKOR = 'https://rekor.mock.test';
const TSA = 'https://tsa.mock.test';
const BUNDLE_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';

function serve(base, handler) {
  nock(base)
    .persist()
    .post(handler.path)
    .reply(async (_, body) => {
      const text = typeof body === 'string' ? body : JSON.stringify(body);
      const r = await handler.fn(text);
      return [r.statusCode, r.response, { 'Content-Type': r.contentType || 'text/plain' }];
    });
}

function keyPair() {
  return crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
}

function spkiB64(key) {
  return key.export({ format: 'der', type: 'spki' }).toString('base64');
}

function logId(key) {
  return crypto.createHash('sha256').update(key.export({ format: 'der', type: 'spki' })).digest('base64');
}

// An unsigned token: the mock Fulcio reads its claims without checking a signature, as a
// test CA may.
function token(identity, issuer) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'none', typ: 'JWT' })}.${part({ sub: identity, iss: issuer, aud: 'sigstore' })}.`;
}

async function upload(registry, repo, blob) {
  const digest = 'sha256:' + crypto.createHash('sha256').update(blob).digest('hex');
  const start = await fetch(`http://${registry}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  const location = new URL(start.headers.get('location'), `http://${registry}`);
  location.searchParams.set('digest', digest);
  const put = await fetch(location, { method: 'PUT', body: blob, headers: { 'content-type': 'application/octet-stream' } });
  if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
  return digest;
}

// cosign 2's layout of a keyless signature: the payload as a layer of the `.sig` artifact, with
// the signature, the certificate (PEM) and the offline bundle (the log's signed entry
// timestamp over the entry) as its annotations.
async function attachClassic(registry, repo, digest, payload, bundle) {
  const material = bundle.verificationMaterial;
  const der = material.certificate
    ? material.certificate.rawBytes
    : material.x509CertificateChain.certificates[0].rawBytes;
  const pem = `-----BEGIN CERTIFICATE-----\n${der.match(/.{1,64}/g).join('\n')}\n-----END CERTIFICATE-----\n`;
  const annotations = {
    'dev.cosignproject.cosign/signature': bundle.messageSignature.signature,
    'dev.sigstore.cosign/certificate': pem,
  };
  const entry = (material.tlogEntries || [])[0];
  if (entry) {
    annotations['dev.sigstore.cosign/bundle'] = JSON.stringify({
      SignedEntryTimestamp: entry.inclusionPromise.signedEntryTimestamp,
      Payload: {
        body: entry.canonicalizedBody,
        integratedTime: Number(entry.integratedTime),
        logIndex: Number(entry.logIndex),
        logID: Buffer.from(entry.logId.keyId, 'base64').toString('hex'),
      },
    });
  }
  const config = Buffer.from('{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]},"config":{}}');
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', size: config.length, digest: await upload(registry, repo, config) },
    layers: [
      {
        mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json',
        size: payload.length,
        digest: await upload(registry, repo, payload),
        annotations,
      },
    ],
  };
  const tag = `sha256-${digest.replace(/^sha256:/, '')}.sig`;
  const put = await fetch(`http://${registry}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    body: JSON.stringify(manifest),
    headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' },
  });
  if (put.status !== 201) throw new Error(`manifest ${tag}: ${put.status}`);
}

// A timestamp authority as a trusted root lists it: its chain, leaf first.
function authority(stamps, uri) {
  return {
    subject: { organization: 'sigstore.mock', commonName: 'tsa' },
    uri,
    certChain: {
      certificates: [
        { rawBytes: Buffer.from(stamps.intCertificate).toString('base64') },
        { rawBytes: Buffer.from(stamps.rootCertificate).toString('base64') },
      ],
    },
    validFor: { start: '2000-01-01T00:00:00Z' },
  };
}

async function main() {
  const job = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const validFor = { start: '2000-01-01T00:00:00Z' };
  const caKeys = keyPair();
  const ctKeys = keyPair();
  const rekorKeys = keyPair();
  const tsaKeys = keyPair();
  const ctlog = await mock.initializeCTLog(ctKeys);
  const ca = await mock.initializeCA(caKeys, ctlog);
  const tlog = await mock.initializeTLog(REKOR, rekorKeys);
  const tsa = await mock.initializeTSA(tsaKeys);
  serve(FULCIO, mock.fulcioHandler(ca));
  serve(REKOR, mock.rekorHandler(tlog));
  serve(TSA, mock.tsaHandler(tsa));
  nock.enableNetConnect(/127\.0\.0\.1/);
  // The same authorities' keys at other times, or with a CT log whose signature is spoiled:
  // each served at a URL of its own, made when an item first asks.
  const variants = new Map();
  async function variant(clock, tsaClock, spoilSct) {
    const name = `${clock || 'now'}-${tsaClock || 'now'}-${spoilSct ? 'bad-sct' : 'sct'}`;
    if (!variants.has(name)) {
      const log = spoilSct
        ? {
            ...ctlog,
            log: async (cert, issuer) => {
              const sct = Buffer.from(await ctlog.log(cert, issuer));
              sct[sct.length - 3] ^= 0x01;
              return sct;
            },
          }
        : ctlog;
      const n = variants.size;
      const fulcio = `https://fulcio-${n}.mock.test`;
      const timestamps = `https://tsa-${n}.mock.test`;
      const at = (t) => (t ? new Date(t) : undefined);
      serve(fulcio, mock.fulcioHandler(await mock.initializeCA(caKeys, log, at(clock))));
      // The same authority's key with another clock (and certificates of its own, which the
      // trusted root lists too, as a root lists a rotated authority).
      const stamps = await mock.initializeTSA(tsaKeys, at(tsaClock));
      serve(timestamps, mock.tsaHandler(stamps));
      trustedRoot.timestampAuthorities.push(authority(stamps, timestamps));
      variants.set(name, { fulcio, timestamps });
    }
    return variants.get(name);
  }

  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [
      {
        baseUrl: REKOR,
        hashAlgorithm: 'SHA2_256',
        publicKey: { rawBytes: spkiB64(rekorKeys.publicKey), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor },
        logId: { keyId: logId(rekorKeys.publicKey) },
      },
    ],
    certificateAuthorities: [
      {
        subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
        uri: FULCIO,
        certChain: { certificates: [{ rawBytes: Buffer.from(ca.rootCertificate).toString('base64') }] },
        validFor,
      },
    ],
    ctlogs: [
      {
        baseUrl: 'https://ctfe.mock.test',
        hashAlgorithm: 'SHA2_256',
        publicKey: { rawBytes: spkiB64(ctKeys.publicKey), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor },
        logId: { keyId: Buffer.from(ctlog.logID).toString('base64') },
      },
    ],
    timestampAuthorities: [authority(tsa, TSA)],
  };

  for (const item of job.items) {
    const urls =
      item.clock || item.tsa_clock || item.tamper === 'sct'
        ? await variant(item.clock, item.tsa_clock, item.tamper === 'sct')
        : { fulcio: FULCIO, timestamps: TSA };
    let signer;
    if (item.key) {
      const privateKey = crypto.createPrivateKey(fs.readFileSync(item.key));
      const publicKey = crypto.createPublicKey(privateKey).export({ format: 'pem', type: 'spki' }).toString();
      signer = {
        sign: async (data) => ({
          signature: crypto.sign('sha256', data, privateKey),
          key: { $case: 'publicKey', publicKey, hint: item.hint || '' },
        }),
      };
    } else {
      const { identity, issuer } = item.keyless;
      signer = new sign.FulcioSigner({
        fulcioBaseURL: urls.fulcio,
        identityProvider: { getToken: async () => token(identity, issuer) },
      });
    }
    const witnesses = [];
    if (item.tlog) witnesses.push(new sign.RekorWitness({ rekorBaseURL: REKOR }));
    if (item.tsa) witnesses.push(new sign.TSAWitness({ tsaBaseURL: urls.timestamps }));
    const hex = item.digest.replace(/^sha256:/, '');
    let bundle;
    let payload;
    if (item.form === 'classic') {
      payload = Buffer.from(
        JSON.stringify({
          critical: {
            identity: { 'docker-reference': `${job.registry}/${item.repo}` },
            image: { 'docker-manifest-digest': item.digest },
            type: 'cosign container image signature',
          },
          optional: null,
        }),
      );
      bundle = await new sign.MessageSignatureBundleBuilder({ signer, witnesses }).create({ data: payload });
    } else if (item.form === 'message') {
      const manifest = await fetch(`http://${job.registry}/v2/${item.repo}/manifests/${item.digest}`, {
        headers: {
          accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json',
        },
      }).then((r) => r.arrayBuffer());
      bundle = await new sign.MessageSignatureBundleBuilder({ signer, witnesses }).create({ data: Buffer.from(manifest) });
    } else {
      const statement = {
        _type: 'https://in-toto.io/Statement/v1',
        subject: [{ name: `${job.registry}/${item.repo}`, digest: { sha256: hex } }],
        predicateType: item.predicate_type || 'https://sigstore.dev/cosign/sign/v1',
        predicate: item.predicate || {},
      };
      bundle = await new sign.DSSEBundleBuilder({ signer, witnesses }).create({
        data: Buffer.from(JSON.stringify(statement)),
        type: 'application/vnd.in-toto+json',
      });
    }
    const json = bundleToJSON(bundle);
    const material = json.verificationMaterial;
    if (item.tamper === 'proof') {
      material.tlogEntries[0].inclusionProof.rootHash = Buffer.alloc(32, 7).toString('base64');
    } else if (item.tamper === 'checkpoint') {
      const checkpoint = material.tlogEntries[0].inclusionProof.checkpoint;
      checkpoint.envelope = checkpoint.envelope.replace('\n', ' (altered)\n');
    } else if (item.tamper === 'timestamp') {
      const stamp = material.timestampVerificationData.rfc3161Timestamps[0];
      const der = Buffer.from(stamp.signedTimestamp, 'base64');
      der[der.length - 3] ^= 0x01;
      stamp.signedTimestamp = der.toString('base64');
    }
    if (item.form === 'classic') {
      await attachClassic(job.registry, item.repo, item.digest, payload, json);
    } else if (item.attach) {
      const annotations = { 'dev.sigstore.bundle.content': item.form === 'message' ? 'message-signature' : 'dsse-envelope' };
      if (item.form !== 'message') {
        annotations['dev.sigstore.bundle.predicateType'] = item.predicate_type || 'https://sigstore.dev/cosign/sign/v1';
      }
      await oci.attachArtifactToImage({
        imageName: `${job.registry}/${item.repo}`,
        imageDigest: item.attach_to || item.digest,
        artifact: Buffer.from(JSON.stringify(json)),
        mediaType: BUNDLE_TYPE,
        annotations,
      });
    }
    process.stdout.write(JSON.stringify({ bundle: json }) + '\n');
  }
  fs.writeFileSync(`${job.dir}/trusted_root.json`, JSON.stringify(trustedRoot, null, 2));
}

main().catch((e) => {
  console.error(e && e.cause ? `${e.message}: ${e.cause.message || e.cause}` : e);
  process.exit(1);
});
