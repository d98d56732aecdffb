// Darkroom's live gallery. Queries fill the page (the models, the feed's cursor, the latest generations); after that
// every change arrives over the `generationEvents` subscription, and nothing is polled. The feed is
// resumed after a dropped connection from the cursor of the last event seen, so nothing is missed.
// Your own images and videos are uploaded (the file picker, or a drop anywhere on the page) as GraphQL multipart
// requests; each upload is a generation of its own (model "upload"), so it arrives as a card like any other.
import { createClient } from "./vendor/graphql-ws/client.js";

const GRAPHQL_PATH = "/graphql";
const KEY_STORAGE = "darkroom.apiKey";
const MODEL_STORAGE = "darkroom.model";
const VIDEO_MODEL_STORAGE = "darkroom.videoModel";
const UPLOAD_MODEL = "upload"; // the model of an upload's generation
const PAGE_SIZE = 50;
// Not finished: QUEUED waits at Darkroom for a slot, STARTING and PROCESSING run at the provider. A status
// this page does not know counts as not finished either.
const UNFINISHED = new Set(["QUEUED", "STARTING", "PROCESSING"]);
const FINISHED = new Set(["SUCCEEDED", "FAILED", "CANCELED", "TIMED_OUT"]);
const REFUSED = new Set([4401, 4403]); // graphql-transport-ws close codes: Unauthorized, Forbidden
// A generation's phase in words; a phase this page does not know is shown in lower case.
const PHASE_WORDS = {
  QUEUED: "queued",
  WAITING: "waiting for a worker",
  BOOTING: "booting",
  RUNNING: "running",
  SAVING: "saving files",
  FINISHED: "finished",
};

const MEDIA_FIELDS = "id kind status url contentType width height durationSeconds downloadError downloadAttempts";
// What the feed carries: the event holds this state, so the server answers it without reading the database.
const LIVE_FIELDS = `id status kind model progress error createdAt sequence queuePosition queueReason
  phase step totalSteps etaSeconds etaBasis expectedFinishAt previews { url at contentType }
  cost { amount currency estimated }
  media { ${MEDIA_FIELDS} }`;
// Facts that never change after the start: read once per generation.
const META_FIELDS = "input sourceMedia { id kind url }";

const FEED = `subscription Feed($after: String) {
  generationEvents(after: $after) { cursor type generation { ${LIVE_FIELDS} } }
}`;
const GENERATIONS = `query Generations($first: Int, $after: String) {
  generations(first: $first, after: $after) {
    nodes { ${LIVE_FIELDS} ${META_FIELDS} }
    pageInfo { hasNextPage endCursor }
  }
}`;
const FEED_CURSOR = "query FeedCursor { feedCursor }";
const META = `query Meta($id: ID!) { generation(id: $id) { id ${META_FIELDS} } }`;
const MODELS = "query Models { models(first: 100) { nodes { ref provider kind description acceptsImage runCount } } }";
const MODEL = `query Model($ref: String!) {
  model(ref: $ref) {
    ref kind description
    inputs {
      name type title description default minimum maximum exclusiveMinimum exclusiveMaximum
      options format itemType required nullable isFile isSecret isImageInput
    }
  }
}`;
const ESTIMATE = `query Estimate($model: String!, $input: JSON!) {
  estimateCost(model: $model, input: $input) { amount currency }
}`;
const PAYLOAD = "userErrors { field message code }";
const START = `mutation Start($model: String!, $input: JSON!) {
  startGeneration(input: {model: $model, input: $input}) { generation { id ${META_FIELDS} } ${PAYLOAD} }
}`;
const ANIMATE = `mutation Animate($mediaId: ID!, $model: String, $input: JSON) {
  animateImage(input: {mediaId: $mediaId, model: $model, input: $input}) { generation { id ${META_FIELDS} } ${PAYLOAD} }
}`;
const UPLOAD = `mutation Upload($file: Upload!) {
  uploadMedia(input: {file: $file}) { media { id generation { ${LIVE_FIELDS} ${META_FIELDS} } } ${PAYLOAD} }
}`;
const CANCEL = `mutation Cancel($id: ID!) { cancelGeneration(input: {id: $id}) { generation { id } ${PAYLOAD} } }`;
const RETRY = `mutation Retry($mediaId: ID!) { retryDownload(input: {mediaId: $mediaId}) { media { id } ${PAYLOAD} } }`;

