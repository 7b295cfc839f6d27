import t from 'tap';
import * as v from 'valibot';
import { Actor } from '../../src/actors/actor.js';
import { RouterActor } from '../../src/actors/router.js';
import { Bus } from '../../src/bus/bus.js';
import { defineRoute } from '../../src/protocol/route.js';
import { stopGeneration } from '../../src/protocol/routes/control.js';
import { silentLog } from '../../src/runtime/logger.js';
import { Gateway } from '../../src/transports/gateway.js';

/** What a rejected gateway call carries (a TabAgentError as a carrier sees it). */
type Failure = { code: string; message: string; details: any };

const echo = defineRoute({ name: 'echo', owner: 'worker', summary: 'echo', input: v.object({ text: v.string(), times: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1)), 1) }) });
const wait = defineRoute({ name: 'wait', owner: 'worker', summary: 'waits for cancel', input: v.optional(v.null()) });
const orphan = defineRoute({ name: 'orphan', owner: 'nobody', summary: 'no actor', input: v.unknown() });

class Worker extends Actor {
  constructor(bus: Bus) {
    super('worker', bus, silentLog);
    this.on('echo', (p: { text: string; times: number }) => p.text.repeat(p.times));
    this.on('wait', (_p, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve({ finish_reason: 'cancelled' }))));
  }
}

async function setup() {
  const bus = new Bus();
  bus.open('router');
  bus.open('worker');
  bus.attach('router', new RouterActor(bus, silentLog, [echo, wait, orphan, stopGeneration]));
  bus.attach('worker', new Worker(bus));
  return new Gateway(bus, 'test');
}

t.test('validated payloads reach the owner with defaults applied', async (t) => {
  const gw = await setup();
  t.equal(await gw.call('echo', { text: 'ab' }, 'r1'), 'ab');
  t.equal(await gw.call('echo', { text: 'ab', times: 2 }, 'r2'), 'abab');
});

t.test('validation errors name the field', async (t) => {
  const gw = await setup();
  const err = (await gw.call('echo', { text: 5, times: 0 }, 'r1').catch((e: unknown) => e)) as Failure;
  t.equal(err.code, 'VALIDATION_ERROR');
  t.match(err.message, /text: .*string/);
  t.match(err.message, /times: .*>=1/);
  t.same(err.details.map((d: { field: string }) => d.field), ['text', 'times']);
});

t.test('unknown routes are ROUTE_NOT_FOUND and list what exists', async (t) => {
  const gw = await setup();
  const err = (await gw.call('nope', {}, 'r1').catch((e: unknown) => e)) as Failure;
  t.equal(err.code, 'ROUTE_NOT_FOUND');
  t.match(err.message, /unknown route 'nope'/);
  t.ok(err.details.available.includes('echo'));
});

t.test('a route whose actor is not running in this mode is UNAVAILABLE, saying so', async (t) => {
  const gw = await setup();
  await t.rejects(gw.call('orphan', {}, 'r1'), { code: 'UNAVAILABLE', message: /not served in this mode/ });
});

t.test('stop_generation cancels an in-flight request by its request_id from another caller', async (t) => {
  const gw = await setup();
  const running = gw.call('wait', null, 'gen-1');
  await new Promise((r) => setTimeout(r, 10));
  t.same(await gw.call('stop_generation', { request_id: 'gen-1' }, 'stop-1'), { request_id: 'gen-1', stopped: true });
  t.same(await running, { finish_reason: 'cancelled' });
  t.same(await gw.call('stop_generation', { request_id: 'gen-1' }, 'stop-2'), { request_id: 'gen-1', stopped: false }, 'nothing left to stop');
});

t.test("a request without a priority gets its route's default; one that names a priority keeps it", async (t) => {
  const bus = new Bus();
  bus.open('router');
  bus.open('worker');
  const urgent = defineRoute({ name: 'urgent', owner: 'worker', summary: 'reports its priority', input: v.optional(v.null()), priority: 'interactive' });
  bus.attach('router', new RouterActor(bus, silentLog, [urgent]));
  bus.attach('worker', { receive: async (ctx) => ctx.priority });
  const gw = new Gateway(bus, 'test', undefined, (route) => (route === 'urgent' ? 'interactive' : undefined));
  t.equal(await gw.call('urgent', null, 'p1'), 'interactive');
  t.equal(await gw.call('urgent', null, 'p2', { priority: 'background' }), 'background');
});
