import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { ConfigStore, describeConfig, loadConfig } from '../../src/runtime/config.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-config-'));
function file(name: string, text: string): string {
  const p = path.join(dir, name);
  writeFileSync(p, text);
  return p;
}

t.test('defaults < file < environment < flags, with the source of each value', async (t) => {
  const toml = file('a.toml', 'port = 4000\nwebrtc_port = 9000\nlog_level = "debug"\n[http]\ncors_origins = ["http://localhost:5173"]\n');
  const r = loadConfig({ file: toml, env: { TABAGENT_PORT: '5000', TABAGENT_LOG_LEVEL: 'warn' }, flags: { log_level: 'error', mode: undefined } });
  t.equal(r.config.mode, 'all');
  t.equal(r.config.webrtc_port, 9000);
  t.equal(r.config.port, 5000);
  t.equal(r.config.log_level, 'error');
  t.same(r.config.http.cors_origins, ['http://localhost:5173']);
  t.equal(r.config.host, '127.0.0.1', 'never all interfaces by default');
  t.equal(r.sources['mode'], 'default');
  t.equal(r.sources['webrtc_port'], 'file');
  t.equal(r.sources['port'], 'env');
  t.equal(r.sources['log_level'], 'flag');
  t.equal(r.sources['http.cors_origins'], 'file');
  const rows = describeConfig(r);
  t.ok(rows.some((row) => row.key === 'http.body_limit_bytes' && row.source === 'default'), 'every key is listed');
});

t.test('YAML files and nested environment variables', async (t) => {
  const yaml = file('b.yaml', 'mode: http\ninference:\n  threads: 1\n');
  const r = loadConfig({ file: yaml, env: { TABAGENT_HTTP__CORS_ORIGINS: 'http://a, http://b', TABAGENT_STORAGE__SYNC: 'false' } });
  t.equal(r.config.mode, 'http');
  t.equal(r.config.inference.threads, 1);
  t.same(r.config.http.cors_origins, ['http://a', 'http://b']);
  t.equal(r.config.storage.sync, false);
  t.equal(r.config.models_dir, path.join(r.config.data_dir, 'models'), 'models_dir follows data_dir');
});

t.test('each validation error names the key, the value, the source and what is allowed', async (t) => {
  const bad = file('c.toml', 'mode = "turbo"\n');
  t.throws(() => loadConfig({ file: bad, env: {} }), { code: 'VALIDATION_ERROR', message: /mode = "turbo" from config file .*c\.toml: .*"native" \| "http"/ });
  t.throws(() => loadConfig({ env: { TABAGENT_PORT: '70000' } }), { message: /port = 70000 from environment \(TABAGENT_PORT\)/ });
  t.throws(() => loadConfig({ env: { TABAGENT_PORT: 'abc' } }), { message: /TABAGENT_PORT: 'abc' is not a number/ });
  t.throws(() => loadConfig({ env: {}, flags: { port: -1 } }), { message: /port = -1 from command-line flag/ });
  t.throws(() => loadConfig({ env: { TABAGENT_STORAGE__SYNC: 'maybe' } }), { message: /TABAGENT_STORAGE__SYNC: 'maybe' is not a boolean/ });
});

t.test('a bad config file is refused with a message naming it', async (t) => {
  t.throws(() => loadConfig({ file: file('d.toml', 'port = = 3'), env: {} }), { code: 'VALIDATION_ERROR', message: /d\.toml is not valid TOML/ });
  t.throws(() => loadConfig({ file: file('e.yml', 'a: [1,'), env: {} }), { message: /e\.yml is not valid YAML/ });
  t.throws(() => loadConfig({ file: file('f.json', '{}'), env: {} }), { message: /unknown extension '\.json'/ });
  t.throws(() => loadConfig({ file: path.join(dir, 'missing.toml'), env: {} }), { code: 'IO_ERROR', message: /cannot read config file/ });
  t.throws(() => loadConfig({ file: file('g.toml', 'prot = 3000\n[http]\nbody_limit = 1\n'), env: {} }), { message: /unknown keys prot, http\.body_limit/ });
});

t.test('reload applies hot keys and reports critical ones as needing a restart', async (t) => {
  const p = file('h.toml', 'log_level = "info"\nport = 3100\n');
  const store = new ConfigStore(loadConfig({ file: p, env: {} }), { file: p, env: {} });
  writeFileSync(p, 'log_level = "debug"\nport = 3200\n[http]\ncors_origins = ["http://x"]\n');
  const change = store.reload();
  t.same(change.applied.sort(), ['http.cors_origins', 'log_level']);
  t.same(change.needsRestart, ['port']);
  t.equal(store.config.log_level, 'debug');
  t.same(store.config.http.cors_origins, ['http://x']);
  t.equal(store.config.port, 3100, 'a critical key keeps its running value');
  writeFileSync(p, 'log_level = "loud"\n');
  t.throws(() => store.reload(), { code: 'VALIDATION_ERROR' });
  t.equal(store.config.log_level, 'debug', 'an invalid file keeps the old config');
});

t.test('the watcher reloads when the file changes', async (t) => {
  const p = file('w.toml', 'log_level = "info"\n');
  const store = new ConfigStore(loadConfig({ file: p, env: {} }), { file: p, env: {} });
  const changed = new Promise<string[]>((resolve) => store.onChange((c) => resolve(c.applied)));
  store.watch(() => {});
  // The watcher does not hold the process open by itself (a server's sockets do); this test must.
  const keepAlive = setInterval(() => {}, 1000);
  setTimeout(() => writeFileSync(p, 'log_level = "warn"\n'), 50);
  t.same(await changed, ['log_level']);
  clearInterval(keepAlive);
  store.close();
});
