/** Session routes: conversations, their history, export/import, and per-model inference settings (owner: the storage actor). */
import * as v from 'valibot';
import { Addresses } from '../../bus/addresses.js';
import {
  ExportDocumentSchema,
  IdSchema,
  ImportConflictSchema,
  InferenceSettingsSchema,
  MessageInputSchema,
  MessageSchema,
  MetadataSchema,
  SessionSchema,
  TitleSchema,
} from '../../runtime/storage/schema.js';
import { defineRoute } from '../route.js';

/** An integer that may arrive as a query string ("20") from the HTTP carrier. */
function queryInt(name: string, min: number, max: number) {
  return v.pipe(
    v.union([v.number(), v.pipe(v.string(), v.regex(/^\d+$/), v.transform(Number))], `${name} must be an integer`),
    v.integer(`${name} must be an integer`),
    v.minValue(min, `${name} must be at least ${min}`),
    v.maxValue(max, `${name} must be at most ${max}`),
  );
}

const SessionId = { session_id: IdSchema };
const ModelKey = v.pipe(v.string(), v.minLength(1, 'must not be empty'), v.maxLength(256, 'is at most 256 characters'));

/** `{model}`, or the original TabAgent's `{repo_id, variant}`, which is stored under its own key. */
const ModelSelector = {
  model: v.optional(ModelKey),
  repo_id: v.optional(ModelKey),
  variant: v.optional(v.string()),
};
const needsModel = <T extends { model?: string; repo_id?: string }>() =>
  v.check<T, string>((p) => p.model !== undefined || p.repo_id !== undefined, 'model is required (or the original repo_id and variant)');

const SettingsReply = v.object({ model: v.string(), settings: InferenceSettingsSchema, saved: v.boolean(), updated_at: v.nullable(v.string()) });

export const createSession = defineRoute({
  name: 'create_session',
  owner: Addresses.storage,
  summary: 'Creates a conversation. `id` may be chosen by the client (else one is generated); a taken id is CONFLICT.',
  input: v.optional(
    v.object({ id: v.optional(IdSchema), title: v.optional(TitleSchema), model: v.optional(v.string()), metadata: v.optional(MetadataSchema) }),
    {},
  ),
  output: SessionSchema,
  http: [{ method: 'POST', path: '/v1/sessions' }],
});

export const listSessions = defineRoute({
  name: 'list_sessions',
  owner: Addresses.storage,
  summary: 'Conversations, most recently updated first; page with `cursor` = the previous reply\'s next_cursor.',
  input: v.optional(v.object({ limit: v.optional(queryInt('limit', 1, 1000), 50), cursor: v.optional(v.string()) }), {}),
  output: v.object({ sessions: v.array(SessionSchema), next_cursor: v.nullable(v.string()) }),
  http: [{ method: 'GET', path: '/v1/sessions' }],
});

export const getSession = defineRoute({
  name: 'get_session',
  owner: Addresses.storage,
  summary: 'One conversation (title, times, message count). Unknown id: NOT_FOUND.',
  input: v.object(SessionId),
  output: SessionSchema,
  http: [{ method: 'GET', path: '/v1/sessions/{session_id}' }],
});

export const renameSession = defineRoute({
  name: 'rename_session',
  owner: Addresses.storage,
  summary: 'Changes a conversation\'s title (and optionally its model or metadata).',
  input: v.pipe(
    v.object({ ...SessionId, title: v.optional(TitleSchema), model: v.optional(v.string()), metadata: v.optional(MetadataSchema) }),
    v.check((p) => p.title !== undefined || p.model !== undefined || p.metadata !== undefined, 'title is required (or model or metadata)'),
  ),
  output: SessionSchema,
  http: [{ method: 'PATCH', path: '/v1/sessions/{session_id}' }],
});

