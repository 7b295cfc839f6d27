/** GGUF files: reading headers for model_info, writing synthetic test models. */
export { readGguf, readGgufMetadata, summariseGguf, type GgufFile, type GgufModelSummary, type GgufTensorInfo } from './reader.js';
export { writeGguf, gguf, type GgufTensorSpec, type GgufValue } from './writer.js';
export {
  writeTestModel,
  testModelShapes,
  TEST_MODEL_CHAT_TEMPLATE,
  TEST_MODEL_CONTEXT_LENGTH,
  type TestModelOptions,
  type TestModelSize,
  type TestModelType,
} from './test-model.js';
