// A block's parameter form, generated from its JSON Schema (the same schema the server
// validates with): sliders with units for bounded numbers, selects for enums, checkboxes for
// booleans and option lists, number fields with bounds, help text and the default under each.

import { el } from "./dom.mjs";

const UNIT_SUFFIX = { days: "days", hours: "hours", seconds: "s" };

export function humanize(name) {
  const text = name.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function bounds(prop) {
  const min = prop.minimum ?? prop.exclusiveMinimum;
  const max = prop.maximum ?? prop.exclusiveMaximum;
  return { min, max, exclusiveMin: prop.exclusiveMinimum !== undefined };
}

function describeRange(prop) {
  const { min, max, exclusiveMin } = bounds(prop);
  const unit = prop.unit ? ` ${UNIT_SUFFIX[prop.unit] || prop.unit}` : "";
  if (min !== undefined && max !== undefined) {
    return `${exclusiveMin ? "more than " : ""}${min} to ${max}${unit}`;
  }
  if (min !== undefined) return `${exclusiveMin ? "more than" : "at least"} ${min}${unit}`;
  if (max !== undefined) return `at most ${max}${unit}`;
  return "";
}

function formatDefault(value) {
  if (value === undefined) return "";
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    return Object.keys(value).length ? JSON.stringify(value) : "none";
  }
  if (Array.isArray(value)) return value.length ? value.join(", ") : "none";
  if (typeof value === "boolean") return value ? "on" : "off";
  if (value === "") return "empty";
  return String(value);
}

/**
 * Build the form. `params` are the node's current values; `onChange(name, value)` is called
 * when the user commits a value (undefined means "back to the default"). `context` gives the
 * options of dynamic choices: {datasetVersions: [{id, label, columns}], columnsFor(node)}.
 */
export function buildForm({ nodeId, schema, params, readOnly, onChange, context = {} }) {
  const form = el("form", { class: "params", "data-testid": "params-form", novalidate: true });
  form.addEventListener("submit", (event) => event.preventDefault());
  const required = new Set(schema.required || []);
  const properties = Object.entries(schema.properties || {});
  if (!properties.length) {
    form.append(el("p", { class: "muted", text: "This block has no settings." }));
    return form;
  }
  for (const [name, prop] of properties) {
    const id = `param-${nodeId}-${name}`;
    const helpId = `${id}-help`;
    const value = params[name];
    const field = el("div", { class: "field", "data-param": name });
    const label = el("label", { for: id, text: prop.label || humanize(name) });
    if (required.has(name)) label.append(el("span", { class: "required", text: " (required)" }));
    const help = el("p", { class: "help", id: helpId });
    help.textContent = prop.description || "";
    const range = describeRange(prop);
    const extra = [];
    if (range) extra.push(`Allowed: ${range}.`);
    if (prop.default !== undefined) extra.push(`Default: ${formatDefault(prop.default)}.`);
    if (extra.length) help.append(el("span", { class: "default", text: ` ${extra.join(" ")}` }));
    const control = buildControl({ id, helpId, name, prop, value, readOnly, onChange, context });
    if (control.dataset.kind === "checkbox") {
      field.append(el("div", { class: "check" }, control, label));
    } else if (control.dataset.kind === "group") {
      const set = el("fieldset", { class: "group", "aria-describedby": helpId });
      set.append(el("legend", { text: prop.label || humanize(name) }), control);
      field.append(set);
    } else {
      field.append(label, control);
    }
    field.append(help, el("p", { class: "field-error", id: `${id}-error`, role: "alert" }));
    form.append(field);
  }
  return form;
}

function numberValue(raw, integer) {
  if (raw === "" || raw === null) return undefined;
  const number = Number(raw);
  if (Number.isNaN(number)) return undefined;
  return integer ? Math.trunc(number) : number;
}

