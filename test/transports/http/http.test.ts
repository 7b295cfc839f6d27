/** The HTTP transport's own behaviour: errors (400/404/405/413), request ids, Host and Origin rules, CORS, the route listing, OpenAPI and /docs. */
import { Validator } from '@seriousme/openapi-schema-validator';
import t from 'tap';
import WebSocket from 'ws';
import { allRoutes } from '../../../src/protocol/routes/index.js';
import { raw } from './client.js';
import { startStandInServer, startTestServer } from './fixture.js';
import { settle } from '../../helpers/wait.js';

const server = await startTestServer({ logLevel: 'debug', flags: { 'http.body_limit_bytes': 4096, 'http.cors_origins': ['http://app.example'], extension_ids: ['abcdefghijklmnopabcdefghijklmnop'] } });
t.teardown(() => server.stop());

t.test('health answers 200 JSON and echoes X-Request-Id', async (t) => {
  const res = await raw(server.url, 'GET', '/v1/health', { headers: { 'X-Request-Id': 'my-req-42' } });
  t.equal(res.status, 200);
  t.equal(res.headers['x-request-id'], 'my-req-42');
  t.equal(res.json().status, 'ok');
  const made = await raw(server.url, 'GET', '/v1/health');
  t.ok(made.headers['x-request-id'], 'a request without one gets an id');
});

t.test('the request id is in the log lines of that request', async (t) => {
  await raw(server.url, 'POST', '/v1/generation/stop', { headers: { 'X-Request-Id': 'log-me-1' }, body: '{}' });
  await raw(server.url, 'GET', '/v1/health', { headers: { 'X-Request-Id': 'log-me-2' } });
  for (const id of ['log-me-1', 'log-me-2']) {
    const mentions = (): Record<string, unknown>[] => server.logs().filter((l) => JSON.stringify(l).includes(id));
    const lines = await settle(mentions, (l) => l.length > 0);
    t.ok(lines.length > 0, `${id} is logged`);
    for (const l of lines) t.equal(l['request_id'], id, `'${String(l['msg'])}' carries request_id ${id}`);
  }
});

t.test('bad JSON is a 400 naming the position', async (t) => {
  const res = await raw(server.url, 'POST', '/v1/generation/stop', { headers: { 'Content-Type': 'application/json', 'X-Request-Id': 'bad-json-1' }, body: '{"request_id": }' });
  t.equal(res.status, 400);
  t.match(res.headers['content-type'], /application\/problem\+json/);
  const p = res.json();
  t.equal(p.code, 'JSON_ERROR');
  t.equal(p.errors.position, 15);
  t.match(p.detail, /position 15 \(line 1, column 16\)/);
  t.equal(p.request_id, 'bad-json-1', 'the error body carries the request id');
});

t.test('a validation error is a 400 naming the field', async (t) => {
  const res = await raw(server.url, 'POST', '/v1/generation/stop', { body: JSON.stringify({ request_id: '' }) });
  t.equal(res.status, 400);
  const p = res.json();
  t.equal(p.code, 'VALIDATION_ERROR');
  t.equal(p.errors[0].field, 'request_id');
  t.match(p.detail, /request_id/);
});

t.test('a body that is not an object is refused', async (t) => {
  const res = await raw(server.url, 'POST', '/v1/generation/stop', { body: '[1,2]' });
  t.equal(res.status, 400);
  t.match(res.json().detail, /must be a JSON object, not an array/);
});

t.test('unknown path 404, wrong method 405 with Allow', async (t) => {
  const nf = await raw(server.url, 'GET', '/v1/nothing-here');
  t.equal(nf.status, 404);
  t.equal(nf.json().code, 'ROUTE_NOT_FOUND');
  const na = await raw(server.url, 'DELETE', '/v1/health');
  t.equal(na.status, 405);
  t.equal(na.headers['allow'], 'GET, OPTIONS');
  t.same(na.json().errors.allowed, ['GET']);
  const openai = await raw(server.url, 'GET', '/v1/chat/completions');
  t.equal(openai.status, 405);
  t.equal(openai.headers['allow'], 'POST, OPTIONS');
  t.match(openai.json().error, { code: 'method_not_allowed', message: /GET is not allowed on \/v1\/chat\/completions/ }, "an OpenAI path answers a wrong method in OpenAI's error shape");
  const model = await raw(server.url, 'DELETE', '/v1/models/some-model');
  t.equal(model.json().error?.code, 'method_not_allowed', 'parameterised OpenAI paths too');
});