const $ = (selector) => document.querySelector(selector);
const generations = new Map(); // id -> the latest state seen (by per-generation sequence)
const meta = new Map(); // id -> {input, sourceMedia}
const notes = new Map(); // id -> a message for the card (a failed action)
let currentInputs = [];
let videoModels = []; // image-to-video models, most run first: what Animate offers
let modelLabel = (model) => model.ref; // what a model's option says (its provider too, when there are several)

// --- transport -------------------------------------------------------------------------------------

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function authorization() {
  const key = apiKey().trim();
  if (!key) return {};
  return { Authorization: /^bearer\s/i.test(key) ? key : `Bearer ${key}` };
}

async function graphql(query, variables = {}) {
  return send(JSON.stringify({ query, variables }), { "Content-Type": "application/json" });
}

// The GraphQL multipart request spec: the operation (null where the file goes), the map, then the file. The
// browser sets the multipart Content-Type; Apollo-Require-Preflight makes it a request no other site's page can
// send unasked (CSRF prevention).
async function uploadRequest(file) {
  const body = new FormData();
  body.append("operations", JSON.stringify({ query: UPLOAD, variables: { file: null } }));
  body.append("map", JSON.stringify({ 0: ["variables.file"] }));
  body.append("0", file, file.name);
  return send(body, { "Apollo-Require-Preflight": "true" });
}

async function send(payload, headers) {
  const response = await fetch(GRAPHQL_PATH, {
    method: "POST",
    headers: { Accept: "application/json", ...headers, ...authorization() },
    body: payload,
  });
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    const message = body?.errors?.[0]?.message || "an API key is required";
    showConnection("unauthorized", message);
    $("#api-key").classList.add("wanted");
    throw new Error(message);
  }
  if (!body) throw new Error(`the server answered ${response.status}`);
  if (body.errors?.length) throw new Error(body.errors.map((error) => error.message).join("; "));
  return body.data;
}

async function mutate(query, variables, field) {
  const payload = (await graphql(query, variables))[field];
  if (payload.userErrors.length) throw new Error(payload.userErrors.map((error) => error.message).join("; "));
  return payload;
}

