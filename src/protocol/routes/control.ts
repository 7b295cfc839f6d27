/** Control routes served by the router itself: cancelling a request by its id. */
import * as v from 'valibot';
import { Addresses } from '../../bus/addresses.js';
import { RequestIdSchema } from '../contract.js';
import { defineRoute } from '../route.js';

export const stopGeneration = defineRoute({
  name: 'stop_generation',
  owner: Addresses.router,
  summary: 'Cancels an in-flight request by its request_id; it then ends promptly with a final frame saying it was cancelled.',
  input: v.object({ request_id: RequestIdSchema }),
  output: v.object({ request_id: v.string(), stopped: v.boolean() }),
  priority: 'interactive',
  http: [
    { method: 'POST', path: '/v1/generation/stop' },
    { method: 'POST', path: '/v1/halt' },
  ],
});

export const controlRoutes = [stopGeneration];
