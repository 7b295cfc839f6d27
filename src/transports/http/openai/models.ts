/** The OpenAI model list and model object, from the bus `models` and `model_info` routes (the TabAgent fields ride along). */
import { toTabAgentError } from '../../../protocol/errors.js';
import type { ListenerContext } from '../context.js';
import type { Exchange } from '../exchange.js';
import { decodeParams } from '../payload.js';

type ModelEntry = Record<string, unknown> & { id: string };

function toModelObject(entry: ModelEntry, startedAt: number): Record<string, unknown> {
  const created = typeof entry['created'] === 'number' ? entry['created'] : Math.floor(startedAt / 1000);
  return { ...entry, id: entry.id, object: 'model', created, owned_by: typeof entry['owned_by'] === 'string' ? entry['owned_by'] : 'tabagent' };
}

export function listModels(lc: ListenerContext, ex: Exchange, startedAt: number): void {
  lc.gateway.call('models', undefined, ex.requestId, { signal: ex.signal }).then(
    (r) => {
      const models = (r as { models?: ModelEntry[] }).models ?? [];
      ex.json(200, { object: 'list', data: models.map((m) => toModelObject(m, startedAt)) });
    },
    (err: unknown) => ex.fail(toTabAgentError(err)),
  );
}

export function getModel(lc: ListenerContext, ex: Exchange, rawId: string, startedAt: number): void {
  let id: string;
  try {
    id = decodeParams({ model: rawId })['model']!;
  } catch (err) {
    return ex.fail(toTabAgentError(err));
  }
  lc.gateway.call('model_info', { model_id: id }, ex.requestId, { signal: ex.signal }).then(
    (r) => {
      const info = r as Partial<ModelEntry> & { model?: ModelEntry };
      const entry = (info.model ?? info) as ModelEntry;
      ex.json(200, toModelObject({ ...entry, id: typeof entry.id === 'string' ? entry.id : id }, startedAt));
    },
    (err: unknown) => ex.fail(toTabAgentError(err)),
  );
}