function startFeed(after) {
  const url = new URL(GRAPHQL_PATH, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // graphql-ws sends this object again on every reconnect, so `after` always holds the last cursor seen.
  const request = { query: FEED, variables: { after } };
  let connectedBefore = false;
  const client = createClient({
    url: url.href,
    connectionParams: () => authorization(),
    keepAlive: 10_000,
    retryAttempts: Number.POSITIVE_INFINITY,
    shouldRetry: (event) => !REFUSED.has(event?.code),
    retryWait: (retries) => sleep(Math.min(1000 * 2 ** retries, 15_000) + Math.random() * 1000),
    on: {
      connecting: () => showConnection(connectedBefore ? "reconnecting" : "connecting"),
      connected: () => {
        showConnection("live");
        // Dropped before the first event: there is no cursor to resume from, so read the page again.
        if (connectedBefore && request.variables.after === null) loadGenerations();
        connectedBefore = true;
      },
      closed: () => showConnection(connectedBefore ? "reconnecting" : "offline"),
    },
  });
  const subscribe = () =>
    client.subscribe(request, {
      next: ({ data, errors }) => {
        if (errors?.length) showConnection("error", errors.map((error) => error.message).join("; "));
        const event = data?.generationEvents;
        if (!event) return;
        request.variables.after = event.cursor;
        apply(event.generation);
      },
      error: (error) => {
        // A missing, wrong or revoked API key: retrying cannot help until another key is entered.
        if (REFUSED.has(error?.code)) {
          showConnection("unauthorized", describe(error));
          $("#api-key").classList.add("wanted");
          return;
        }
        // The server ended the feed (e.g. this tab fell behind): resume from the last cursor shortly.
        showConnection("error", describe(error));
        setTimeout(subscribe, 2000);
      },
      complete: () => setTimeout(subscribe, 2000),
    });
  subscribe();
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function describe(error) {
  if (Array.isArray(error)) return error.map((item) => item.message).join("; ");
  if (error && typeof error === "object" && "reason" in error) return error.reason || `closed (${error.code})`;
  return error?.message || String(error);
}

function showConnection(state, detail = "") {
  const badge = $("#connection");
  badge.dataset.state = state;
  badge.textContent = state;
  badge.title = detail;
}

// --- state -----------------------------------------------------------------------------------------

function apply(generation) {
  const known = generations.get(generation.id);
  if (known && known.sequence > generation.sequence) return;
  // The time left counts down from when this state arrived: the page's clock, not the server's, which may differ.
  if (generation.etaSeconds != null) generation.deadline = Date.now() + generation.etaSeconds * 1000;
  generations.set(generation.id, generation);
  if (!meta.has(generation.id)) loadMeta(generation.id);
  render(generation.id);
}

function remember(generation) {
  meta.set(generation.id, { input: generation.input, sourceMedia: generation.sourceMedia });
}

async function loadMeta(id) {
  meta.set(id, null);
  try {
    const { generation } = await graphql(META, { id });
    if (generation) {
      remember(generation);
      render(id);
    }
  } catch {
    meta.delete(id);
  }
}

// The newest page, or with `after` the page older than it; the feed keeps every one shown up to date.
async function loadGenerations(after = null) {
  const older = $("#older");
  try {
    const { generations: page } = await graphql(GENERATIONS, { first: PAGE_SIZE, after });
    for (const generation of page.nodes) {
      remember(generation);
      apply(generation);
    }
    older.dataset.after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : "";
    older.hidden = !page.pageInfo.hasNextPage;
  } catch (error) {
    if ($("#connection").dataset.state !== "unauthorized") showConnection("error", describe(error));
  }
}

// --- the form --------------------------------------------------------------------------------------

async function loadModels() {
  const select = $("#model");
  try {
    const { models } = await graphql(MODELS);
    videoModels = models.nodes
      .filter((item) => item.kind === "VIDEO" && item.acceptsImage)
      .sort((a, b) => (b.runCount ?? 0) - (a.runCount ?? 0));
    select.replaceChildren();
    // With models of several providers, each option says whose it is.
    const several = new Set(models.nodes.map((item) => item.provider)).size > 1;
    modelLabel = (model) => (several ? `${model.ref} (${model.provider})` : model.ref);
    for (const kind of ["IMAGE", "VIDEO"]) {
      const group = el("optgroup", { label: kind === "IMAGE" ? "Images" : "Videos" });
      for (const model of models.nodes.filter((item) => item.kind === kind)) {
        group.append(el("option", { value: model.ref }, modelLabel(model)));
      }
      if (group.children.length) select.append(group);
    }
    const saved = localStorage.getItem(MODEL_STORAGE);
    const first = models.nodes.find((item) => item.kind === "IMAGE") || models.nodes[0];
    select.value = models.nodes.some((item) => item.ref === saved) ? saved : first?.ref || "";
    await chooseModel(select.value);
  } catch (error) {
    select.replaceChildren(el("option", { value: "" }, "no models"));
    formError(`Could not load the models: ${describe(error)}`);
  }
}

// The model the form shows or is loading, and that load: choosing it again joins the load, so a second
// choice of the same model cannot redraw the form under what was typed meanwhile.
let chosen = null;

function chooseModel(ref) {
  if (chosen?.ref !== ref) chosen = { ref, loaded: showModel(ref) };
  return chosen.loaded;
}

async function showModel(ref) {
  const form = $("#generate");
  const fields = $("#fields");
  $("#submit").disabled = true;
  $("#estimate").hidden = true;
  fields.replaceChildren();
  currentInputs = [];
  delete form.dataset.model;
  if (!ref) return;
  localStorage.setItem(MODEL_STORAGE, ref);
  try {
    const { model } = await graphql(MODEL, { ref });
    if ($("#model").value !== ref) return;
    $("#model-description").textContent = model?.description || "";
    currentInputs = model?.inputs || [];
    fields.replaceChildren(...currentInputs.map((input) => inputField(input)));
    formError("");
    form.dataset.model = ref;
    $("#submit").disabled = false;
    showEstimate();
  } catch (error) {
    if (chosen?.ref === ref) chosen = null; // choosing it again tries again
    formError(`Could not load ${ref}: ${describe(error)}`);
  }
}

// One form control for a model input; `prefix` keeps ids apart when several forms show the same model.
function inputField(input, prefix = "input") {
  const id = `${prefix}-${input.name}`;
  const attrs = { id, name: input.name };
  let control;
  if (input.options?.length) {
    control = el("select", attrs);
    if (!input.required || input.default == null) control.append(el("option", { value: "" }, "—"));
    input.options.forEach((option, index) => control.append(el("option", { value: String(index) }, String(option))));
    const chosen = input.options.findIndex((option) => option === input.default);
    control.value = chosen >= 0 ? String(chosen) : "";
  } else if (input.type === "boolean") {
    control = el("input", { ...attrs, type: "checkbox" });
    control.checked = input.default === true;
  } else if (input.type === "integer" || input.type === "number") {
    const integer = input.type === "integer";
    control = el("input", { ...attrs, type: "number", step: integer ? "1" : "any" });
    if (input.minimum != null) control.min = input.minimum + (integer && input.exclusiveMinimum ? 1 : 0);
    if (input.maximum != null) control.max = input.maximum - (integer && input.exclusiveMaximum ? 1 : 0);
    if (input.default != null) control.value = input.default;
  } else if (input.type === "string" && (input.isSecret || input.format === "password")) {
    control = el("input", { ...attrs, type: "password", autocomplete: "off" });
  } else if (input.type === "string" && input.isFile) {
    control = el("input", { ...attrs, type: "url", placeholder: "https://…" });
  } else if (input.type === "string" && /prompt/.test(input.name)) {
    control = el("textarea", { ...attrs, rows: "3" });
    if (input.default != null) control.value = input.default;
  } else if (input.type === "string") {
    control = el("input", { ...attrs, type: "text" });
    if (input.default != null) control.value = input.default;
  } else {
    const hint = input.type === "array" ? "comma-separated, or a JSON list" : "JSON";
    control = el("textarea", { ...attrs, rows: "2", placeholder: hint });
    if (input.default != null) control.value = JSON.stringify(input.default);
  }
  control.required = input.required;
  const range = [input.minimum, input.maximum].some((value) => value != null)
    ? ` (${input.minimum ?? "…"}–${input.maximum ?? "…"})`
    : "";
  const label = el("span", {}, `${input.title || input.name}${input.required ? " *" : ""}${range}`);
  const field = el("label", { class: `field${input.type === "boolean" ? " check" : ""}` }, label, control);
  if (input.description) field.append(el("small", { class: "hint" }, input.description));
  field.append(el("small", { class: "error", "data-error-for": input.name, hidden: "" }));
  return field;
}

function readValue(input, control) {
  if (input.options?.length) return control.value === "" ? undefined : input.options[Number(control.value)];
  if (input.type === "boolean") return control.checked;
  const raw = control.value.trim();
  if (raw === "") return undefined;
  if (input.type === "integer" || input.type === "number") {
    const value = Number(raw);
    if (Number.isNaN(value)) throw new Error("not a number");
    return value;
  }
  if (input.type === "string") return raw;
  if (input.type === "array" && !raw.startsWith("[")) {
    const items = raw.split(",").map((item) => item.trim()).filter(Boolean);
    return ["integer", "number"].includes(input.itemType) ? items.map(Number) : items;
  }
  try {
    return JSON.parse(raw);
  } catch {
    throw new Error("not valid JSON");
  }
}

function fieldError(name, message, root = $("#generate")) {
  const slot = root.querySelector(`[data-error-for="${CSS.escape(name)}"]`);
  if (!slot) return false;
  slot.textContent = message;
  slot.hidden = !message;
  return true;
}

function formError(message) {
  const slot = $("#form-error");
  slot.textContent = message;
  slot.hidden = !message;
}

// The values of `inputs` in `form`, or null when one is missing or unreadable (its error shown beside it).
function readForm(form, inputs) {
  const values = {};
  let valid = true;
  for (const input of inputs) {
    const control = form.elements.namedItem(input.name);
    fieldError(input.name, "", form);
    try {
      const value = readValue(input, control);
      if (value === undefined && input.required) throw new Error("required");
      if (value !== undefined) values[input.name] = value;
    } catch (error) {
      fieldError(input.name, error.message, form);
      valid = false;
    }
  }
  return valid ? values : null;
}

// A cost for display: "≈" while it is an estimate, a few decimals for the small amounts per image.
function formatCost(cost, estimated = cost.estimated) {
  const digits = cost.amount < 1 ? 4 : 2;
  return `${estimated ? "≈ " : ""}${cost.amount.toFixed(digits)} ${cost.currency}`;
}

// What the form's values would cost, shown above Generate; nothing when the server cannot tell.
let estimateTimer = null;
let estimateAsked = 0;

function showEstimate() {
  clearTimeout(estimateTimer);
  estimateTimer = setTimeout(async () => {
    const form = $("#generate");
    const model = form.dataset.model;
    const slot = $("#estimate");
    const asked = ++estimateAsked;
    if (!model) return;
    const values = {};
    for (const input of currentInputs) {
      try {
        const value = readValue(input, form.elements.namedItem(input.name));
        if (value !== undefined) values[input.name] = value;
      } catch {
        // A value still being typed: estimated without it.
      }
    }
    try {
      const { estimateCost } = await graphql(ESTIMATE, { model, input: values });
      if (asked !== estimateAsked) return;
      slot.textContent = estimateCost ? `Estimated cost: ${formatCost(estimateCost, true)}` : "";
      slot.hidden = !estimateCost;
    } catch {
      if (asked === estimateAsked) slot.hidden = true;
    }
  }, 200);
}

async function submit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const model = $("#model").value;
  formError("");
  const values = readForm(form, currentInputs);
  if (!values) return;
  const button = $("#submit");
  button.disabled = true;
  try {
    const data = await graphql(START, { model, input: values });
    const { generation, userErrors } = data.startGeneration;
    const general = userErrors.filter((error) => !fieldError(error.field?.at(-1) ?? "", error.message, form));
    formError(general.map((error) => error.message).join("; "));
    if (generation) {
      remember(generation);
      render(generation.id);
    }
  } catch (error) {
    formError(describe(error));
  } finally {
    button.disabled = false;
  }
}

// --- the gallery -----------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  node.append(...children.filter((child) => child !== null && child !== undefined && child !== false));
  return node;
}

