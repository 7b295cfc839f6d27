import t from 'tap';
import { loadConfig, type Config } from '../../../src/runtime/config.js';
import { AccessPolicy } from '../../../src/transports/http/security.js';

const configWith = (allowedHosts: string[]): Config => loadConfig({ env: {}, flags: { 'http.allowed_hosts': allowedHosts } }).config;

t.test('the Host check remembers only an allowed Host, and a reloaded config is applied at once', async (t) => {
  let config = configWith(['tabagent.lan']);
  const policy = new AccessPolicy(() => config, '127.0.0.1');
  t.equal(policy.checkHost('tabagent.lan:3000'), undefined);
  t.equal(policy.checkHost('tabagent.lan:3000'), undefined, 'the same Host again');
  t.match(policy.checkHost('attacker.example:3000'), { code: 'FORBIDDEN', message: /host 'attacker.example' is not allowed/ }, 'a refused Host right after an allowed one');
  t.match(policy.checkHost('attacker.example:3000'), { code: 'FORBIDDEN' }, 'and again');
  t.equal(policy.checkHost('tabagent.lan:3000'), undefined);
  config = configWith([]);
  t.match(policy.checkHost('tabagent.lan:3000'), { code: 'FORBIDDEN', message: /host 'tabagent.lan'/ }, 'taken out of http.allowed_hosts: refused from the next request');
  t.equal(policy.checkHost('localhost:3000'), undefined, 'loopback names are always allowed');
  t.match(policy.checkHost(''), { code: 'BAD_REQUEST', message: /Host header is required/ });
});
