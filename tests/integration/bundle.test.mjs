// envd-bundle must run inside a root filesystem that has no shared libraries at all
// (templates may be Alpine/musl or minimal): chroot into an empty tree holding only the bundle.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, execFileSync } from 'node:child_process'
import { mkdtempSync, cpSync, mkdirSync, writeFileSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

const build = process.env.HUTCH_BUILD || path.resolve(import.meta.dirname, '../../build')
const bundle = path.join(build, 'envd-bundle')
const isRoot = process.getuid() === 0

test('envd-bundle runs in an empty root filesystem', { skip: !isRoot && 'chroot needs root' }, async () => {
  assert.ok(existsSync(path.join(bundle, 'envd')), `${bundle}/envd exists`)
  const root = mkdtempSync(path.join(tmpdir(), 'hutch-bundle-'))
  try {
    cpSync(bundle, path.join(root, '.hutch'), { recursive: true, verbatimSymlinks: true })
    mkdirSync(path.join(root, 'etc'))
    mkdirSync(path.join(root, 'tmp'))
    mkdirSync(path.join(root, 'root'))
    writeFileSync(path.join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n')
    writeFileSync(path.join(root, 'etc/group'), 'root:x:0:\n')
    writeFileSync(path.join(root, 'root/hello.txt'), 'hi\n')
    // No libc in the tree: a plain exec of the binary would fail.
    assert.throws(() => execFileSync('chroot', [root, '/.hutch/envd', '--version'], { stdio: 'pipe' }))
    const port = 49000 + Math.floor(Math.random() * 500)
    const child = spawn('chroot', [root, '/.hutch/lib/ld.so', '--library-path', '/.hutch/lib',
      '/.hutch/envd', '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (d) => { stderr += d })
    const exited = new Promise((r) => child.once('exit', r))
    try {
      let ok = false
      for (let i = 0; i < 100 && !ok; i++) {
        try { ok = (await fetch(`http://127.0.0.1:${port}/health`)).status === 204 } catch {}
        if (!ok) await new Promise((r) => setTimeout(r, 50))
      }
      assert.ok(ok, `envd answered /health; stderr: ${stderr}`)
      const res = await fetch(`http://127.0.0.1:${port}/filesystem.Filesystem/ListDir`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"path":"/root"}',
      })
      assert.equal(res.status, 200)
      const body = await res.json()
      assert.deepEqual(body.entries.map((e) => e.name), ['hello.txt'])
      assert.equal(body.entries[0].owner, 'root')
    } finally {
      child.kill('SIGTERM')
      await exited
    }
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})