function badge(status) {
  return el("span", { class: "badge", "data-status": status }, status.toLowerCase().replace("_", " "));
}

function action(label, run, className = "") {
  const button = el("button", { type: "button", class: className }, label);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await run();
      button.title = "";
    } catch (error) {
      button.title = describe(error);
    } finally {
      button.disabled = false;
    }
  });
  return button;
}

function noteOnFailure(id, run) {
  return async () => {
    notes.delete(id);
    try {
      await run();
    } catch (error) {
      notes.set(id, describe(error));
      render(id);
      throw error;
    }
  };
}

// Bring `container`'s children in line with `parts` ({key, sig, build}), in order. A child whose signature
// is unchanged stays as it is, so a button under the pointer or a playing video survives a progress tick.
function sync(container, parts) {
  const existing = new Map([...container.children].map((child) => [child.dataset.key, child]));
  let position = 0;
  for (const { key, sig, build } of parts) {
    let child = existing.get(key);
    existing.delete(key);
    if (!child || child.dataset.sig !== sig) {
      const fresh = build();
      fresh.dataset.key = key;
      fresh.dataset.sig = sig;
      if (child) child.replaceWith(fresh);
      child = fresh;
    }
    if (container.children[position] !== child) container.insertBefore(child, container.children[position] || null);
    position += 1;
  }
  for (const stale of existing.values()) stale.remove();
}

