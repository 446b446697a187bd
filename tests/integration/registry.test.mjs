// FROM images other than templates, through the official SDK: an image pulled from a registry on
// loopback (Debian's docker-registry, filled with skopeo from an OCI layout made here from
// busybox: two layers, the second whiting out a file of the first), the same registry behind
// Basic auth with the SDK's credentials, behind the Docker token protocol (a token service in
// this test signs RS256 JWTs with a certificate the registry trusts), and the OCI layout itself
// through --image-dirs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash, createPrivateKey, randomBytes, sign } from 'node:crypto';
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { Sandbox, Template } from 'e2b';
import { startHutch, skipReason as hutchSkip, api } from './hutch-helpers.mjs';
import { freePort, sleep } from './helpers.mjs';

function have(cmd) {
  try { execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }); return true; } catch { return false; }
}
const skipReason = hutchSkip || (!have('skopeo') || !have('docker-registry')
  ? 'skopeo or docker-registry is not installed (scripts/deps.sh)' : false);
const opts = { skip: skipReason };
const execFileAsync = promisify(execFile);

const nonce = randomBytes(6).toString('hex');
let h, dir, layout, port, authPort, tokenRegPort, tokenServer;
const registries = [];
const tokenRequests = [];

const sha = (b) => createHash('sha256').update(b).digest('hex');

/** A layer tarball (numeric owners, as the files are) of the staging dir. */
function tarOf(src) {
  return execFileSync('tar', ['--numeric-owner', '--sort=name', '--mtime=@1700000000', '-C', src, '-cf', '-', '.'],
    { maxBuffer: 64 << 20 });
}

function writeBlob(buf) {
  const d = sha(buf);
  fs.writeFileSync(path.join(layout, 'blobs', 'sha256', d), buf);
  return { digest: `sha256:${d}`, size: buf.length };
}

/** An OCI layout from busybox: layer 1 a tiny root filesystem, layer 2 deletes /etc/gone. */
function makeLayout() {
  const l1 = path.join(dir, 'l1');
  const l2 = path.join(dir, 'l2');
  for (const d of ['bin', 'etc', 'home/user', 'root', 'tmp', 'opt']) fs.mkdirSync(path.join(l1, d), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(l1, 'bin/busybox'));
  fs.chmodSync(path.join(l1, 'bin/busybox'), 0o755);
  for (const a of ['sh', 'cat', 'echo', 'ls', 'id', 'env', 'pwd', 'test', 'stat', 'sleep', 'mkdir', 'rm', 'grep', 'true', 'printf', 'adduser'])
    fs.symlinkSync('busybox', path.join(l1, 'bin', a));
  // envd runs commands with /bin/bash (as E2B's does); busybox's ash stands in for it.
  fs.writeFileSync(path.join(l1, 'bin/bash'), '#!/bin/sh\nexec /bin/sh "$@"\n', { mode: 0o755 });
  fs.writeFileSync(path.join(l1, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n');
  fs.writeFileSync(path.join(l1, 'etc/group'), 'root:x:0:\nuser:x:1000:\n');
  fs.writeFileSync(path.join(l1, 'etc/from-image'), `from the image ${nonce}\n`);
  fs.writeFileSync(path.join(l1, 'etc/gone'), 'whited out by layer 2\n');
  fs.chownSync(path.join(l1, 'home/user'), 1000, 1000);
  fs.chmodSync(path.join(l1, 'tmp'), 0o1777);
  fs.mkdirSync(path.join(l2, 'etc'), { recursive: true });
  fs.mkdirSync(path.join(l2, 'opt'), { recursive: true });
  fs.writeFileSync(path.join(l2, 'etc/.wh.gone'), '');
  fs.writeFileSync(path.join(l2, 'opt/layer2'), 'second layer\n');

  layout = path.join(dir, 'layout');
  fs.mkdirSync(path.join(layout, 'blobs', 'sha256'), { recursive: true });
  fs.writeFileSync(path.join(layout, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  const t1 = tarOf(l1), t2 = tarOf(l2);
  const b1 = writeBlob(zlib.gzipSync(t1)), b2 = writeBlob(t2);
  const config = writeBlob(Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'linux',
    config: { Env: ['PATH=/bin', `IMAGE_VAR=from-config-${nonce}`], WorkingDir: '/opt', Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: [`sha256:${sha(t1)}`, `sha256:${sha(t2)}`] },
  })));
  const manifest = writeBlob(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...b1 },
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', ...b2 }],
  })));
  fs.writeFileSync(path.join(layout, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...manifest,
      annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
  }));
}

