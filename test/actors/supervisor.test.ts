import t from 'tap';
import { Actor } from '../../src/actors/actor.js';
import { Supervisor } from '../../src/actors/supervisor.js';
import { Bus } from '../../src/bus/bus.js';
import { createLogger } from '../../src/runtime/logger.js';

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger('info', (line) => lines.push(JSON.parse(line)));
  return { log, lines };
}

let instances = 0;
class Fragile extends Actor {
  readonly generation = ++instances;
  constructor(bus: Bus, log: ReturnType<typeof createLogger>) {
    super('fragile', bus, log);
    this.on('who', () => this.generation);
    this.on('fault', () => {
      // A fault the actor cannot recover from itself (a lost handle, say): it reports a crash.
      setImmediate(() => this.crash(new Error('handle lost')));
      return new Promise(() => {});
    });
    this.on('throw', () => {
      throw new Error('bad request');
    });
  }
}

const req = (bus: Bus, route: string) => bus.request('fragile', { route, payload: null, requestId: route }, { from: 'test' });

t.test('a crashed actor is restarted with backoff and logged; its running request fails, later ones are served', async (t) => {
  instances = 0;
  const bus = new Bus();
  const { log, lines } = capture();
  const sup = new Supervisor(bus, log, { initialMs: 20, maxMs: 100, resetAfterMs: 60_000 });
  await sup.spawn({ address: 'fragile', create: () => new Fragile(bus, log) });
  t.equal(await req(bus, 'who'), 1);
  await t.rejects(req(bus, 'fault'), { code: 'INTERNAL_ERROR', message: /fragile crashed: handle lost/ });
  t.equal(await req(bus, 'who'), 2, 'a fresh instance answers the next request');
  t.equal(sup.restarts('fragile'), 1);
  t.ok(lines.some((l) => l['msg'] === 'actor crashed; restarting' && l['actor'] === 'fragile' && l['in_ms'] === 20));
  await t.rejects(req(bus, 'fault'));
  t.equal(await req(bus, 'who'), 3);
  t.ok(lines.some((l) => l['msg'] === 'actor crashed; restarting' && l['in_ms'] === 40), 'the second restart waits twice as long');
  await sup.stopAll();
});

t.test('a throwing handler is a failed request, not a crash', async (t) => {
  instances = 0;
  const bus = new Bus();
  const { log } = capture();
  const sup = new Supervisor(bus, log);
  await sup.spawn({ address: 'fragile', create: () => new Fragile(bus, log) });
  await t.rejects(req(bus, 'throw'), { code: 'INTERNAL_ERROR', message: 'bad request' });
  t.equal(await req(bus, 'who'), 1, 'same instance keeps serving');
  t.equal(sup.restarts('fragile'), 0);
  await sup.stopAll();
});

t.test('stopAll stops actors in reverse order of start', async (t) => {
  const bus = new Bus();
  const order: string[] = [];
  class Named extends Actor {
    override async stop() {
      order.push(this.address);
    }
  }
  const sup = new Supervisor(bus, capture().log);
  await sup.spawn({ address: 'a', create: () => new Named('a', bus, capture().log) });
  await sup.spawn({ address: 'b', create: () => new Named('b', bus, capture().log) });
  await sup.stopAll();
  t.same(order, ['b', 'a']);
  await t.rejects(bus.request('a', { route: 'x', payload: null, requestId: 'x' }, { from: 'test' }), { code: 'UNAVAILABLE' });
});
