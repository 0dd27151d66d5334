// A small block catalog of the same shape as GET /api/blocks/ serves, for the canvas's tests.

export const ANY = ["trigger", "signal", "dataset", "model", "report", "deployment"];

export const port = (name, types, extra = {}) => ({
  name, types, label: name, required: true, many: false, ...extra,
});

export const SMALL = [
  { kind: "manual_trigger", version: 1, category: "trigger", label: "Start by hand", help: "Start a run.", icon: "play", inputs: [], outputs: [port("start", ["trigger"])], params_schema: { properties: {} } },
  { kind: "dataset", version: 1, category: "data", label: "Dataset", help: "A dataset version.", icon: "database", inputs: [port("start", ["trigger", "signal"])], outputs: [port("dataset", ["dataset"])], params_schema: { properties: { dataset_version: { type: "integer" } }, required: ["dataset_version"] } },
  { kind: "train_model", version: 1, category: "model", label: "Train a model", help: "Fit.", icon: "cpu", inputs: [port("train", ["dataset"]), port("test", ["dataset"], { required: false })], outputs: [port("model", ["model"])], params_schema: { properties: {} } },
  { kind: "notify", version: 1, category: "notify", label: "Notify people", help: "Tell staff.", icon: "bell", inputs: [port("input", ANY, { many: true })], outputs: [port("done", ["signal"])], params_schema: { properties: { title: { type: "string", default: "Hi" } } } },
];
