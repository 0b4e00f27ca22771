// ONNX model building for tests and benchmarks: builder, ready-made models, writers (untrusted host code: handles public graphs and, in the data owner's sealing tool, their own plaintext weights).
// One import for callers; the pieces live in small modules beside it.

export { GraphBuilder, DTYPES, tensor, externalTensor, valueInfo, bytesOf } from "./graph.ts";
export type { AttrValue, DType, Dim, Feed, ModelOptions, TypedData } from "./graph.ts";
export { convModel, attentionModel, integerModel, multiIoModel, dynamicModel, smallModels } from "./models.ts";
export type { SmallModel } from "./models.ts";
export { syntheticMlp } from "./mlp.ts";
export type { MlpOptions, SyntheticMlp } from "./mlp.ts";
export { inlineModel, writeEmbeddedModel, writeExternalModel, externalRef } from "./write.ts";
export { layoutTensors, readAll, readChunks, segmentedFile } from "./weights.ts";
export type { LayoutOptions, Placement, WeightFile } from "./weights.ts";
