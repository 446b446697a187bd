// files.* through the official SDK in debug mode (mirrors js-sdk tests/sandbox/files/*).
// Paths are absolute under envd's temp workdir so nothing outside it is touched (one test
// writes a relative path, which envd resolves against the user's home, and removes it).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { CommandExitError, FileNotFoundError, InvalidArgumentError } from 'e2b';

import { currentUser, debugSandbox, passwdEntry, sha256, startEnvd, stopChecked } from './helpers.mjs';

const T = { timeout: 30_000 };
let envd;
let sbx;
let W; // the workdir
const me = currentUser();
const home = passwdEntry(me)?.home;
const p = (...parts) => path.join(W, ...parts);

before(async () => {
  envd = await startEnvd({ config: { defaultWorkdir: true } });
  W = envd.workdir;
  sbx = await debugSandbox();
});

after(() => stopChecked(envd));

test('write text returns WriteInfo; read it back as text', T, async () => {
  const file = p('hello.txt');
  const info = await sbx.files.write(file, 'Hello World!');
  assert.equal(info.name, 'hello.txt');
  assert.equal(info.type, 'file');
  assert.equal(info.path, file);
  assert.equal(info.metadata, undefined);
  assert.equal(await sbx.files.read(file), 'Hello World!');
  // Overwrite with shorter content truncates.
  await sbx.files.write(file, 'Hi');
  assert.equal(await sbx.files.read(file), 'Hi');
  assert.equal((await sbx.commands.run(`cat ${file}`)).stdout, 'Hi');
});

test('write creates missing parent directories', T, async () => {
  const file = p('deep', 'er', 'still', 'f.txt');
  const info = await sbx.files.write(file, 'nested');
  assert.equal(info.path, file);
  assert.equal(await sbx.files.read(file), 'nested');
  assert.equal((await sbx.files.getInfo(p('deep', 'er'))).type, 'dir');
});

test('read: missing file → FileNotFoundError (also as stream), directory → InvalidArgumentError', T, async () => {
  await assert.rejects(sbx.files.read(p('nope.txt')), FileNotFoundError);
  await assert.rejects(sbx.files.read(p('nope.txt'), { format: 'stream' }), FileNotFoundError);
  await assert.rejects(sbx.files.read(W), InvalidArgumentError);
});

test('empty file reads as "" and as 0 bytes', T, async () => {
  const file = p('empty.txt');
  await sbx.files.write(file, '');
  assert.equal(await sbx.files.read(file), '');
  const bytes = await sbx.files.read(file, { format: 'bytes' });
  assert.equal(bytes.length, 0);
});

test('8 MiB binary round trip (Buffer in, Uint8Array out), checked in-shell too', T, async () => {
  const data = randomBytes(8 * 1024 * 1024);
  const file = p('big.bin');
  const info = await sbx.files.write(file, data);
  assert.equal(info.path, file);
  const back = await sbx.files.read(file, { format: 'bytes' });
  assert.ok(back instanceof Uint8Array);
  assert.equal(back.length, data.length);
  assert.equal(sha256(back), sha256(data));
  const shell = await sbx.commands.run(`sha256sum < ${file} | cut -c1-64; stat -c %s ${file}`);
  assert.equal(shell.stdout, `${sha256(data)}\n${data.length}\n`);
  // Uint8Array and Blob inputs too.
  const small = new Uint8Array([0, 1, 2, 253, 254, 255]);
  await sbx.files.write(p('u8.bin'), small);
  assert.deepEqual(await sbx.files.read(p('u8.bin'), { format: 'bytes' }), small);
  await sbx.files.write(p('blob.bin'), new Blob([small]));
  const blob = await sbx.files.read(p('blob.bin'), { format: 'blob' });
  assert.deepEqual(new Uint8Array(await blob.arrayBuffer()), small);
});