function renderMedia(generation, media) {
  const figure = el("figure", { class: "media", "data-media-id": media.id, "data-status": media.status });
  if (media.status === "READY" && media.url) {
    const attrs =
      media.kind === "VIDEO"
        ? { src: media.url, controls: "", preload: "metadata", loop: "", playsinline: "" }
        : { src: media.url, alt: "" };
    const node = el(media.kind === "VIDEO" ? "video" : "img", attrs);
    if (media.width && media.height) node.style.aspectRatio = `${media.width} / ${media.height}`;
    figure.append(node);
  } else {
    figure.append(el("div", { class: "placeholder" }, media.status === "FAILED" ? "download failed" : "downloading…"));
  }
  const caption = el("figcaption", {}, badge(media.status));
  if (media.status === "READY" && media.kind === "VIDEO" && media.durationSeconds) {
    caption.append(el("span", { class: "hint" }, `${media.durationSeconds.toFixed(1)} s`));
  }
  if (media.status === "FAILED") {
    caption.append(el("span", { class: "error" }, media.downloadError || "the download failed"));
    const retry = () => mutate(RETRY, { mediaId: media.id }, "retryDownload");
    caption.append(action("Retry", noteOnFailure(generation.id, retry), "retry"));
  }
  if (media.status === "READY" && media.kind === "IMAGE") {
    const open = el("button", { type: "button", class: "animate" }, "Animate");
    open.addEventListener("click", () => toggleAnimateForm(figure, media));
    caption.append(open);
  }
  figure.append(caption);
  return figure;
}

