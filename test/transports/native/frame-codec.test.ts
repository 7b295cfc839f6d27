/** The frame codec in-process: incremental decoding, every bad-frame case, and continuation frames the client reassembles. */
import t from 'tap';
import { TabAgentNativeClient, type NativePort } from '../../../src/client/native-messaging.js';
import { encodeFrame, FrameDecoder, frameText, splitJsonText } from '../../../src/transports/native/frame-codec.js';
import { header } from './helpers.js';

t.test('frames decode whether split byte by byte or merged', async (tt) => {
  const bytes = Buffer.concat([frameText('{"a":1}'), frameText('{"b":"ü"}'), frameText('[3]')]);
  const one = new FrameDecoder();
  const values = [...bytes].flatMap((b) => one.push(Buffer.from([b]))).map((i) => (i.ok ? i.value : i.error.code));
  tt.same(values, [{ a: 1 }, { b: 'ü' }, [3]]);
  tt.same(new FrameDecoder().push(bytes).map((i) => i.ok), [true, true, true]);
});

t.test('bad frames become error items and decoding carries on', async (tt) => {
  const d = new FrameDecoder(16);
  const items = d.push(Buffer.concat([header(0), header(17), Buffer.alloc(17), frameText('{"x":'), frameText('1')]));
  tt.same(items.map((i) => (i.ok ? i.value : i.error.code)), ['PROTOCOL_ERROR', 'PAYLOAD_TOO_LARGE', 'JSON_ERROR', 1]);
  d.push(header(5));
  tt.match(d.end()[0], { ok: false, error: { code: 'PROTOCOL_ERROR', message: /0 of 5/ } });
});

t.test('continuation frames: each fits, and the client joins them into the original frame', async (tt) => {
  const data = { text: '"\\'.repeat(1000) + '🙂é'.repeat(3000) + 'z'.repeat(5000) };
  const frame = { request_id: 'big', success: true, data };
  const max = 4096;
  const decoded = new FrameDecoder().push(encodeFrame(frame, max)).map((i) => (i.ok ? i.value : null)) as { part: number; parts: number; data: string }[];
  tt.ok(decoded.length > 5, `${decoded.length} parts`);
  for (const p of decoded) tt.ok(Buffer.byteLength(JSON.stringify(p)) <= max, `part ${p.part} fits`);
  tt.same(JSON.parse(decoded.map((p) => p.data).join('')), frame);

  let listener: (m: unknown) => void = () => {};
  const port: NativePort = { postMessage: () => {}, onMessage: { addListener: (l) => void (listener = l) }, onDisconnect: { addListener: () => {} }, disconnect: () => {} };
  const client = new TabAgentNativeClient(port);
  const reply = client.request('x', null, { requestId: 'big' });
  for (const p of decoded) listener(p);
  tt.same(await reply, data);
  tt.same(splitJsonText('ab🙂', 4), ['ab', '🙂'], 'a surrogate pair is never cut');
});