test('streamed read returns every byte', T, async () => {
  const data = randomBytes(230 * 1024);
  await sbx.files.write(p('stream.bin'), data);
  const stream = await sbx.files.read(p('stream.bin'), { format: 'stream' });
  const chunks = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  assert.equal(sha256(Buffer.concat(chunks)), sha256(data));
});

test('octet-stream and gzip uploads; gzip download', T, async () => {
  const text = 'compress me '.repeat(10000);
  const a = await sbx.files.write(p('octet.txt'), text, { useOctetStream: true });
  assert.equal(a.name, 'octet.txt');
  assert.equal(a.type, 'file');
  assert.equal(a.path, p('octet.txt'));
  const g = await sbx.files.write(p('gz.txt'), text, { gzip: true });
  assert.equal(g.name, 'gz.txt');
  assert.equal(g.path, p('gz.txt'));
  assert.equal(await sbx.files.read(p('gz.txt')), text);
  assert.equal(await sbx.files.read(p('gz.txt'), { gzip: true }), text);
  const bin = randomBytes(3 * 1024 * 1024);
  await sbx.files.write(p('gz.bin'), bin, { gzip: true });
  assert.equal(sha256(await sbx.files.read(p('gz.bin'), { format: 'bytes', gzip: true })), sha256(bin));
});

test('write many files in one call (multipart and gzip), order kept', T, async () => {
  const files = Array.from({ length: 12 }, (_, i) => ({ path: p('multi', `sub${i % 3}`, `file${i}.txt`), data: `content ${i}` }));
  const infos = await sbx.files.write(files);
  assert.equal(infos.length, files.length);
  infos.forEach((info, i) => {
    assert.equal(info.path, files[i].path);
    assert.equal(info.name, `file${i}.txt`);
    assert.equal(info.type, 'file');
  });
  for (const f of files) assert.equal(await sbx.files.read(f.path), f.data);
  const gz = await sbx.files.write(
    files.slice(0, 4).map((f) => ({ ...f, data: `gz ${f.data}` })),
    { gzip: true },
  );
  assert.deepEqual(gz.map((i) => i.path), files.slice(0, 4).map((f) => f.path));
  assert.equal(await sbx.files.read(files[2].path), 'gz content 2');
  assert.deepEqual(await sbx.files.write([]), []);
});

test('relative paths resolve against the user home', T, async () => {
  const name = `hutch-it-rel-${process.pid}-${Date.now()}.txt`;
  try {
    const info = await sbx.files.write(name, 'rel');
    assert.equal(info.path, path.join(home, name));
    assert.equal((await sbx.files.getInfo(`~/${name}`)).path, path.join(home, name));
    assert.equal(await sbx.files.read(path.join(home, name)), 'rel');
  } finally {
    await sbx.files.remove(path.join(home, name));
  }
});

async function makeTree() {
  const root = p('test_directory');
  for (const d of ['subdir1/subdir1_1', 'subdir1/subdir1_2', 'subdir2/subdir2_1', 'subdir2/subdir2_2'])
    await sbx.files.makeDir(path.join(root, d));
  await sbx.files.write(path.join(root, 'file1.txt'), 'Hello, world!');
  return root;
}