export const deleteSession = defineRoute({
  name: 'delete_session',
  owner: Addresses.storage,
  summary: 'Deletes a conversation and its whole history.',
  input: v.object(SessionId),
  output: v.object({ session_id: v.string(), deleted: v.literal(true), messages_deleted: v.number() }),
  http: [{ method: 'DELETE', path: '/v1/sessions/{session_id}' }],
});

export const saveMessage = defineRoute({
  name: 'save_message',
  owner: Addresses.storage,
  summary:
    'Appends a message to a conversation; acknowledged only once durable. A client-chosen message id makes retries idempotent. ' +
    '`create_if_missing` creates an unknown session instead of answering NOT_FOUND (the original TabAgent behaviour).',
  input: v.object({ ...SessionId, message: MessageInputSchema, create_if_missing: v.optional(v.boolean()) }),
  output: MessageSchema,
  http: [{ method: 'POST', path: '/v1/sessions/{session_id}/messages' }],
});

export const getHistory = defineRoute({
  name: 'get_history',
  owner: Addresses.storage,
  summary:
    'A page of a conversation, oldest first. No cursor: the newest `limit` messages (or the oldest, with from=start). ' +
    '`before`/`after` take a message id; keep paging with next_cursor until it is null.',
  input: v.pipe(
    v.object({
      ...SessionId,
      limit: v.optional(queryInt('limit', 1, 1000), 50),
      before: v.optional(IdSchema),
      after: v.optional(IdSchema),
      from: v.optional(v.picklist(['end', 'start'], "must be 'end' or 'start'")),
    }),
    v.check((p) => p.before === undefined || p.after === undefined, 'pass either before or after, not both'),
  ),
  output: v.object({ session_id: v.string(), messages: v.array(MessageSchema), has_more: v.boolean(), next_cursor: v.nullable(v.string()) }),
  http: [{ method: 'GET', path: '/v1/sessions/{session_id}/history' }],
});

export const exportSession = defineRoute({
  name: 'export_session',
  owner: Addresses.storage,
  summary: 'The conversation and its whole history as one JSON document (format tabagent.session, version 1), for backup or import elsewhere.',
  input: v.object(SessionId),
  output: ExportDocumentSchema,
  priority: 'background',
  http: [{ method: 'GET', path: '/v1/sessions/{session_id}/export' }],
});

export const importSession = defineRoute({
  name: 'import_session',
  owner: Addresses.storage,
  summary:
    'Imports an export document atomically (all of it or nothing). If its session id is taken: on_conflict error (default, CONFLICT), new_id or replace.',
  input: v.object({ data: ExportDocumentSchema, on_conflict: v.optional(ImportConflictSchema, 'error') }),
  output: v.object({ session: SessionSchema, imported_messages: v.number(), replaced: v.boolean() }),
  priority: 'background',
  http: [{ method: 'POST', path: '/v1/sessions/import' }],
});

export const getInferenceSettings = defineRoute({
  name: 'get_inference_settings',
  owner: Addresses.storage,
  summary: "A model's saved sampling settings merged over the defaults (temperature 0.3, max_new_tokens 1024, top_k 50, top_p 0.9, repetition_penalty 1.2).",
  input: v.pipe(v.object(ModelSelector), needsModel()),
  output: SettingsReply,
  http: [{ method: 'GET', path: '/v1/inference-settings/{model}' }],
});

export const saveInferenceSettings = defineRoute({
  name: 'save_inference_settings',
  owner: Addresses.storage,
  summary: "Replaces a model's saved sampling settings; keys left out read back as the defaults.",
  input: v.pipe(v.object({ ...ModelSelector, settings: InferenceSettingsSchema }), needsModel()),
  output: SettingsReply,
  http: [{ method: 'PUT', path: '/v1/inference-settings/{model}' }],
});

export const sessionRoutes = [
  createSession,
  listSessions,
  getSession,
  renameSession,
  deleteSession,
  saveMessage,
  getHistory,
  exportSession,
  importSession,
  getInferenceSettings,
  saveInferenceSettings,
];