async function startRegistry(name, extra = '') {
  const p = await freePort();
  const cfg = path.join(dir, `${name}.yml`);
  fs.writeFileSync(cfg, `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${path.join(dir, name)}\nhttp:\n  addr: 127.0.0.1:${p}\n${extra}`);
  const proc = spawn('docker-registry', ['serve', cfg], { stdio: 'ignore' });
  registries.push(proc);
  for (let i = 0; i < 100; i++) {
    try { await fetch(`http://127.0.0.1:${p}/v2/`); return p; } catch { await sleep(100); }
  }
  throw new Error(`docker-registry ${name} did not start`);
}

const b64url = (b) => Buffer.from(b).toString('base64url');

/**
 * A Docker token service (the protocol docker.io uses): Basic credentials hutch:s3cret get the
 * actions asked for in `scope`, other credentials a 401, no credentials a token granting nothing. RS256, the certificate in
 * the JWT's x5c header, which the registry checks against its rootcertbundle.
 */
async function startTokenService() {
  const key = path.join(dir, 'token.key'), crt = path.join(dir, 'token.crt');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt,
    '-days', '1', '-subj', '/CN=hutch-test-token'], { stdio: 'ignore' });
  const der = execFileSync('openssl', ['x509', '-in', crt, '-outform', 'DER']);
  const privateKey = createPrivateKey(fs.readFileSync(key));
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    const auth = req.headers.authorization ?? '';
    const authed = auth === `Basic ${Buffer.from('hutch:s3cret').toString('base64')}`;
    tokenRequests.push({ scope: u.searchParams.get('scope'), service: u.searchParams.get('service'), authed, basic: auth.startsWith('Basic ') });
    if (auth && !authed) {
      res.writeHead(401, { 'Content-Type': 'application/json' });
      return res.end('{"details":"incorrect username or password"}');
    }
    const access = [];
    for (const sc of u.searchParams.getAll('scope')) {
      const [type, name, actions] = sc.split(':');
      if (authed) access.push({ type, name, actions: actions.split(',') });
    }
    const now = Math.floor(Date.now() / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [der.toString('base64')] };
    const claims = { iss: 'hutch-test-issuer', sub: authed ? 'hutch' : '', aud: u.searchParams.get('service'),
      exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString('hex'), access };
    const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const token = `${input}.${b64url(sign('sha256', Buffer.from(input), privateKey))}`;
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ token, expires_in: 300, issued_at: new Date().toISOString() }));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, crt };
}

/** Async: the token service answering skopeo lives in this process. */
async function skopeoPush(dest, creds) {
  await execFileAsync('skopeo', ['--insecure-policy', 'copy', '-q', '--dest-tls-verify=false',
    ...(creds ? ['--dest-creds', creds] : []), `oci:${layout}:v1`, `docker://${dest}`], { timeout: 120000 });
}

before(async () => {
  if (skipReason) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hutch-registry-'));
  makeLayout();
  port = await startRegistry('registry');
  await skopeoPush(`127.0.0.1:${port}/hutch/bb:v1`);
  // bcrypt of "s3cret", as htpasswd -B writes it.
  fs.writeFileSync(path.join(dir, 'htpasswd'), 'hutch:$2b$12$n11HXwMFUmF2peUHrO1A3.4KyTGq4qovdPwpyDsP/coywCQ37CsLO\n');
  authPort = await startRegistry('registry-auth', `auth:\n  htpasswd:\n    realm: hutch-test\n    path: ${path.join(dir, 'htpasswd')}\n`);
  await skopeoPush(`127.0.0.1:${authPort}/private/bb:v1`, 'hutch:s3cret');
  const ts = await startTokenService();
  tokenServer = ts.server;
  tokenRegPort = await startRegistry('registry-token', `auth:\n  token:\n    realm: http://127.0.0.1:${ts.server.address().port}/token\n    service: hutch-test-registry\n    issuer: hutch-test-issuer\n    rootcertbundle: ${ts.crt}\n`);
  await skopeoPush(`127.0.0.1:${tokenRegPort}/private/bb:v1`, 'hutch:s3cret');
  h = await startHutch({ args: ['--image-dirs', dir] });
});

