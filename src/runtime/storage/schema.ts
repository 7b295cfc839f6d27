/** The stored shapes of sessions, messages, exports and inference settings: one valibot schema each, shared by the routes and the store. */
import * as v from 'valibot';

/** Ids are safe in keys and URL paths; every allowed character sorts above '"', which the store's range scans rely on. */
export const IdSchema = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9_.:-]{1,128}$/, 'must be 1-128 characters of A-Z a-z 0-9 _ . : -'),
);

export const RoleSchema = v.picklist(['system', 'user', 'assistant', 'function', 'tool'], 'must be one of system, user, assistant, function, tool');

/** Any timestamp Date.parse understands; stored normalised to ISO 8601 UTC. */
export const TimestampSchema = v.pipe(
  v.string(),
  v.check((s) => !Number.isNaN(Date.parse(s)), 'must be an ISO 8601 timestamp'),
  v.transform((s) => new Date(s).toISOString()),
);

const Count = v.pipe(v.number(), v.integer(), v.minValue(0));

export const UsageSchema = v.looseObject({
  prompt_tokens: v.optional(Count),
  completion_tokens: v.optional(Count),
  total_tokens: v.optional(Count),
});

export const MetadataSchema = v.record(v.string(), v.unknown());

export const TitleSchema = v.pipe(v.string(), v.maxLength(512, 'is at most 512 characters'));

/** A message as a client sends it; the store fills in id, session_id and created_at when absent. */
export const MessageInputSchema = v.object({
  /** A client-chosen id makes a retried save idempotent: the same id with the same content is saved once. */
  id: v.optional(IdSchema),
  role: RoleSchema,
  content: v.string('content must be a string'),
  name: v.optional(v.string()),
  created_at: v.optional(TimestampSchema),
  /** The reply was cut short (cancelled, or the server stopped) and holds what was generated until then. */
  partial: v.optional(v.boolean()),
  model: v.optional(v.string()),
  usage: v.optional(UsageSchema),
  metadata: v.optional(MetadataSchema),
});

export const MessageSchema = v.object({
  id: v.string(),
  session_id: v.string(),
  role: RoleSchema,
  content: v.string(),
  name: v.optional(v.string()),
  created_at: v.string(),
  partial: v.optional(v.boolean()),
  model: v.optional(v.string()),
  usage: v.optional(UsageSchema),
  metadata: v.optional(MetadataSchema),
});

export const SessionSchema = v.object({
  id: v.string(),
  title: v.string(),
  created_at: v.string(),
  updated_at: v.string(),
  message_count: v.number(),
  model: v.optional(v.string()),
  metadata: v.optional(MetadataSchema),
});

export type MessageInput = v.InferOutput<typeof MessageInputSchema>;
export type Message = v.InferOutput<typeof MessageSchema>;
export type Session = v.InferOutput<typeof SessionSchema>;

export const EXPORT_FORMAT = 'tabagent.session';
export const EXPORT_VERSION = 1;

/** The export document: a session and its whole history, oldest message first. */
export const ExportDocumentSchema = v.object({
  format: v.literal(EXPORT_FORMAT, `must be '${EXPORT_FORMAT}'`),
  version: v.literal(EXPORT_VERSION, `must be ${EXPORT_VERSION} (the only version this server reads)`),
  exported_at: v.optional(v.string()),
  session: v.object({
    id: IdSchema,
    title: v.optional(TitleSchema),
    created_at: v.optional(TimestampSchema),
    updated_at: v.optional(TimestampSchema),
    model: v.optional(v.string()),
    metadata: v.optional(MetadataSchema),
  }),
  messages: v.array(
    v.object({
      id: IdSchema,
      role: RoleSchema,
      content: v.string('content must be a string'),
      name: v.optional(v.string()),
      created_at: TimestampSchema,
      partial: v.optional(v.boolean()),
      model: v.optional(v.string()),
      usage: v.optional(UsageSchema),
      metadata: v.optional(MetadataSchema),
    }),
  ),
});

export type ExportDocument = v.InferOutput<typeof ExportDocumentSchema>;

/** What an import does when the document's session id is already taken. */
export const ImportConflictSchema = v.picklist(['error', 'new_id', 'replace'], "must be 'error', 'new_id' or 'replace'");
export type ImportConflict = v.InferOutput<typeof ImportConflictSchema>;

/** Per-model sampling settings, named as the original TabAgent named them; unknown keys a client keeps there are preserved. */
export const InferenceSettingsSchema = v.looseObject({
  temperature: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(2))),
  max_new_tokens: v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1_000_000))),
  top_k: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  top_p: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1))),
  min_p: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1))),
  repetition_penalty: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(10))),
  seed: v.optional(v.pipe(v.number(), v.integer())),
  stop: v.optional(v.array(v.string())),
  system_prompt: v.optional(v.string()),
});

export type InferenceSettings = v.InferOutput<typeof InferenceSettingsSchema>;

/** The original TabAgent's defaults, returned for a model that has no saved settings. */
export const DEFAULT_INFERENCE_SETTINGS = {
  temperature: 0.3,
  max_new_tokens: 1024,
  top_k: 50,
  top_p: 0.9,
  repetition_penalty: 1.2,
} as const;
