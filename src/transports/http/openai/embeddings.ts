/** Embeddings: the OpenAI request to the bus `embeddings` route; vectors as float arrays or base64 little-endian float32. */
import { toTabAgentError } from '../../../protocol/errors.js';
import type { ListenerContext } from '../context.js';
import type { Exchange } from '../exchange.js';
import type { EmbeddingRequest } from './schemas.js';

interface EmbeddingsReply {
  model: string;
  data: { index: number; embedding: number[] }[];
  usage: { prompt_tokens: number; total_tokens: number };
}

function base64(vector: number[]): string {
  const f32 = Float32Array.from(vector);
  return Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength).toString('base64');
}

export function embeddings(lc: ListenerContext, ex: Exchange, body: EmbeddingRequest): void {
  const asBase64 = body.encoding_format === 'base64';
  lc.gateway.call('embeddings', { model: body.model, input: body.input }, ex.requestId, { signal: ex.signal }).then(
    (r) => {
      const reply = r as EmbeddingsReply;
      ex.json(200, {
        object: 'list',
        model: reply.model,
        data: reply.data.map((d) => ({ object: 'embedding', index: d.index, embedding: asBase64 ? base64(d.embedding) : d.embedding })),
        usage: reply.usage,
      });
    },
    (err: unknown) => ex.fail(toTabAgentError(err)),
  );
}