test('list with depth 1 and 2 (lexical, depth-first), entry fields', T, async () => {
  const root = await makeTree();
  const d1 = await sbx.files.list(root);
  assert.deepEqual(d1.map((e) => e.name), ['file1.txt', 'subdir1', 'subdir2']);
  assert.deepEqual((await sbx.files.list(root, { depth: 1 })).map((e) => e.name), ['file1.txt', 'subdir1', 'subdir2']);
  const file = d1[0];
  assert.equal(file.type, 'file');
  assert.equal(file.path, path.join(root, 'file1.txt'));
  assert.equal(file.size, 13);
  assert.equal(file.mode, 0o644);
  assert.equal(file.permissions, '-rw-r--r--');
  assert.equal(file.owner, me);
  assert.equal(file.symlinkTarget, undefined);
  assert.equal(d1[1].type, 'dir');
  assert.equal(d1[1].mode, 0o755);
  assert.equal(d1[1].permissions, 'drwxr-xr-x');

  const expected2 = ['file1.txt', 'subdir1', 'subdir1/subdir1_1', 'subdir1/subdir1_2', 'subdir2', 'subdir2/subdir2_1', 'subdir2/subdir2_2'];
  for (const depth of [2, 3]) {
    const d = await sbx.files.list(root, { depth });
    assert.deepEqual(d.map((e) => e.path), expected2.map((x) => path.join(root, x)), `depth ${depth}`);
    assert.deepEqual(d.map((e) => e.name), expected2.map((x) => path.basename(x)));
  }
  await assert.rejects(sbx.files.list(root, { depth: -1 }), /depth should be at least one/);
  await assert.rejects(sbx.files.list(p('no-such-dir')), FileNotFoundError);
  await assert.rejects(sbx.files.list(path.join(root, 'file1.txt')), InvalidArgumentError);
});

test('getInfo of a file, a directory, a symlink and a missing path', T, async () => {
  const file = p('info.txt');
  const before = Date.now();
  await sbx.files.write(file, 'test');
  const f = await sbx.files.getInfo(file);
  assert.equal(f.name, 'info.txt');
  assert.equal(f.type, 'file');
  assert.equal(f.path, file);
  assert.equal(f.size, 4);
  assert.equal(f.mode, 0o644);
  assert.equal(f.permissions, '-rw-r--r--');
  assert.equal(f.owner, me);
  assert.equal(f.group, me === 'root' ? 'root' : f.group);
  assert.ok(f.modifiedTime instanceof Date);
  assert.ok(Math.abs(f.modifiedTime.getTime() - before) < 60_000, `modifiedTime ${f.modifiedTime}`);
  assert.equal(f.symlinkTarget, undefined);

  const dir = p('info-dir');
  await sbx.files.makeDir(dir);
  const d = await sbx.files.getInfo(dir);
  assert.equal(d.type, 'dir');
  assert.equal(d.name, 'info-dir');
  assert.ok(d.size > 0);
  assert.equal(d.mode, 0o755);
  assert.equal(d.permissions, 'drwxr-xr-x');

  await sbx.commands.run(`ln -s ${file} ${p('info-link.txt')}`);
  const l = await sbx.files.getInfo(p('info-link.txt'));
  assert.equal(l.name, 'info-link.txt');
  assert.equal(l.type, 'file');
  assert.equal(l.symlinkTarget, file);
  assert.equal(l.permissions[0], 'L');

  await assert.rejects(sbx.files.getInfo(p('missing.txt')), FileNotFoundError);
});

test('exists', T, async () => {
  await sbx.files.write(p('exists.txt'), 'x');
  assert.equal(await sbx.files.exists(p('exists.txt')), true);
  assert.equal(await sbx.files.exists(W), true);
  assert.equal(await sbx.files.exists(p('exists-not.txt')), false);
});

test('rename returns the new entry; missing source → FileNotFoundError', T, async () => {
  await sbx.files.write(p('old.txt'), 'moving');
  const info = await sbx.files.rename(p('old.txt'), p('renamed', 'new.txt'));
  assert.equal(info.name, 'new.txt');
  assert.equal(info.type, 'file');
  assert.equal(info.path, p('renamed', 'new.txt'));
  assert.equal(await sbx.files.exists(p('old.txt')), false);
  assert.equal(await sbx.files.read(p('renamed', 'new.txt')), 'moving');
  await assert.rejects(sbx.files.rename(p('old.txt'), p('x.txt')), FileNotFoundError);
});

test('remove a file, a directory tree, and a missing path', T, async () => {
  await sbx.files.write(p('rm', 'a', 'b.txt'), 'x');
  await sbx.files.remove(p('rm', 'a', 'b.txt'));
  assert.equal(await sbx.files.exists(p('rm', 'a', 'b.txt')), false);
  await sbx.files.remove(p('rm'));
  assert.equal(await sbx.files.exists(p('rm')), false);
  await sbx.files.remove(p('never-existed')); // must not throw
});