// What Animate asks for: the model's required inputs that have no default, and its prompt; never the image input,
// which animateImage fills with the image.
function animateInputs(inputs) {
  return inputs.filter(
    (input) => !input.isImageInput && ((input.required && input.default == null) || input.name === "prompt"),
  );
}

// A small form under the image: the video model (the most run image-to-video model unless you chose another) and
// the inputs it needs; Start calls animateImage.
function toggleAnimateForm(figure, media) {
  const open = figure.querySelector("form.animate-form");
  if (open) {
    open.remove();
    return;
  }
  const select = el("select", { name: "model", "aria-label": "Video model" });
  for (const model of videoModels) select.append(el("option", { value: model.ref }, modelLabel(model)));
  const saved = localStorage.getItem(VIDEO_MODEL_STORAGE);
  if (videoModels.some((model) => model.ref === saved)) select.value = saved;
  const fields = el("div", { class: "animate-fields" });
  const error = el("p", { class: "error", role: "alert", hidden: "" });
  const start = el("button", { type: "submit", disabled: "" }, "Start");
  const close = el("button", { type: "button", class: "close" }, "Close");
  const form = el(
    "form",
    { class: "animate-form", novalidate: "" },
    el("label", { class: "field" }, el("span", {}, "Video model"), select),
    fields,
    error,
    el("div", { class: "actions" }, start, close),
  );
  const showError = (message) => {
    error.textContent = message;
    error.hidden = !message;
  };
  let inputs = [];
  const choose = async () => {
    const ref = select.value;
    start.disabled = true;
    fields.replaceChildren();
    inputs = [];
    delete form.dataset.model;
    if (!ref) return showError("No image-to-video model is available.");
    localStorage.setItem(VIDEO_MODEL_STORAGE, ref);
    try {
      const { model } = await graphql(MODEL, { ref });
      if (select.value !== ref) return;
      inputs = animateInputs(model?.inputs || []);
      fields.replaceChildren(...inputs.map((input) => inputField(input, `animate-${media.id}`)));
      showError("");
      form.dataset.model = ref;
      start.disabled = false;
    } catch (failure) {
      showError(`Could not load ${ref}: ${describe(failure)}`);
    }
  };
  select.addEventListener("change", choose);
  close.addEventListener("click", () => form.remove());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const values = readForm(form, inputs);
    if (!values) return;
    start.disabled = true;
    try {
      const variables = { mediaId: media.id, model: select.value, input: values };
      const { generation, userErrors } = (await graphql(ANIMATE, variables)).animateImage;
      const general = userErrors.filter((item) => !fieldError(item.field?.at(-1) ?? "", item.message, form));
      showError(general.map((item) => item.message).join("; "));
      if (generation) {
        form.remove();
        remember(generation);
        render(generation.id);
      }
    } catch (failure) {
      showError(describe(failure));
    } finally {
      start.disabled = false;
    }
  });
  figure.append(form);
  choose();
}