t.test('a body past the limit is a 413, declared or streamed', async (t) => {
  const big = JSON.stringify({ request_id: 'x'.repeat(8000) });
  const declared = await raw(server.url, 'POST', '/v1/generation/stop', { body: big });
  t.equal(declared.status, 413);
  t.equal(declared.json().code, 'PAYLOAD_TOO_LARGE');
  t.match(declared.json().detail, /4096 bytes/);
  const chunked = await raw(server.url, 'POST', '/v1/generation/stop', { headers: { 'Transfer-Encoding': 'chunked' }, body: big });
  t.equal(chunked.status, 413);
  const after = await raw(server.url, 'GET', '/v1/health');
  t.equal(after.status, 200, 'the server keeps serving');
});

t.test('an unusable X-Request-Id is refused', async (t) => {
  const res = await raw(server.url, 'GET', '/v1/health', { headers: { 'X-Request-Id': 'x'.repeat(200) } });
  t.equal(res.status, 400);
  t.match(res.json().detail, /X-Request-Id/);
});

t.test('Host must be loopback or configured (DNS rebinding)', async (t) => {
  const evil = await raw(server.url, 'GET', '/v1/health', { headers: { Host: `attacker.example:${server.port}` } });
  t.equal(evil.status, 403);
  t.match(evil.json().detail, /host 'attacker.example' is not allowed/);
  for (const host of [`localhost:${server.port}`, `127.0.0.1:${server.port}`, `[::1]:${server.port}`]) {
    t.equal((await raw(server.url, 'GET', '/v1/health', { headers: { Host: host } })).status, 200, host);
  }
});