test('makeDir: new → true (parents too), existing → false, over a file → error', T, async () => {
  assert.equal(await sbx.files.makeDir(p('mk', 'a', 'b')), true);
  assert.equal((await sbx.files.getInfo(p('mk', 'a'))).type, 'dir');
  assert.equal(await sbx.files.makeDir(p('mk', 'a', 'b')), false);
  await sbx.files.write(p('mk', 'file'), 'x');
  await assert.rejects(sbx.files.makeDir(p('mk', 'file')), InvalidArgumentError);
});

test('metadata: write, getInfo, list, rename, overwrite clears, out-of-band xattr', T, async () => {
  const md = { author: 'mish', purpose: 'upload' };
  const info = await sbx.files.write(p('md.txt'), 'meta', { metadata: md });
  assert.deepEqual(info.metadata, md);
  assert.deepEqual((await sbx.files.getInfo(p('md.txt'))).metadata, md);
  const octet = await sbx.files.write(p('md2.txt'), 'meta', { metadata: md, useOctetStream: true });
  assert.deepEqual(octet.metadata, md);
  const listed = (await sbx.files.list(W)).find((e) => e.name === 'md.txt');
  assert.deepEqual(listed.metadata, md);
  const moved = await sbx.files.rename(p('md.txt'), p('md-moved.txt'));
  assert.deepEqual(moved.metadata, md);
  // Keys are lower-cased by envd.
  const upper = await sbx.files.write(p('md3.txt'), 'x', { metadata: { Author: 'A' } });
  assert.deepEqual(upper.metadata, { author: 'A' });
  // An upload without metadata replaces the set (clears it).
  const plain = await sbx.files.write(p('md-moved.txt'), 'again');
  assert.equal(plain.metadata, undefined);
  assert.equal((await sbx.files.getInfo(p('md-moved.txt'))).metadata, undefined);
  // Many files get the same metadata.
  const many = await sbx.files.write([{ path: p('mdm1'), data: '1' }, { path: p('mdm2'), data: '2' }], { metadata: { k: 'v' } });
  for (const i of many) assert.deepEqual(i.metadata, { k: 'v' });
  // Set out of band.
  await sbx.commands.run(`touch ${p('oob.txt')} && setfattr -n user.e2b.author -v mish ${p('oob.txt')}`);
  assert.deepEqual((await sbx.files.getInfo(p('oob.txt'))).metadata, { author: 'mish' });
  // Invalid metadata is rejected by the SDK before anything is written.
  await assert.rejects(sbx.files.write(p('bad-md.txt'), 'x', { metadata: { 'bad\nkey': 'v' } }), InvalidArgumentError);
  assert.equal(await sbx.files.exists(p('bad-md.txt')), false);
});

test('files as another user are owned by that user', { ...T, skip: me !== 'root' || !passwdEntry('nobody') }, async () => {
  const dir = p('owned');
  await sbx.files.makeDir(dir);
  await sbx.commands.run(`chmod 777 ${dir}`);
  const info = await sbx.files.write(path.join(dir, 'nobody.txt'), 'mine', { user: 'nobody' });
  assert.equal(info.path, path.join(dir, 'nobody.txt'));
  const st = await sbx.files.getInfo(path.join(dir, 'nobody.txt'));
  assert.equal(st.owner, 'nobody');
  const mk = p('owned', 'nobody-dir');
  assert.equal(await sbx.files.makeDir(mk, { user: 'nobody' }), true);
  assert.equal((await sbx.files.getInfo(mk)).owner, 'nobody');
  assert.equal(await sbx.files.read(path.join(dir, 'nobody.txt'), { user: 'nobody' }), 'mine');
  await assert.rejects(sbx.commands.run(`test -O ${path.join(dir, 'nobody.txt')}`), CommandExitError); // root is not the owner
});
