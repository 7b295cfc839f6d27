import t from 'tap';
import { Bus, Forward, type BusTarget, type RequestContext } from '../../src/bus/bus.js';
import { decodeEnvelope, encodeEnvelope, type Envelope } from '../../src/bus/envelope.js';
import { TabAgentError } from '../../src/protocol/errors.js';

const body = (route: string, payload: unknown = null) => ({ route, payload, requestId: `r-${route}` });

function target(fn: (ctx: RequestContext) => Promise<unknown> | unknown): BusTarget {
  return { receive: (ctx) => Promise.resolve().then(() => fn(ctx)) };
}

t.test('request/reply by correlation', async (t) => {
  const bus = new Bus();
  bus.open('echo');
  bus.attach('echo', target((ctx) => ({ got: ctx.envelope.body.payload, from: ctx.envelope.from })));
  const reply = await bus.request('echo', body('x', { n: 1 }), { from: 'test' });
  t.same(reply, { got: { n: 1 }, from: 'test' });
});

t.test('a target may answer at once: a plain value is the reply, a throw is the error, a promise is awaited', async (t) => {
  const bus = new Bus();
  bus.open('sync');
  bus.attach('sync', {
    receive: (ctx) => {
      const route = ctx.envelope.body.route;
      if (route === 'fail') throw new TabAgentError('NOT_FOUND', 'no such thing');
      if (route === 'later') return Promise.resolve('later');
      return { route, payload: ctx.envelope.body.payload };
    },
  });
  t.same(await bus.request('sync', body('now', 7), { from: 'test' }), { route: 'now', payload: 7 });
  await t.rejects(bus.request('sync', body('fail'), { from: 'test' }), { code: 'NOT_FOUND', message: 'no such thing' });
  t.equal(await bus.request('sync', body('later'), { from: 'test' }), 'later');
  const many = await Promise.all(Array.from({ length: 2000 }, (_, i) => bus.request('sync', body('now', i), { from: 'test' })));
  t.same(many.map((r) => (r as { payload: number }).payload), Array.from({ length: 2000 }, (_, i) => i), 'more answers than a mailbox holds, each to its own caller');
});

t.test('a stream delivers chunks in order, then one final reply', async (t) => {
  const bus = new Bus();
  bus.open('streamer');
  bus.attach('streamer', target(async (ctx) => {
    for (let i = 0; i < 5; i++) {
      ctx.emit(i);
      await new Promise((r) => setImmediate(r));
    }
    return 'done';
  }));
  const chunks: unknown[] = [];
  const reply = await bus.request('streamer', body('s'), { from: 'test', onChunk: (c) => chunks.push(c) });
  t.same(chunks, [0, 1, 2, 3, 4]);
  t.equal(reply, 'done');
});

