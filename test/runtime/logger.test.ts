/** Log formats: JSON lines for collectors, readable lines for a person at a terminal (`npm run dev`). */
import t from 'tap';
import { createLogger, resolveLogFormat } from '../../src/runtime/logger.js';

t.test('json is the default and one object a line', async (tt) => {
  const lines: string[] = [];
  createLogger('info', (l) => lines.push(l), 'json').child({ request_id: 'r1' }).info('request done', { status: 200 });
  const parsed = JSON.parse(lines[0]!) as Record<string, unknown>;
  tt.match(parsed, { level: 'info', msg: 'request done', request_id: 'r1', status: 200 });
  tt.match(String(parsed['time']), /^\d{4}-\d\d-\d\dT/);
});

t.test('pretty is time, level, message and the fields as key=value', async (tt) => {
  const lines: string[] = [];
  createLogger('info', (l) => lines.push(l), 'pretty').warn('model evicted', { model: 'qwen', reason: 'idle for 300 s', bytes: 12 });
  tt.match(lines[0]!, /^\d\d:\d\d:\d\d\.\d{3} WARN  model evicted {2}model=qwen {2}reason="idle for 300 s" {2}bytes=12\n$/);
});

t.test('auto is pretty only on a terminal, and the environment sets the default', async (tt) => {
  tt.equal(resolveLogFormat('auto', true), 'pretty');
  tt.equal(resolveLogFormat('auto', false), 'json', 'a pipe or a file gets JSON');
  const saved = process.env['TABAGENT_LOG_FORMAT'];
  tt.teardown(() => (saved === undefined ? delete process.env['TABAGENT_LOG_FORMAT'] : (process.env['TABAGENT_LOG_FORMAT'] = saved)));
  delete process.env['TABAGENT_LOG_FORMAT'];
  tt.equal(resolveLogFormat(undefined, true), 'json', 'nothing set: JSON, even on a terminal');
  process.env['TABAGENT_LOG_FORMAT'] = 'auto';
  tt.equal(resolveLogFormat(undefined, true), 'pretty', 'worker threads follow the format the server chose');
  tt.equal(resolveLogFormat('pretty', false), 'pretty');
});