after(async () => {
  for (const r of registries) r.kill('SIGTERM');
  tokenServer?.close();
  if (h) {
    const res = await h.stop();
    assert.equal(res.code, 0, `hutch serve exit ${JSON.stringify({ code: res.code, signal: res.signal })}\n${res.log.slice(-2000)}`);
    assert.deepEqual(res.left, [], 'nothing is left behind after SIGTERM');
  }
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function buildAndCheck(from, name, credentials) {
  const logs = [];
  const tpl = Template().fromImage(from, credentials).runCmd(`echo built-${nonce} > /opt/built`).setEnvs({ FOO: 'bar' });
  const t0 = performance.now();
  await Template.build(tpl, name, { onBuildLogs: (e) => logs.push(e.message) });
  const ms = performance.now() - t0;
  const sbx = await Sandbox.create(name);
  try {
    const out = await sbx.commands.run('cat /opt/built /etc/from-image /opt/layer2; echo "$FOO $IMAGE_VAR"; test -e /etc/gone || echo gone; id -un');
    assert.deepEqual(out.stdout.trim().split('\n'), [
      `built-${nonce}`, `from the image ${nonce}`, 'second layer', `bar from-config-${nonce}`, 'gone', 'user']);
    const owners = await sbx.commands.run('stat -c "%U %u" /bin/busybox /home/user');
    assert.deepEqual(owners.stdout.trim().split('\n'), ['root 0', 'user 1000']);
  } finally {
    await sbx.kill();
  }
  assert.equal((await api(h, 'DELETE', `/templates/${name}`)).status, 204);
  return { logs: logs.join('\n'), ms };
}

test('fromImage from a registry on loopback: layers, whiteouts, the image config; layers cached by digest', opts, async () => {
  const first = await buildAndCheck(`127.0.0.1:${port}/hutch/bb:v1`, `it-reg-${nonce}`);
  assert.match(first.logs, /layer 2\/2 sha256:[0-9a-f]{12}: (pulling|cached)/, first.logs);
  // Another template from the same image: the registry is asked for the manifest, the layers
  // come from the cache.
  const second = await buildAndCheck(`127.0.0.1:${port}/hutch/bb:v1`, `it-reg2-${nonce}`);
  assert.match(second.logs, /layer 1\/2 sha256:[0-9a-f]{12}: cached/, second.logs);
  assert.match(second.logs, /layer 2\/2 sha256:[0-9a-f]{12}: cached/, second.logs);
  console.log(`registry FROM: first build ${first.ms.toFixed(0)} ms, second ${second.ms.toFixed(0)} ms`);
});

test('fromImage with registry credentials (Basic auth); without them the build fails clearly', opts, async () => {
  await buildAndCheck(`127.0.0.1:${authPort}/private/bb:v1`, `it-auth-${nonce}`, { username: 'hutch', password: 's3cret' });
  await assert.rejects(
    Template.build(Template().fromImage(`127.0.0.1:${authPort}/private/bb:v1`).runCmd('true'), `it-noauth-${nonce}`),
    /wants credentials/);
  await assert.rejects(
    Template.build(Template().fromImage(`127.0.0.1:${authPort}/private/bb:v1`, { username: 'hutch', password: 'nope' }).runCmd('true'), `it-badauth-${nonce}`),
    /access denied/);
});

test('fromImage from a registry using the Docker token protocol: credentials go to the realm, the pull uses the token', opts, async () => {
  tokenRequests.length = 0;
  await buildAndCheck(`127.0.0.1:${tokenRegPort}/private/bb:v1`, `it-token-${nonce}`, { username: 'hutch', password: 's3cret' });
  const ours = tokenRequests.filter((t) => t.scope === 'repository:private/bb:pull');
  assert.ok(ours.length >= 1 && ours.every((t) => t.authed && t.service === 'hutch-test-registry'), JSON.stringify(tokenRequests));
  // A token that grants nothing: the registry still says 401; wrong credentials: the token
  // service says 401. The build says which.
  await assert.rejects(
    Template.build(Template().fromImage(`127.0.0.1:${tokenRegPort}/private/bb:v1`).runCmd('true'), `it-notoken-${nonce}`),
    /private\/bb: access denied \(HTTP 401\)/);
  await assert.rejects(
    Template.build(Template().fromImage(`127.0.0.1:${tokenRegPort}/private/bb:v1`, { username: 'hutch', password: 'nope' }).runCmd('true'), `it-badtoken-${nonce}`),
    /token service answered HTTP 401/);
});

test('fromImage of a missing image or repository fails the build with the registry\'s answer', opts, async () => {
  await assert.rejects(
    Template.build(Template().fromImage(`127.0.0.1:${port}/hutch/bb:nope`).runCmd('true'), `it-missing-${nonce}`),
    /not found in the registry/);
});

test('fromImage oci:/layout beneath --image-dirs; other paths are refused', opts, async () => {
  await buildAndCheck(`oci:${layout}:v1`, `it-oci-${nonce}`);
  await assert.rejects(
    Template.build(Template().fromImage('oci:/etc:v1').runCmd('true'), `it-ocibad-${nonce}`),
    /outside the directories allowed/);
});
