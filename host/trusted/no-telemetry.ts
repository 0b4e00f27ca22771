// Trusted: the first module the worker evaluates (worker.ts imports it before anything that
// loads ONNX Runtime). onnxruntime-node 1.30's Linux build carries Microsoft 1DS telemetry: unless
// ORT_DISABLE_TELEMETRY is set when the library starts, it writes a device id and an SQLite event
// store under ~/.cache/Microsoft/DeveloperTools/.onnxruntime/, `.ses` and `mat-debug-<pid>.log`
// in TMPDIR, and tries to upload the events to https://mobile.events.data.microsoft.com — among
// them the model's graph and producer names and per-batch-size run counts and durations, i.e.
// traffic facts about confidential requests (measured: test/server/leak.test.ts). Setting the
// variable here, before the native library loads, keeps the worker from writing any file or
// sending anything, whatever environment the parent gave it.
process.env.ORT_DISABLE_TELEMETRY = "1";

export {};