t.test('Origin rules and CORS', async (t) => {
  const evil = await raw(server.url, 'POST', '/v1/generation/stop', { headers: { Origin: 'https://evil.example' }, body: '{"request_id":"a"}' });
  t.equal(evil.status, 403, 'a web page on another origin cannot drive the server');
  t.equal(evil.headers['access-control-allow-origin'], undefined);
  t.equal((await raw(server.url, 'GET', '/v1/health', { headers: { Origin: 'null' } })).status, 403, 'opaque origins are refused');

  const ok = await raw(server.url, 'GET', '/v1/health', { headers: { Origin: 'http://app.example' } });
  t.equal(ok.status, 200);
  t.equal(ok.headers['access-control-allow-origin'], 'http://app.example');
  t.match(ok.headers['access-control-expose-headers'], /X-Request-Id/);

  const ext = await raw(server.url, 'GET', '/v1/health', { headers: { Origin: 'chrome-extension://abcdefghijklmnopabcdefghijklmnop' } });
  t.equal(ext.status, 200, 'configured extension origins are allowed');

  const same = await raw(server.url, 'POST', '/v1/generation/stop', { headers: { Origin: `http://127.0.0.1:${server.port}` }, body: '{"request_id":"a"}' });
  t.equal(same.status, 200, 'same-origin pages (Swagger UI) are allowed');

  const pre = await raw(server.url, 'OPTIONS', '/v1/chat/completions', {
    headers: { Origin: 'http://app.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type, authorization', 'Access-Control-Request-Private-Network': 'true' },
  });
  t.equal(pre.status, 204);
  t.equal(pre.headers['access-control-allow-origin'], 'http://app.example');
  t.match(pre.headers['access-control-allow-methods'], /POST/);
  t.equal(pre.headers['access-control-allow-headers'], 'content-type, authorization');
  t.equal(pre.headers['access-control-allow-private-network'], 'true');

  const badPre = await raw(server.url, 'OPTIONS', '/v1/chat/completions', { headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
  t.equal(badPre.status, 403);
});

t.test('GET /v1/routes lists every route with its bindings and every endpoint', async (t) => {
  const res = await raw(server.url, 'GET', '/v1/routes');
  t.equal(res.status, 200);
  const body = res.json();
  const health = body.routes.find((r: { name: string }) => r.name === 'health');
  t.same(health.http, [{ method: 'GET', path: '/v1/health' }]);
  t.ok(body.routes.some((r: { name: string }) => r.name === 'stop_generation'));
  const chat = body.endpoints.find((e: { path: string }) => e.path === '/v1/chat/completions');
  t.same(chat, { method: 'POST', path: '/v1/chat/completions', operation: 'openai_chat_completions', route: 'chat' });
});

t.test('the OpenAPI document is valid 3.1 and lists every bound route', async (t) => {
  const doc = (await raw(server.url, 'GET', '/openapi.json')).json();
  t.equal(doc.openapi, '3.1.0');
  t.ok(doc.info.title && doc.info.version);
  const validation = await new Validator().validate(doc);
  t.ok(validation.valid, `the document validates against the OpenAPI 3.1 schema: ${JSON.stringify(validation.errors ?? []).slice(0, 2000)}`);
  const documented = new Set<string>();
  for (const item of Object.values<Record<string, any>>(doc.paths)) for (const op of Object.values<any>(item)) documented.add(op['x-tabagent-route']);
  for (const route of allRoutes) {
    for (const b of route.http ?? []) t.equal(doc.paths[b.path]?.[b.method.toLowerCase()]?.['x-tabagent-route'], route.name, `${b.method} ${b.path} documents route ${route.name}`);
    t.ok(documented.has(route.name), `route ${route.name} has an HTTP operation (its own binding or an OpenAI endpoint)`);
  }
  const listing = (await raw(server.url, 'GET', '/v1/routes')).json();
  for (const route of listing.routes) {
    for (const b of route.http) {
      const op = doc.paths[b.path]?.[b.method.toLowerCase()];
      t.ok(op, `${b.method} ${b.path} (${route.name}) is documented`);
    }
  }
  for (const e of listing.endpoints) t.ok(doc.paths[e.path]?.[e.method.toLowerCase()], `${e.method} ${e.path} is documented`);
  const ids = new Set<string>();
  for (const [p, item] of Object.entries<Record<string, any>>(doc.paths)) {
    t.ok(p.startsWith('/'), `${p} is a path`);
    for (const [method, op] of Object.entries<any>(item)) {
      t.ok(['get', 'post', 'put', 'patch', 'delete'].includes(method), `${method} is an HTTP method`);
      t.notOk(ids.has(op.operationId), `operationId ${op.operationId} is unique`);
      ids.add(op.operationId);
      t.ok(op.responses?.['200'] && op.responses.default, `${method} ${p} has responses`);
      for (const m of p.matchAll(/\{(\w+)\}/g)) t.ok(op.parameters?.some((x: any) => x.in === 'path' && x.name === m[1]), `${p} declares {${m[1]}}`);
    }
  }
  const chatBody = doc.paths['/v1/chat/completions'].post.requestBody.content['application/json'].schema;
  t.ok(chatBody.properties.messages, 'request schemas come from the valibot schemas');
  t.ok(chatBody.required.includes('model'));
});

t.test('/docs serves Swagger UI from local files', async (t) => {
  const redirect = await raw(server.url, 'GET', '/docs');
  t.equal(redirect.status, 301);
  t.equal(redirect.headers['location'], '/docs/');
  const page = await raw(server.url, 'GET', '/docs/');
  t.equal(page.status, 200);
  t.match(page.text, /swagger-ui/);
  t.notMatch(page.text, /https?:\/\/(unpkg|cdn)/, 'no CDN');
  const bundle = await raw(server.url, 'GET', '/docs/swagger-ui-bundle.js');
  t.equal(bundle.status, 200);
  t.ok(bundle.text.length > 100_000);
  const init = await raw(server.url, 'GET', '/docs/swagger-initializer.js');
  t.match(init.text, /\/openapi\.json/);
  t.equal((await raw(server.url, 'GET', '/docs/../package.json')).status, 404);
});

t.test('http.rate_limit_per_minute: 429 with Retry-After past the limit, over HTTP and WebSocket', async (t) => {
  const limited = await startStandInServer({ 'http.rate_limit_per_minute': 3 });
  t.teardown(() => limited.stop());
  for (let i = 0; i < 3; i++) t.equal((await raw(limited.url, 'GET', '/v1/health')).status, 200, `request ${i + 1} is within the limit`);
  const over = await raw(limited.url, 'GET', '/v1/health', { headers: { 'X-Request-Id': 'too-many-1' } });
  t.equal(over.status, 429);
  t.equal(over.json().code, 'RATE_LIMIT_EXCEEDED');
  t.equal(over.json().request_id, 'too-many-1');
  t.match(over.json().detail, /more than 3 requests in a minute/);
  t.ok(Number(over.headers['retry-after']) >= 1 && Number(over.headers['retry-after']) <= 60, `Retry-After: ${over.headers['retry-after']}`);
  const ws = new WebSocket(limited.wsUrl);
  await new Promise((r) => ws.once('open', r));
  const frame = await new Promise<any>((resolve) => {
    ws.once('message', (d: Buffer) => resolve(JSON.parse(d.toString())));
    ws.send(JSON.stringify({ request_id: 'ws-over', route: 'health' }));
  });
  ws.close();
  t.equal(frame.request_id, 'ws-over');
  t.equal(frame.error.code, 'RATE_LIMIT_EXCEEDED', 'WebSocket requests count against the same limit');
});
