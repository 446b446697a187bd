// What the daemon and envd benchmarks share: the repository's root, the official `e2b` SDK as
// tests/integration installed it, and the integration tests' helpers.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

export const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(repo, 'tests/integration/package.json'));
export const e2b = await import(pathToFileURL(require.resolve('e2b')).href);
export const hutch = await import(pathToFileURL(path.join(repo, 'tests/integration/hutch-helpers.mjs')).href);
export const helpers = await import(pathToFileURL(path.join(repo, 'tests/integration/helpers.mjs')).href);