t.test('cancellation reaches the running handler through its AbortSignal', async (t) => {
  const bus = new Bus();
  bus.open('slow');
  let sawAbort = false;
  bus.attach('slow', target((ctx) => new Promise((resolve) => {
    ctx.signal.addEventListener('abort', () => {
      sawAbort = true;
      resolve({ finish_reason: 'cancelled' });
    });
  })));
  const ac = new AbortController();
  const p = bus.request('slow', body('g'), { from: 'test', signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  t.same(await p, { finish_reason: 'cancelled' }, 'the handler ends the request itself, with what it produced');
  t.ok(sawAbort);
});

t.test('a forwarded request keeps its identity: chunks and reply go to the caller, its cancel and deadline reach the owner', async (t) => {
  const bus = new Bus();
  bus.open('owner');
  bus.open('middle');
  const reasons: string[] = [];
  const seen: { from: string; route: string }[] = [];
  bus.attach('owner', target((ctx) => {
    seen.push({ from: ctx.envelope.from, route: ctx.envelope.body.route });
    ctx.emit({ delta: 'a' });
    return new Promise((resolve) => ctx.signal.addEventListener('abort', () => {
      reasons.push((ctx.signal.reason as TabAgentError).code);
      resolve('partial');
    }));
  }));
  bus.attach('middle', { receive: (ctx) => new Forward('owner', { ...ctx.envelope.body, route: 'inner' }) });
  const ac = new AbortController();
  const chunks: unknown[] = [];
  const outer = bus.request('middle', body('outer'), { from: 'test', signal: ac.signal, onChunk: (c) => chunks.push(c) });
  await new Promise((r) => setTimeout(r, 10));
  ac.abort();
  t.equal(await outer, 'partial', 'the owner ended with what it had');
  t.same(chunks, [{ delta: 'a' }], "the owner's chunks reached the caller");
  t.same(seen, [{ from: 'middle', route: 'inner' }], 'the owner got the forwarded body, from the forwarder');
  const timed = bus.request('middle', body('outer2'), { from: 'test', timeoutMs: 20 });
  await t.rejects(timed, { code: 'TIMEOUT' });
  await new Promise((r) => setTimeout(r, 10));
  t.same(reasons, ['CANCELLED', 'TIMEOUT'], 'the forwarded request saw each abort with its reason');
});

t.test('cancelWhere cancels the requests in flight it selects, and only those', async (t) => {
  const bus = new Bus();
  bus.open('slow');
  const ended: string[] = [];
  bus.attach('slow', target((ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => {
    ended.push(ctx.envelope.body.requestId);
    resolve('stopped');
  }))));
  const a = bus.request('slow', body('a'), { from: 'test' });
  const b = bus.request('slow', body('b'), { from: 'test' });
  await new Promise((r) => setTimeout(r, 5));
  t.equal(bus.cancelWhere((env) => env.body.requestId === 'r-a'), 1, 'one request matched');
  t.equal(await a, 'stopped');
  t.same(ended, ['r-a'], 'the other request runs on');
  t.equal(bus.cancelWhere((env) => env.body.requestId === 'r-a'), 0, 'an ended request is not found again');
  bus.cancelWhere(() => true);
  t.equal(await b, 'stopped');
});

t.test('a forward to a missing or full address fails the request with a clear error', async (t) => {
  const bus = new Bus();
  bus.open('full', { mailboxCapacity: 1, concurrency: 1 });
  bus.open('middle');
  bus.attach('middle', { receive: (ctx) => new Forward(ctx.envelope.body.route, ctx.envelope.body) });
  await t.rejects(bus.request('middle', body('nowhere'), { from: 'test' }), { code: 'UNAVAILABLE', message: /no actor at nowhere/ });
  // 'full' has no target yet: its one mailbox slot fills and the next forward is refused.
  const first = bus.request('middle', body('full'), { from: 'test' });
  await t.rejects(bus.request('middle', body('full'), { from: 'test' }), { code: 'BUSY', message: /full is busy/ });
  bus.attach('full', target(() => 'served'));
  t.equal(await first, 'served', 'the forward that fitted is served');
});

t.test('a cancelled queued request ends with CANCELLED without running', async (t) => {
  const bus = new Bus();
  bus.open('one', { concurrency: 1 });
  let release!: () => void;
  let ran = 0;
  bus.attach('one', target((ctx) => {
    ran++;
    if (ctx.envelope.body.route === 'block') return new Promise<void>((r) => (release = r));
    return 'ok';
  }));
  const first = bus.request('one', body('block'), { from: 'test' });
  const ac = new AbortController();
  const second = bus.request('one', body('queued'), { from: 'test', signal: ac.signal });
  ac.abort();
  await t.rejects(second, { code: 'CANCELLED' });
  release();
  await first;
  t.equal(ran, 1, 'the cancelled request never reached the handler');
});

t.test('a deadline that passes ends the request with TIMEOUT and aborts the handler', async (t) => {
  const bus = new Bus();
  bus.open('never');
  let aborted: unknown;
  bus.attach('never', target((ctx) => new Promise(() => {
    ctx.signal.addEventListener('abort', () => (aborted = ctx.signal.reason));
  })));
  await t.rejects(bus.request('never', body('n'), { from: 'test', timeoutMs: 30 }), { code: 'TIMEOUT' });
  t.equal((aborted as TabAgentError).code, 'TIMEOUT');
});

t.test('a full mailbox answers BUSY and keeps what it already accepted', async (t) => {
  const bus = new Bus();
  bus.open('tight', { mailboxCapacity: 2, concurrency: 1 });
  const gates: (() => void)[] = [];
  bus.attach('tight', target((ctx) => new Promise((r) => gates.push(() => r(ctx.envelope.body.payload)))));
  const running = bus.request('tight', body('a', 1), { from: 'test' });
  const q1 = bus.request('tight', body('b', 2), { from: 'test' });
  const q2 = bus.request('tight', body('c', 3), { from: 'test' });
  const err = await bus.request('tight', body('d', 4), { from: 'test' }).catch((e: TabAgentError) => e);
  t.equal((err as TabAgentError).code, 'BUSY');
  t.match((err as TabAgentError).message, /2 requests already queued/);
  t.ok(((err as TabAgentError).details as { retry_after_ms: number }).retry_after_ms > 0, 'says when to retry');
  for (let released = 0; released < 3; released++) {
    while (gates.length === 0) await new Promise((r) => setImmediate(r));
    gates.shift()!();
  }
  t.same(await Promise.all([running, q1, q2]), [1, 2, 3], 'accepted requests all complete');
});

t.test('a throwing handler becomes INTERNAL_ERROR for that request only', async (t) => {
  const bus = new Bus();
  bus.open('flaky');
  bus.attach('flaky', target((ctx) => {
    if (ctx.envelope.body.route === 'boom') throw new Error('kaboom');
    return 'fine';
  }));
  await t.rejects(bus.request('flaky', body('boom'), { from: 'test' }), { code: 'INTERNAL_ERROR', message: 'kaboom' });
  t.equal(await bus.request('flaky', body('ok'), { from: 'test' }), 'fine');
});

t.test('typed errors keep their code and details', async (t) => {
  const bus = new Bus();
  bus.open('typed');
  bus.attach('typed', target(() => {
    throw new TabAgentError('NOT_FOUND', 'no such session', { session_id: 'x' });
  }));
  await t.rejects(bus.request('typed', body('t'), { from: 'test' }), { code: 'NOT_FOUND', details: { session_id: 'x' } });
});

t.test('requests to an address nobody opened are UNAVAILABLE', async (t) => {
  await t.rejects(new Bus().request('nobody', body('x'), { from: 'test' }), { code: 'UNAVAILABLE' });
});

t.test('requests queue while no target is attached and run once one is', async (t) => {
  const bus = new Bus();
  bus.open('later');
  const p = bus.request('later', body('x', 7), { from: 'test' });
  bus.attach('later', target((ctx) => ctx.envelope.body.payload));
  t.equal(await p, 7);
});

t.test('events reach every subscriber; a failing one does not stop the others', async (t) => {
  const bus = new Bus();
  const seen: unknown[] = [];
  bus.subscribe('topic', () => {
    throw new Error('bad listener');
  });
  const off = bus.subscribe('topic', (env) => seen.push(env.body));
  bus.publish('topic', { a: 1 }, 'test');
  off();
  bus.publish('topic', { a: 2 }, 'test');
  t.same(seen, [{ a: 1 }]);
});

t.test('envelopes survive the msgpack codec, optional fields included', async (t) => {
  const full: Envelope = { id: 'a-1', kind: 'request', from: 'x', to: 'y', correlationId: 'c', priority: 'interactive', deadline: 123, traceId: 't', body: { route: 'chat', payload: { messages: [{ role: 'user', content: 'hé' }] }, requestId: 'r' } };
  t.same(decodeEnvelope(encodeEnvelope(full)), full);
  const bare: Envelope = { id: 'a-2', kind: 'chunk', from: 'x', to: 'y', priority: 'normal', traceId: 't', body: { delta: 'x' } };
  const back = decodeEnvelope(encodeEnvelope(bare));
  t.same(back, bare);
  t.notOk('deadline' in back, 'absent optional fields stay absent');
});