function cardParts(generation) {
  const info = meta.get(generation.id);
  const running = UNFINISHED.has(generation.status) || !FINISHED.has(generation.status);
  const queued = generation.status === "QUEUED";
  const parts = [
    {
      key: "header",
      sig: generation.status,
      build: () => {
        const label = generation.model === UPLOAD_MODEL ? "uploaded" : generation.model;
        return el("header", {}, badge(generation.status), el("span", { class: "model" }, label));
      },
    },
  ];
  if (generation.media.length) {
    parts.push({ key: "outputs", sig: "", build: () => el("div", { class: "outputs" }) });
  } else if (queued) {
    const place = generation.queuePosition != null ? ` — #${generation.queuePosition} in line` : "";
    const text = `queued${place}`;
    const reason = generation.queueReason || "";
    parts.push({
      key: "waiting",
      sig: `${text} ${reason}`,
      build: () => el("div", { class: "placeholder queued", title: reason }, text),
    });
  } else if (running && generation.previews?.length) {
    // Its own key and the URL as its signature: a progress tick keeps the <img>, a newer preview replaces it.
    const { url } = generation.previews.at(-1);
    parts.push({
      key: "preview",
      sig: url,
      build: () => el("figure", { class: "preview", "data-url": url }, el("img", { src: url, alt: "preview" })),
    });
  } else if (running) {
    const text = generation.kind === "VIDEO" ? "rendering video…" : "generating…";
    parts.push({ key: "waiting", sig: text, build: () => el("div", { class: "placeholder" }, text) });
  }
  if (running || generation.phase === "SAVING") {
    // Built once; render() fills in the words, the steps and the bar in place, so a tick rebuilds nothing.
    parts.push({
      key: "progress",
      sig: "",
      build: () =>
        el(
          "div",
          { class: "progress" },
          el(
            "p",
            { class: "phase-line" },
            el("span", { class: "phase" }),
            el("span", { class: "steps" }),
            el("span", { class: "eta" }),
          ),
          el("progress", { max: "1", "aria-label": "progress" }),
        ),
    });
  }
  const prompt = generation.model === UPLOAD_MODEL ? info?.input?.filename : info?.input?.prompt;
  const source = info?.sourceMedia?.url;
  if (source || prompt) {
    const build = source
      ? () => el("p", { class: "source" }, el("img", { src: source, alt: "", class: "thumb" }), ` ${prompt || "animated"}`)
      : () => el("p", { class: "prompt" }, prompt);
    parts.push({ key: "caption", sig: `${source} ${prompt}`, build });
  }
  if (generation.cost) {
    const text = formatCost(generation.cost);
    parts.push({ key: "cost", sig: text, build: () => el("p", { class: "cost", title: "cost" }, text) });
  }
  if (generation.error) {
    parts.push({ key: "error", sig: generation.error, build: () => el("p", { class: "error" }, generation.error) });
  }
  const note = notes.get(generation.id);
  if (note) parts.push({ key: "note", sig: note, build: () => el("p", { class: "error note" }, note) });
  if (running) {
    const cancel = () => mutate(CANCEL, { id: generation.id }, "cancelGeneration");
    parts.push({
      key: "actions",
      sig: "cancel",
      build: () => el("div", { class: "actions" }, action("Cancel", noteOnFailure(generation.id, cancel), "cancel")),
    });
  } else if (generation.status !== "SUCCEEDED" && info?.input && !info.sourceMedia) {
    const again = () => mutate(START, { model: generation.model, input: info.input }, "startGeneration");
    parts.push({
      key: "actions",
      sig: "again",
      build: () => el("div", { class: "actions" }, action("Run again", noteOnFailure(generation.id, again), "again")),
    });
  }
  return parts;
}

function render(id) {
  const generation = generations.get(id);
  if (!generation) return;
  const gallery = $("#gallery");
  let card = gallery.querySelector(`[data-generation-id="${CSS.escape(id)}"]`);
  if (!card) {
    card = el("article", { class: "card", "data-generation-id": id, "data-created": generation.createdAt });
    const created = Date.parse(generation.createdAt);
    const later = [...gallery.children].find((other) => Date.parse(other.dataset.created) < created);
    gallery.insertBefore(card, later || null);
  }
  card.dataset.status = generation.status;
  card.dataset.kind = generation.kind;
  card.dataset.phase = generation.phase || "";
  sync(card, cardParts(generation));
  const outputs = card.querySelector(".outputs");
  if (outputs) {
    sync(
      outputs,
      generation.media.map((media) => ({
        key: media.id,
        sig: [media.status, media.url, media.downloadError].join(" "),
        build: () => renderMedia(generation, media),
      })),
    );
  }
  const progress = card.querySelector(".progress");
  if (progress) showProgress(progress, generation);
  $("#empty").hidden = generations.size > 0;
}

