// Shared helpers of the adversarial suite: the daemon helpers and the SDK come from
// tests/integration (its node_modules holds the pinned `e2b`), raw HTTP over sockets, and a
// runner for commands as root inside a sandbox.
import net from 'node:net';

export { startHutch, skipReason, api } from '../integration/hutch-helpers.mjs';
export { sleep } from '../integration/helpers.mjs';
export { Sandbox } from '../integration/sdk.mjs';

/** Runs cmd in sbx (root by default); never throws: { code, out, err }. */
export async function run(sbx, cmd, o = {}) {
  try {
    const r = await sbx.commands.run(cmd, { user: 'root', timeoutMs: 120000, ...o });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    return { code: e.exitCode ?? -999, out: e.stdout ?? '', err: (e.stderr ?? '') + String(e.message) };
  }
}

/** Runs a python3 program inside sbx; its stdout parsed as JSON. */
export async function python(sbx, program, o = {}) {
  const b64 = Buffer.from(program).toString('base64');
  const r = await run(sbx, `echo ${b64} | base64 -d > /tmp/probe.py && python3 /tmp/probe.py`, o);
  try { return JSON.parse(r.out); } catch { throw new Error(`probe failed (${r.code}): ${r.out}\n${r.err}`); }
}

/**
 * Sends raw bytes to url's host:port, half-closes unless keepOpen, and collects the answer until
 * the server closes. Returns { status, headers, body, hung, closed } where hung means no close
 * within timeoutMs. status is null when the server closed without a status line.
 */
export function rawHttp(url, bytes, { timeoutMs = 10000, keepOpen = false, localAddress } = {}) {
  const u = new URL(url);
  return new Promise((resolve) => {
    const chunks = [];
    const s = net.connect({ host: u.hostname, port: Number(u.port), localAddress });
    let done = false;
    const finish = (hung) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      const split = text.indexOf('\r\n\r\n');
      resolve({
        status: m ? Number(m[1]) : null,
        headers: split >= 0 ? text.slice(0, split) : text,
        body: split >= 0 ? text.slice(split + 4) : '',
        hung,
      });
    };
    const t = setTimeout(() => finish(true), timeoutMs);
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => finish(false));
    s.on('close', () => finish(false));
    s.on('error', () => finish(false));
    s.on('connect', () => {
      s.write(bytes);
      if (!keepOpen) s.end();
    });
  });
}

/** Connect envelope: 1 flag byte, 4-byte big-endian length, payload. */
export function envelope(payload, flags = 0) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const h = Buffer.alloc(5);
  h[0] = flags;
  h.writeUInt32BE(p.length, 1);
  return Buffer.concat([h, p]);
}

/** Splits a Connect stream body into { flags, json } envelopes (null json when not JSON). */
export function envelopes(buf) {
  const out = [];
  let o = 0;
  while (o + 5 <= buf.length) {
    const n = buf.readUInt32BE(o + 1);
    if (o + 5 + n > buf.length) break;
    const p = buf.subarray(o + 5, o + 5 + n).toString();
    let json = null;
    try { json = JSON.parse(p); } catch {}
    out.push({ flags: buf[o], json });
    o += 5 + n;
  }
  return out;
}