function buildControl({ id, helpId, name, prop, value, readOnly, onChange, context }) {
  const common = { id, name, "aria-describedby": helpId, disabled: readOnly };
  const current = value === undefined ? prop.default : value;

  if (prop.choices === "dataset_versions") {
    const select = el("select", common);
    select.append(el("option", { value: "", text: "— choose a dataset version —" }));
    for (const v of context.datasetVersions || []) {
      select.append(el("option", { value: v.id, text: v.label, selected: v.id === value }));
    }
    select.addEventListener("change", () => onChange(name, numberValue(select.value, true)));
    return select;
  }

  if (prop.type === "array" && prop.items && prop.items.enum) {
    const box = el("div", { class: "options", role: "group" });
    box.dataset.kind = "group";
    const chosen = new Set(current || []);
    prop.items.enum.forEach((option, i) => {
      const optionId = `${id}-${i}`;
      const check = el("input", {
        type: "checkbox",
        id: optionId,
        value: option,
        checked: chosen.has(option),
        disabled: readOnly,
      });
      check.addEventListener("change", () => {
        const picked = [...box.querySelectorAll("input:checked")].map((c) => c.value);
        onChange(name, picked);
      });
      box.append(el("div", { class: "check" }, check, el("label", { for: optionId, text: option })));
    });
    return box;
  }

  if (prop.type === "array") {
    const columns = prop.choices === "dataset_columns" ? context.columnsFor?.() || [] : [];
    const input = el("input", {
      ...common,
      type: "text",
      value: (value || []).join(", "),
      placeholder: formatDefault(prop.default),
      list: columns.length ? `${id}-list` : undefined,
    });
    input.addEventListener("change", () => {
      const items = input.value
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      onChange(name, input.value.trim() ? items : undefined);
    });
    if (!columns.length) return input;
    const wrap = el("span", { class: "with-list" }, input);
    const list = el("datalist", { id: `${id}-list` });
    for (const c of columns) list.append(el("option", { value: c }));
    wrap.append(list, el("span", { class: "muted small", text: ` Columns: ${columns.join(", ")}` }));
    return wrap;
  }

  if (prop.enum || prop.const !== undefined) {
    const options = prop.enum || [prop.const];
    const select = el("select", common);
    for (const option of options) {
      // plain-language names where the schema gives them (`labels`: value → words)
      const words = prop.labels?.[option] ?? String(option);
      const text = option === prop.default ? `${words} (default)` : words;
      select.append(el("option", { value: option, text, selected: option === current }));
    }
    select.addEventListener("change", () =>
      onChange(name, select.value === String(prop.default) ? undefined : select.value),
    );
    return select;
  }

  if (prop.type === "boolean") {
    const check = el("input", { ...common, type: "checkbox", checked: Boolean(current) });
    check.dataset.kind = "checkbox";
    check.addEventListener("change", () => onChange(name, check.checked));
    return check;
  }

  if (prop.type === "number" || prop.type === "integer") {
    const integer = prop.type === "integer";
    const { min, max } = bounds(prop);
    const step = integer ? 1 : stepFor(min, max);
    const number = el("input", {
      ...common,
      type: "number",
      min,
      max,
      step,
      value: value ?? "",
      placeholder: formatDefault(prop.default),
      inputmode: integer ? "numeric" : "decimal",
    });
    number.addEventListener("change", () => onChange(name, numberValue(number.value, integer)));
    const unit = prop.unit ? el("span", { class: "unit", text: UNIT_SUFFIX[prop.unit] || prop.unit }) : null;
    if (integer || min === undefined || max === undefined) {
      return unit ? el("span", { class: "with-unit" }, number, unit) : number;
    }
    // a threshold: a slider beside the number, both showing the same value
    const slider = el("input", {
      type: "range",
      id: `${id}-slider`,
      min,
      max,
      step,
      value: current ?? min,
      "aria-label": `${humanize(name)} slider`,
      "aria-describedby": helpId,
      disabled: readOnly,
    });
    slider.addEventListener("input", () => {
      number.value = slider.value;
    });
    slider.addEventListener("change", () => onChange(name, numberValue(slider.value, false)));
    number.addEventListener("input", () => {
      if (number.value !== "") slider.value = number.value;
    });
    return el("span", { class: "slider" }, slider, number, unit);
  }

  if (prop.type === "object") {
    // e.g. per-school thresholds (set on the Thresholds page): edited here as JSON
    const area = el("textarea", { ...common, rows: 3, spellcheck: "false", class: "json" });
    area.value = value === undefined ? "" : JSON.stringify(value, null, 1);
    area.placeholder = JSON.stringify(prop.default ?? {});
    area.addEventListener("change", () => {
      const slot = document.getElementById(`${id}-error`);
      if (area.value.trim() === "") {
        onChange(name, undefined);
        return;
      }
      try {
        const parsed = JSON.parse(area.value);
        if (slot) slot.textContent = "";
        onChange(name, parsed);
      } catch (error) {
        if (slot) slot.textContent = `Not valid JSON (${error.message}): fix it or empty the box.`;
      }
    });
    return area;
  }

  const attrs = { ...common, type: "text", value: value ?? "", placeholder: formatDefault(prop.default) };
  if (prop.pattern) attrs.pattern = prop.pattern;
  if (prop.maxLength) attrs.maxlength = prop.maxLength;
  const long = (prop.maxLength || 0) > 300;
  const input = long ? el("textarea", { ...common, rows: 3, maxlength: prop.maxLength }) : el("input", attrs);
  if (long) input.value = value ?? "";
  input.addEventListener("change", () => onChange(name, input.value === "" ? undefined : input.value));
  return input;
}

function stepFor(min, max) {
  const span = Number(max) - Number(min);
  if (span <= 1) return 0.01;
  if (span <= 10) return 0.05;
  return 0.1;
}