// The phase line (phase, steps, time left) and the bar of a card's progress part, updated in place.
function showProgress(progress, generation) {
  const { phase, step, totalSteps } = generation;
  progress.querySelector(".phase").textContent = PHASE_WORDS[phase] || (phase || "").toLowerCase();
  progress.querySelector(".steps").textContent = step != null && totalSteps ? `step ${step} of ${totalSteps}` : "";
  const eta = progress.querySelector(".eta");
  if (generation.deadline != null && phase !== "SAVING") eta.dataset.deadline = String(generation.deadline);
  else delete eta.dataset.deadline;
  showTimeLeft(eta);
  const bar = progress.querySelector("progress");
  // Nothing to measure in Darkroom's queue or while the files are saved: the words say it.
  bar.hidden = phase === "QUEUED" || phase === "SAVING" || generation.status === "QUEUED";
  if (generation.progress != null) bar.value = generation.progress;
  else if (step != null && totalSteps) bar.value = Math.min(step / totalSteps, 1);
  else bar.removeAttribute("value");
}

function showTimeLeft(eta) {
  const deadline = Number(eta.dataset.deadline);
  if (!eta.dataset.deadline || Number.isNaN(deadline)) {
    eta.textContent = "";
    return;
  }
  const seconds = Math.round((deadline - Date.now()) / 1000);
  if (seconds <= 0) eta.textContent = "almost done";
  else if (seconds < 90) eta.textContent = `~${seconds} s left`;
  else eta.textContent = `~${Math.round(seconds / 60)} min left`;
}

// Between pushes the time left counts down once a second; only the text of cards with a deadline changes.
setInterval(() => document.querySelectorAll(".progress .eta[data-deadline]").forEach(showTimeLeft), 1000);

// --- uploads ---------------------------------------------------------------------------------------

function uploadNote(status, error = "") {
  const statusSlot = $("#upload-status");
  statusSlot.textContent = status;
  statusSlot.hidden = !status;
  const errorSlot = $("#upload-error");
  errorSlot.textContent = error;
  errorSlot.hidden = !error;
}

async function uploadFile(file) {
  if (!file) return;
  const zone = $("#upload");
  zone.dataset.state = "uploading";
  uploadNote(`Uploading ${file.name}…`);
  try {
    const { media, userErrors } = (await uploadRequest(file)).uploadMedia;
    if (userErrors.length) throw new Error(userErrors.map((error) => error.message).join("; "));
    remember(media.generation);
    apply(media.generation);
    uploadNote(`Uploaded ${file.name}.`);
  } catch (error) {
    uploadNote("", `${file.name}: ${describe(error)}`);
  } finally {
    delete zone.dataset.state;
    $("#upload-file").value = "";
  }
}

// A file dragged over the page highlights the upload panel; dropped anywhere, it is uploaded.
function acceptDrops() {
  const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  let depth = 0;
  const highlight = (on) => document.body.classList.toggle("dragging", on);
  document.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    depth += 1;
    highlight(true);
  });
  document.addEventListener("dragleave", (event) => {
    if (!carriesFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) highlight(false);
  });
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    depth = 0;
    highlight(false);
    uploadFile(event.dataTransfer.files[0]);
  });
}

// --- start -----------------------------------------------------------------------------------------

function init() {
  const keyInput = $("#api-key");
  keyInput.value = apiKey();
  keyInput.addEventListener("change", () => {
    const key = keyInput.value.trim();
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
    location.reload();
  });
  $("#model").addEventListener("change", (event) => chooseModel(event.target.value));
  $("#generate").addEventListener("submit", submit);
  $("#generate").addEventListener("input", showEstimate);
  $("#older").addEventListener("click", (event) => loadGenerations(event.currentTarget.dataset.after || null));
  $("#upload-file").addEventListener("change", (event) => uploadFile(event.target.files[0]));
  acceptDrops();
  loadModels();
  // The feed starts from a cursor read before the first page, so no change can fall between the two.
  graphql(FEED_CURSOR)
    .then(({ feedCursor }) => feedCursor)
    .catch(() => null)
    .then((cursor) => {
      startFeed(cursor);
      loadGenerations();
    });
}

init();
