// The page: open a photo, find faces, hide them, review, download clean pixels.
// Everything runs here; nothing is sent anywhere (see the CSP in index.html).
//
// The editing model fails closed. A detected face's cover can grow and change
// shape but never shrinks below what was detected and never moves; the only
// way to show a face is its explicit "Keep visible" switch. No region is
// clipped by the photo's border (veil-core paints only the part inside).
// Every change can be undone. On a touch screen, swipes scroll and pinches
// zoom until the person turns on Edit.

import { loadVeil } from './veil-wasm.js';
import { createDetector } from './detector.js';
import { cleanImageBlob } from './clean.js';
import { sniffPhoto, PhotoError } from './sniff.js';
import { regionFromFace, boxContaining, moveWithin, edges, methodFor, featherFor, NOISE_AMOUNT } from './regions.js';

/** Photos above this many pixels are refused: a decompression bomb would
 * take the tab's memory (each pixel costs 8 bytes here: original + preview).
 * Checked on the file's header, before anything is decoded. */
const MAX_PIXELS = 100e6;
/** Smallest region a drag creates, in screen pixels (a click is not a drag). */
const MIN_DRAG_PX = 8;
/** A touch that moves less than this is a tap. */
const TAP_SLOP_PX = 10;
/** Brush radius, in screen pixels. */
const BRUSH_RADIUS_PX = 12;
/** The most zoom offers: 4 screen pixels per photo pixel. */
const MAX_ZOOM = 4;

const $ = (id) => document.getElementById(id);
const ui = {
  open: $('open'), drop: $('drop'), file: $('file'), work: $('work'), status: $('status'), caveat: $('caveat'),
  progress: $('progress'), progressText: $('progress-text'), progressBar: $('progress-bar'), cancel: $('cancel'),
  searchAgain: $('search-again'),
  viewport: $('viewport'), stage: $('stage'), canvas: $('canvas'), overlay: $('overlay'), strength: $('strength'),
  strengthValue: $('strength-value'), noise: $('noise'), ellipse: $('ellipse'), add: $('add'), edit: $('edit'),
  brush: $('brush'),
  undo: $('undo'), redo: $('redo'), reset: $('reset'), zoomIn: $('zoom-in'), zoomOut: $('zoom-out'),
  zoomFit: $('zoom-fit'), zoom100: $('zoom-100'), zoomLevel: $('zoom-level'), list: $('region-list'),
  listCount: $('region-count'), reviewOpen: $('review-open'), review: $('review'), reviewImage: $('review-image'),
  reviewVisible: $('review-visible'), reviewSearch: $('review-search'), reviewWarnings: $('review-warnings'),
  reviewBack: $('review-back'), download: $('download'), another: $('another'), error: $('error'),
};

const state = {
  veil: null,
  detector: null,
  // { width, height, original: WasmImage, preview: WasmImage,
  //   drawn: whether the canvas holds the whole preview, lastRects: areas regions changed at the last redraw }
  photo: null,
  // { id, left, top, width, height, fromFace, hidden, score, floor }: `floor`
  // (faces only) is the detected cover, which the region always contains.
  regions: [],
  detected: [], // the face regions as detected, for "Reset to detected"
  selected: null,
  detection: null, // { faces, ms, passes } of the last detection
  searched: false, // whether the last search finished (not cancelled, not failed)
  seed: 0,
  nextId: 1,
  detections: 0, // photos searched so far (tests wait on body[data-detections])
  editing: false,
  brush: false,
  zoom: null, // screen px per photo px; null: fit the photo to the screen
  undo: [],
  redo: [],
  committed: null, // the state the last commit() recorded (a snapshot)
  downloads: 0,
  review: null, // { blobs: { 'image/jpeg': Blob, 'image/png': Blob }, urls, abort }
};

// Tests and the benchmark read this; it is not an API.
window.veilPage = { state, ready: null, lastError: null };

function setState(s) {
  document.body.dataset.state = s;
}

function showError(message) {
  window.veilPage.lastError = message;
  ui.error.textContent = message;
  ui.error.hidden = false;
}

function clearError() {
  window.veilPage.lastError = null;
  ui.error.hidden = true;
  ui.error.textContent = '';
}

function methodKind() {
  return document.querySelector('input[name=method]:checked').value;
}

// ------------------------------------------------------------ start-up ----

async function start() {
  setState('loading');
  try {
    state.veil = await loadVeil(new URL('./veil_wasm.wasm', import.meta.url));
  } catch (e) {
    showError(`This browser could not start veil (WebAssembly): ${e.message}`);
    setState('error');
    return;
  }
  try {
    state.detector = await createDetector(state.veil, new URL('./models/centerface.onnx', import.meta.url));
  } catch (e) {
    // The page still works without detection: the user can cover faces by hand.
    state.detector = null;
    showError(`Face detection could not start (${e.message}). You can still hide faces by dragging over them.`);
  }
  setState('idle');
  ui.status.textContent = '';
}

// --------------------------------------------------------------- input ----

async function openBlob(blob) {
  clearError();
  closeReview();
  // The header first: size limit and format, before a single pixel is decoded.
  let info;
  try {
    info = await sniffPhoto(blob);
  } catch (e) {
    showError(e instanceof PhotoError ? e.message : `This file could not be read as a photo (${e.message}).`);
    return;
  }
  if (info.width * info.height > MAX_PIXELS) {
    showError(`This photo is too large (${info.width} x ${info.height}); the page handles up to ${MAX_PIXELS / 1e6} megapixels. ` +
      'Nothing was decoded. `veil blur` on a computer handles larger photos.');
    return;
  }
  abortSearch();
  setState('decoding');
  let decoded;
  try {
    decoded = info.format === 'heic' ? await decodeHeif(blob) : await decodeBitmap(blob, info);
  } catch (e) {
    showError(e instanceof PhotoError ? e.message : 'This file could not be read as an image (it may be damaged or truncated).');
    setState(state.photo ? 'done' : 'idle');
    return;
  }
  const { width, height } = decoded;
  if (width * height > MAX_PIXELS) { // the header said otherwise; a second guard all the same
    decoded.close?.();
    showError(`This photo is too large (${width} x ${height}); the page handles up to ${MAX_PIXELS / 1e6} megapixels.`);
    setState(state.photo ? 'done' : 'idle');
    return;
  }
  const canvas = ui.canvas;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: false });
  ctx.clearRect(0, 0, width, height);
  if (decoded.bitmap) {
    ctx.drawImage(decoded.bitmap, 0, 0);
    decoded.bitmap.close();
  }
  const pixels = decoded.pixels ?? ctx.getImageData(0, 0, width, height).data;
  if (decoded.pixels) ctx.putImageData(new ImageData(decoded.pixels, width, height), 0, 0);

  if (state.photo) {
    state.photo.original.free();
    state.photo.preview.free();
  }
  const original = state.veil.imageFrom(pixels, width, height, 4);
  const preview = state.veil.createImage(width, height, 4);
  state.photo = { width, height, original, preview, drawn: false, lastRects: [] };
  state.regions = [];
  state.detected = [];
  state.selected = null;
  state.detection = null;
  state.searched = false;
  state.undo = [];
  state.redo = [];
  state.committed = snapshot();
  state.seed = randomSeed();
  state.zoom = null;
  ui.open.hidden = true;
  ui.work.hidden = false;
  applyZoom(null);
  render();
  await detect();
}

/** The browser's own decoder: JPEG, PNG, WebP, GIF, BMP. */
async function decodeBitmap(blob, info) {
  // 'from-image' applies the EXIF orientation to the pixels; no colour
  // conversion so pixels match what other decoders (Pillow) produce.
  const typed = blob.type === info.type ? blob : new Blob([blob], { type: info.type });
  const bitmap = await createImageBitmap(typed, {
    imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none',
  });
  return { bitmap, width: bitmap.width, height: bitmap.height, close: () => bitmap.close() };
}

let heif = null; // libheif, loaded on the first HEIC photo (2 MB, from this origin)

/**
 * HEIC/HEIF (iPhone photos) through libheif-js: the primary image, with its
 * rotation and mirroring (irot, imir) applied, as RGBA. The size is checked
 * again on the parsed image before its pixels are decoded.
 */
async function decodeHeif(blob) {
  if (!heif) {
    const { default: factory } = await import('./heif/libheif-bundle.mjs');
    heif = await factory();
  }
  const decoder = new heif.HeifDecoder();
  const images = decoder.decode(new Uint8Array(await blob.arrayBuffer()));
  if (!images || images.length === 0) throw new PhotoError('This HEIC/HEIF file holds no image the page can read (it may be damaged).');
  const image = images[0];
  try {
    const width = image.get_width();
    const height = image.get_height();
    if (width * height > MAX_PIXELS) return { width, height };
    const pixels = await new Promise((resolve, reject) => {
      const target = { data: new Uint8ClampedArray(width * height * 4), width, height };
      image.display(target, (out) => (out ? resolve(out.data) : reject(new PhotoError('This HEIC/HEIF photo could not be decoded (it may be damaged).'))));
    });
    return { width, height, pixels };
  } finally {
    for (const im of images) im.free?.();
  }
}

function randomSeed() {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (words[0] & 0x1fffff) * 2 ** 32 + words[1]; // below 2^53
}

// ---------------------------------------------------------- detection ----

let search = null; // { controller, photo } of the search in progress

function abortSearch() {
  if (search) search.controller.abort();
  search = null;
}

async function detect() {
  const photo = state.photo;
  if (!state.detector) {
    ui.caveat.textContent = 'Face detection is not available: cover each face by hand (drag over it).';
    finishDetection();
    return;
  }
  abortSearch();
  const controller = new AbortController();
  const mine = { controller, photo };
  search = mine;
  setState('detecting');
  ui.progress.hidden = false;
  ui.searchAgain.hidden = true;
  ui.progressText.textContent = 'Looking for faces…';
  ui.progressBar.removeAttribute('value');
  ui.caveat.textContent = '';
  updateStatus();
  let result = null;
  let failure = null;
  try {
    result = await state.detector.detect(photo.original, {
      signal: controller.signal,
      onProgress(done, total, label) {
        if (controller.signal.aborted) return;
        ui.progressBar.max = total;
        ui.progressBar.value = done;
        const what = label || (done === 0 ? 'whole photo' : done < total ? `part ${done} of ${total - 1} at full size` : 'finishing');
        ui.progressText.textContent = `Looking for faces: ${what} (${done} of ${total} passes done)`;
      },
    });
  } catch (e) {
    failure = e;
  }
  // A detector that does not honour the signal yet still resolves: its answer
  // is for a search the person stopped, so it is dropped.
  if (controller.signal.aborted || search !== mine) return;
  search = null;
  ui.progress.hidden = true;
  if (failure) {
    showError(`Face detection failed (${failure.message}). You can still hide faces by dragging over them.`);
    ui.searchAgain.hidden = false;
  } else {
    state.detection = result;
    state.searched = true;
    state.detected = result.faces.map((face) => {
      const box = regionFromFace(face);
      return { id: state.nextId++, ...box, fromFace: true, hidden: true, score: face.score, floor: box };
    });
    state.regions = state.detected.map(copyRegion).concat(state.regions.filter((r) => !r.fromFace));
    // Detection is not an edit to undo: the found faces become the start.
    state.undo = [];
    state.redo = [];
    state.committed = snapshot();
    ui.caveat.textContent = result.faces.length === 0
      ? 'No faces found. Detection can miss faces: check the photo and cover anything it missed.'
      : 'Detection can miss faces: check the photo (zoom in on small ones) and cover anything it missed.';
  }
  render();
  finishDetection();
}

function finishDetection() {
  document.body.dataset.detections = String(++state.detections);
  setState('done');
  updateStatus();
}

ui.cancel.addEventListener('click', () => {
  if (!search) return;
  const photo = search.photo;
  abortSearch();
  ui.progress.hidden = true;
  ui.searchAgain.hidden = false;
  ui.caveat.textContent = 'The search was stopped before it finished: no face has been covered for you. ' +
    'Cover faces by hand, or search again.';
  if (state.photo === photo) finishDetection();
});
ui.searchAgain.addEventListener('click', () => { if (state.photo) detect(); });

ui.file.addEventListener('change', () => {
  const f = ui.file.files[0];
  if (f) openBlob(f);
  ui.file.value = '';
});

for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, (e) => {
    e.preventDefault();
    ui.drop.classList.add('over');
  });
}
document.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
document.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.drop.classList.remove('over');
  const f = e.dataTransfer && e.dataTransfer.files[0];
  if (f) openBlob(f);
});
document.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === 'file');
  if (item) {
    e.preventDefault();
    openBlob(item.getAsFile());
  }
});

// -------------------------------------------------------- undo / redo ----

function copyRegion(r) {
  return { ...r, floor: r.floor ? { ...r.floor } : undefined };
}

/** Everything an edit can change: the regions and the method settings. */
function snapshot() {
  return JSON.stringify({
    regions: state.regions,
    method: methodKind(),
    strength: ui.strength.value,
    noise: ui.noise.checked,
    ellipse: ui.ellipse.checked,
  });
}

function restore(snap) {
  const s = JSON.parse(snap);
  state.regions = s.regions;
  document.querySelector(`input[name=method][value=${s.method}]`).checked = true;
  ui.strength.value = s.strength;
  ui.noise.checked = s.noise;
  ui.ellipse.checked = s.ellipse;
  syncSettings();
  if (state.selected !== null && !regionById(state.selected)) state.selected = null;
  render();
}

/** Records the current state as one step that undo can go back from. */
function commit() {
  const now = snapshot();
  if (now === state.committed) return;
  state.undo.push(state.committed);
  state.redo = [];
  state.committed = now;
  updateStatus();
}

/** Whether a drag that changes something is under way (a pending tap is not). */
function editing() {
  return drag !== null && drag.kind !== 'tap';
}

function undo() {
  if (editing() || !state.undo.length) return;
  state.redo.push(state.committed);
  state.committed = state.undo.pop();
  restore(state.committed);
}

function redo() {
  if (editing() || !state.redo.length) return;
  state.undo.push(state.committed);
  state.committed = state.redo.pop();
  restore(state.committed);
}

function resetToDetected() {
  state.regions = state.detected.map(copyRegion);
  state.selected = null;
  commit();
  render();
}

ui.undo.addEventListener('click', undo);
ui.redo.addEventListener('click', redo);
ui.reset.addEventListener('click', resetToDetected);

document.addEventListener('keydown', (e) => {
  if (!state.photo || !ui.review.hidden || !(e.ctrlKey || e.metaKey) || e.altKey) return;
  const key = e.key.toLowerCase();
  if (key === 'z' && !e.shiftKey) undo();
  else if ((key === 'z' && e.shiftKey) || key === 'y') redo();
  else return;
  e.preventDefault();
});

// -------------------------------------------------------------- status ----

function counts() {
  const faces = state.regions.filter((r) => r.fromFace);
  return {
    hidden: faces.filter((r) => r.hidden).length,
    kept: faces.filter((r) => !r.hidden).length,
    added: state.regions.filter((r) => !r.fromFace).length,
  };
}

/** The status line: always the counts of the regions as they are now. */
function updateStatus() {
  if (!state.photo) return;
  const { hidden, kept, added } = counts();
  const s = ui.status;
  s.dataset.hidden = String(hidden);
  s.dataset.kept = String(kept);
  s.dataset.added = String(added);
  s.dataset.faces = String(hidden + kept);
  const searching = search !== null;
  s.textContent = `${searching ? 'Searching… ' : ''}${hidden} hidden, ${kept} kept visible by you, ${added} added by you.`;
  s.classList.toggle('warn', kept > 0 || (!searching && !state.searched));
  ui.undo.disabled = state.undo.length === 0;
  ui.redo.disabled = state.redo.length === 0;
  ui.reset.disabled = state.undo.length === 0 && state.regions.every((r) => r.fromFace && r.hidden);
  ui.reviewOpen.disabled = searching;
}

// -------------------------------------------------------------- render ----

let renderQueued = false;

/** Schedules a redraw of the preview and the overlay (once per frame). */
function render() {
  updateStatus();
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderNow();
  });
}

/** Hides the regions in `image` (a copy of the original) with the current settings.
 * Regions may reach past the photo's border: veil-core paints only the part inside. */
function hideRegions(image) {
  const kind = methodKind();
  const strength = Number(ui.strength.value);
  const shape = ui.ellipse.checked ? 'ellipse' : 'rectangle';
  for (const r of state.regions) {
    if (!r.hidden) continue;
    if (r.dabs) {
      // A brush stroke: a row of small ovals, covered by the same kernels as a face.
      const side = 2 * r.radius;
      const dab = { width: side, height: side };
      const dabs = r.dabs.map(([x, y]) => ({ left: x - r.radius, top: y - r.radius, width: side, height: side, shape: 'ellipse', featherPx: featherFor(kind, dab) }));
      state.veil.applyToRegions(image, methodFor(kind, strength, dab), dabs);
      if (ui.noise.checked && kind !== 'solid') {
        state.veil.applyToRegions(image, { kind: 'noise', amount: NOISE_AMOUNT, seed: state.seed }, dabs.map((d) => ({ ...d, featherPx: 0 })));
      }
      continue;
    }
    const region = { left: r.left, top: r.top, width: r.width, height: r.height, shape, featherPx: featherFor(kind, r) };
    state.veil.applyToRegions(image, methodFor(kind, strength, r), [region]);
    if (ui.noise.checked && kind !== 'solid') {
      state.veil.applyToRegions(image, { kind: 'noise', amount: NOISE_AMOUNT, seed: state.seed }, [{ ...region, featherPx: 0 }]);
    }
  }
}

/**
 * The pixels a region can change: its box, the feather beyond it, and a
 * margin for rounding; clipped to the photo (here, at paint time only).
 * Integers: [x0, y0, x1, y1).
 */
function dirtyRect(r, width, height) {
  const pad = featherFor(methodKind(), r) + 2;
  const clamp = (v, hi) => Math.min(hi, Math.max(0, v));
  return [
    clamp(Math.floor(r.left - pad), width), clamp(Math.floor(r.top - pad), height),
    clamp(Math.ceil(r.left + r.width + pad), width), clamp(Math.ceil(r.top + r.height + pad), height),
  ];
}

/**
 * Redraws the preview. Only the areas that regions cover now or covered at
 * the last redraw are restored from the original and redrawn: outside them
 * the preview is the original already (a 12 MP photo is 48 MB to copy and
 * upload to the canvas; a few faces are a few percent of that).
 */
function renderNow() {
  const photo = state.photo;
  if (!photo) return;
  const { width, height, original, preview } = photo;
  const rects = state.regions.map((r) => dirtyRect(r, width, height));
  const touched = photo.drawn ? rects.concat(photo.lastRects) : [[0, 0, width, height]];
  const memory = new Uint8Array(state.veil.memory.buffer);
  for (const [x0, y0, x1, y1] of touched) {
    for (let y = y0; y < y1; y++) {
      const at = (y * width + x0) * 4;
      memory.copyWithin(preview.ptr + at, original.ptr + at, original.ptr + at + (x1 - x0) * 4);
    }
  }
  try {
    hideRegions(preview);
  } catch (e) {
    showError(`Could not hide a region: ${e.message}`);
  }
  const ctx = ui.canvas.getContext('2d');
  const image = preview.imageData();
  for (const [x0, y0, x1, y1] of touched) {
    if (x1 > x0 && y1 > y0) ctx.putImageData(image, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }
  photo.drawn = true;
  photo.lastRects = rects;
  renderOverlay();
  renderList();
}

/** Face numbers as the list shows them: detected faces in order, then your areas. */
function labels() {
  const out = new Map();
  let face = 0;
  let yours = 0;
  for (const r of state.regions) out.set(r.id, r.fromFace ? `Face ${++face}` : `${r.dabs ? 'Your stroke' : 'Your area'} ${++yours}`);
  return out;
}

function renderOverlay() {
  const photo = state.photo;
  const names = labels();
  const existing = new Map([...ui.overlay.querySelectorAll('.region')].map((el) => [Number(el.dataset.id), el]));
  for (const r of state.regions) {
    let el = existing.get(r.id);
    existing.delete(r.id);
    if (!el) {
      el = document.createElement('button');
      el.type = 'button';
      el.className = 'region';
      el.dataset.id = String(r.id);
      el.innerHTML = ['nw', 'ne', 'sw', 'se'].map((c) => `<span class="handle ${c}" data-corner="${c}" aria-hidden="true"></span>`).join('');
      ui.overlay.appendChild(el);
    }
    el.style.left = `${(100 * r.left) / photo.width}%`;
    el.style.top = `${(100 * r.top) / photo.height}%`;
    el.style.width = `${(100 * r.width) / photo.width}%`;
    el.style.height = `${(100 * r.height) / photo.height}%`;
    el.classList.toggle('face', r.fromFace);
    el.classList.toggle('stroke', Boolean(r.dabs));
    el.classList.toggle('kept', !r.hidden);
    el.classList.toggle('selected', state.selected === r.id);
    el.setAttribute('aria-label', `${names.get(r.id)}: ${r.hidden ? 'hidden' : 'kept visible'}`);
    // Handles sit on the corners, pulled inside the photo when a cover
    // reaches past its border (the frame clips anything outside).
    const [l, t, rr, b] = edges(r);
    const inX = (x) => Math.min(photo.width, Math.max(0, x));
    const inY = (y) => Math.min(photo.height, Math.max(0, y));
    el.querySelectorAll('.handle').forEach((h) => {
      h.hidden = state.selected !== r.id || Boolean(r.dabs);
      const c = h.dataset.corner;
      h.style.left = `${(100 * (inX(c.includes('w') ? l : rr) - l)) / r.width}%`;
      h.style.top = `${(100 * (inY(c.includes('n') ? t : b) - t)) / r.height}%`;
    });
  }
  for (const el of existing.values()) el.remove();
  layoutTags(names);
}

/**
 * Number tags beside the boxes, placed so that no two overlap: above the
 * box, else below, else inside its top; a tag with no free place is left
 * out (the list below the photo names every region). Tags live inside the
 * photo's frame, which clips them, so they never cover the status line.
 */
function layoutTags(names) {
  ui.overlay.querySelectorAll('.tag').forEach((t) => t.remove());
  const W = ui.overlay.clientWidth;
  const H = ui.overlay.clientHeight;
  if (!W || !H) return;
  const sx = W / state.photo.width;
  const sy = H / state.photo.height;
  const placed = [];
  const free = (x, y, w, h) => x >= 0 && y >= 0 && x + w <= W && y + h <= H &&
    placed.every(([a, b, c, d]) => x + w <= a || x >= c || y + h <= b || y >= d);
  const tagH = 20;
  const fragment = document.createDocumentFragment();
  // Larger faces first: they are the ones a tag most helps to tell apart.
  const order = [...state.regions].sort((a, b) => b.width * b.height - a.width * a.height);
  for (const r of order) {
    const text = names.get(r.id).replace(/^Face /, '').replace(/^Your (area|stroke) /, '+') + (r.hidden ? '' : ' kept');
    const tagW = 9 + 7.5 * text.length;
    const [l, t, rr, b] = edges(r).map((v, i) => v * (i % 2 ? sy : sx));
    const x = Math.min(Math.max(0, l), W - tagW);
    const spot = [[x, t - tagH - 1], [x, b + 1], [x, Math.max(0, t) + 1]].find(([px, py]) => free(px, py, tagW, tagH));
    if (!spot) continue;
    placed.push([spot[0], spot[1], spot[0] + tagW, spot[1] + tagH]);
    const tag = document.createElement('span');
    tag.className = `tag${r.hidden ? '' : ' kept'}`;
    tag.dataset.for = String(r.id);
    tag.textContent = text;
    Object.assign(tag.style, { left: `${spot[0]}px`, top: `${spot[1]}px`, width: `${tagW}px`, height: `${tagH}px` });
    fragment.appendChild(tag);
  }
  ui.overlay.appendChild(fragment);
}

/** The list of regions under the photo: each face's "Keep visible" switch lives here. */
function renderList() {
  const names = labels();
  const rows = new Map([...ui.list.children].map((li) => [Number(li.dataset.id), li]));
  const wanted = [];
  for (const r of state.regions) {
    let li = rows.get(r.id);
    rows.delete(r.id);
    if (!li) {
      li = document.createElement('li');
      li.dataset.id = String(r.id);
      li.innerHTML = '<button type="button" class="pick"></button><button type="button" class="act"></button>';
    }
    const pick = li.querySelector('.pick');
    const act = li.querySelector('.act');
    li.classList.toggle('kept', !r.hidden);
    li.classList.toggle('selected', state.selected === r.id);
    pick.textContent = `${names.get(r.id)}: ${r.hidden ? 'hidden' : 'VISIBLE (kept by you)'}`;
    if (r.fromFace) {
      act.className = 'act keep';
      act.textContent = r.hidden ? 'Keep visible' : 'Hide again';
      act.setAttribute('aria-pressed', String(!r.hidden));
    } else {
      act.className = 'act remove';
      act.textContent = 'Remove';
      act.removeAttribute('aria-pressed');
    }
    act.setAttribute('aria-label', `${act.textContent}: ${names.get(r.id)}`);
    wanted.push(li);
  }
  for (const li of rows.values()) li.remove();
  wanted.forEach((li, i) => { if (ui.list.children[i] !== li) ui.list.insertBefore(li, ui.list.children[i] ?? null); });
  ui.listCount.textContent = String(state.regions.length);
}

ui.list.addEventListener('click', (e) => {
  const li = e.target.closest('li');
  if (!li) return;
  const r = regionById(Number(li.dataset.id));
  if (!r) return;
  if (e.target.closest('.keep')) {
    r.hidden = !r.hidden;
    commit();
  } else if (e.target.closest('.remove')) {
    state.regions = state.regions.filter((x) => x !== r);
    commit();
  }
  state.selected = regionById(r.id) ? r.id : null;
  if (e.target.closest('.pick')) showRegion(r);
  render();
});

/** Scrolls the photo's frame so that region `r` is in the middle (when zoomed in). */
function showRegion(r) {
  const z = currentZoom();
  ui.viewport.scrollLeft = (r.left + r.width / 2) * z - ui.viewport.clientWidth / 2;
  ui.viewport.scrollTop = (r.top + r.height / 2) * z - ui.viewport.clientHeight / 2;
}

function syncSettings() {
  ui.strengthValue.textContent = ui.strength.value;
  ui.strength.disabled = methodKind() === 'solid';
}

for (const el of [ui.strength, ui.noise, ui.ellipse, ...document.querySelectorAll('input[name=method]')]) {
  el.addEventListener('input', () => {
    syncSettings();
    render();
  });
  el.addEventListener('change', () => {
    syncSettings();
    commit();
    render();
  });
}
syncSettings();

// ---------------------------------------------------------- zoom, pan ----

function fitZoom() {
  const { width, height } = state.photo;
  const maxW = ui.viewport.clientWidth || window.innerWidth;
  const maxH = Math.max(200, window.innerHeight * (window.innerWidth < 640 ? 0.6 : 0.72));
  // Small photos are shown up to twice their size, so their faces can be checked.
  return Math.min(2, maxW / width, maxH / height);
}

/** Sets the zoom (null: fit), keeping the photo point under `anchor` (client x, y) in place. */
function applyZoom(zoom, anchor) {
  if (!state.photo) return;
  const { width, height } = state.photo;
  const fit = fitZoom();
  const old = state.zoom ?? fit;
  const z = zoom === null ? fit : Math.min(Math.max(fit, MAX_ZOOM), Math.max(fit, zoom));
  state.zoom = zoom === null || z === fit ? null : z;
  const vp = ui.viewport.getBoundingClientRect();
  const ax = anchor ? anchor[0] - vp.left : ui.viewport.clientWidth / 2;
  const ay = anchor ? anchor[1] - vp.top : ui.viewport.clientHeight / 2;
  const stageRect = ui.stage.getBoundingClientRect();
  const px = (vp.left + ax - stageRect.left) / old;
  const py = (vp.top + ay - stageRect.top) / old;
  ui.stage.style.width = `${width * z}px`;
  ui.stage.style.height = `${height * z}px`;
  ui.viewport.classList.toggle('zoomed', state.zoom !== null);
  ui.viewport.scrollLeft = px * z - ax;
  ui.viewport.scrollTop = py * z - ay;
  ui.zoomLevel.textContent = `${Math.round(z * 100)}%`;
  ui.zoomOut.disabled = state.zoom === null;
  ui.zoomIn.disabled = z >= Math.max(fit, MAX_ZOOM);
  layoutTags(labels());
}

function currentZoom() {
  return state.zoom ?? fitZoom();
}

ui.zoomIn.addEventListener('click', () => applyZoom(currentZoom() * 1.5));
ui.zoomOut.addEventListener('click', () => applyZoom(currentZoom() / 1.5));
ui.zoomFit.addEventListener('click', () => applyZoom(null));
ui.zoom100.addEventListener('click', () => applyZoom(1));
window.addEventListener('resize', () => { if (state.photo) applyZoom(state.zoom); });

// Pinch: two fingers zoom about their midpoint, and pan as they move. The
// page's own pinch-zoom cannot reach 100% of a 12 MP photo on a phone, so
// the photo's frame does its own (touch-action: pan-x pan-y keeps one-finger
// swipes scrolling natively).
let pinch = null;
ui.viewport.addEventListener('touchstart', (e) => {
  if (e.touches.length === 2 && state.photo) {
    cancelDrag();
    const [a, b] = e.touches;
    pinch = { dist: Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY), zoom: currentZoom(),
      mid: [(a.clientX + b.clientX) / 2, (a.clientY + b.clientY) / 2] };
    e.preventDefault();
  }
}, { passive: false });
ui.viewport.addEventListener('touchmove', (e) => {
  if (!pinch || e.touches.length !== 2) return;
  const [a, b] = e.touches;
  const dist = Math.hypot(a.clientX - b.clientX, a.clientY - b.clientY);
  const mid = [(a.clientX + b.clientX) / 2, (a.clientY + b.clientY) / 2];
  ui.viewport.scrollLeft -= mid[0] - pinch.mid[0];
  ui.viewport.scrollTop -= mid[1] - pinch.mid[1];
  pinch.mid = mid;
  applyZoom(pinch.zoom * (dist / Math.max(1, pinch.dist)), mid);
  if (e.cancelable) e.preventDefault();
}, { passive: false });
ui.viewport.addEventListener('touchend', (e) => { if (e.touches.length < 2) pinch = null; });
ui.viewport.addEventListener('touchcancel', () => { pinch = null; });

// ------------------------------------------------- pointer interaction ----

ui.edit.addEventListener('click', () => setEditing(!state.editing));
ui.brush.addEventListener('click', () => setBrush(!state.brush));

function setEditing(on) {
  state.editing = on;
  ui.edit.setAttribute('aria-pressed', String(on));
  ui.edit.textContent = on ? 'Editing: on' : 'Edit';
  if (!on && state.brush) setBrush(false);
  document.body.classList.toggle('editing', on);
}

/** The brush paints covers along the pointer (a tattoo, a badge, a sign);
 * on a touch screen it turns Edit on too, so the finger paints, not scrolls. */
function setBrush(on) {
  state.brush = on;
  ui.brush.setAttribute('aria-pressed', String(on));
  ui.brush.textContent = on ? 'Brush: on' : 'Brush';
  document.body.classList.toggle('brush', on);
  if (on && !state.editing) setEditing(true);
}

/** Brush radius in photo pixels: a fixed size on screen, so zooming in paints finer. */
function brushRadius(g) {
  return Math.max(1, BRUSH_RADIUS_PX * Math.max(g.sx, g.sy));
}

/** Adds dabs from the stroke's last one to (x, y), at most half a radius apart. */
function extendStroke(r, x, y) {
  const [lx, ly] = r.dabs[r.dabs.length - 1];
  const steps = Math.ceil(Math.hypot(x - lx, y - ly) / (r.radius / 2));
  for (let k = 1; k <= steps; k++) r.dabs.push([lx + ((x - lx) * k) / steps, ly + ((y - ly) * k) / steps]);
  strokeBounds(r);
}

function strokeBounds(r) {
  const xs = r.dabs.map((d) => d[0]);
  const ys = r.dabs.map((d) => d[1]);
  Object.assign(r, { left: Math.min(...xs) - r.radius, top: Math.min(...ys) - r.radius,
    width: Math.max(...xs) - Math.min(...xs) + 2 * r.radius, height: Math.max(...ys) - Math.min(...ys) + 2 * r.radius });
}

/** Moves a region you added; a stroke's dabs move with it. */
function moveAdded(r, from, dx, dy) {
  const { width, height } = state.photo;
  const to = moveWithin(from, dx, dy, width, height);
  if (r.dabs) {
    const [ox, oy] = [to.left - r.left, to.top - r.top];
    r.dabs = r.dabs.map(([x, y]) => [x + ox, y + oy]);
  }
  Object.assign(r, to);
}

/** Image pixels per screen pixel, and the overlay's origin on screen. */
function geometry() {
  const rect = ui.overlay.getBoundingClientRect();
  return { rect, sx: state.photo.width / rect.width, sy: state.photo.height / rect.height };
}

function toImage(e, g) {
  return { x: (e.clientX - g.rect.left) * g.sx, y: (e.clientY - g.rect.top) * g.sy };
}

function regionById(id) {
  return state.regions.find((r) => r.id === id);
}

let drag = null;

function cancelDrag() {
  if (!drag) return;
  if (drag.rubber) drag.rubber.remove();
  if (drag.orig) Object.assign(drag.r, drag.orig);
  if (drag.kind === 'paint') commit(); // what was painted stays (a cover is never lost)
  drag = null;
  render();
}

ui.overlay.addEventListener('pointerdown', (e) => {
  if (!state.photo || e.button !== 0 || !e.isPrimary || pinch) return;
  const regionEl = e.target.closest('.region');
  const id = regionEl ? Number(regionEl.dataset.id) : null;
  if (e.pointerType === 'touch' && !state.editing) {
    // Outside Edit, a touch only selects (on a tap); a swipe scrolls as usual.
    drag = { kind: 'tap', id, screen: [e.clientX, e.clientY] };
    return;
  }
  const g = geometry();
  const p = toImage(e, g);
  const handle = e.target.closest('.handle');
  const r = id === null ? null : regionById(id);
  if (state.brush) {
    // The brush paints wherever it starts, over a cover or not.
    const stroke = { id: state.nextId++, fromFace: false, hidden: true, radius: brushRadius(g), dabs: [[p.x, p.y]] };
    strokeBounds(stroke);
    state.regions.push(stroke);
    drag = { kind: 'paint', r: stroke, g };
    render();
  } else if (handle && r && !r.dabs) {
    drag = { kind: 'resize', r, corner: handle.dataset.corner, g, start: p, orig: copyRegion(r) };
  } else if (r) {
    drag = { kind: r.fromFace ? 'select' : 'move', r, g, start: p, orig: copyRegion(r), moved: false, screen: [e.clientX, e.clientY] };
  } else {
    const rubber = document.createElement('div');
    rubber.className = 'rubber';
    ui.overlay.appendChild(rubber);
    drag = { kind: 'add', g, start: p, rubber, screen: [e.clientX, e.clientY] };
  }
  ui.overlay.setPointerCapture(e.pointerId);
  e.preventDefault();
});

ui.overlay.addEventListener('pointermove', (e) => {
  if (!drag || !e.isPrimary) return;
  if (drag.kind === 'tap' || drag.kind === 'select') return; // a face's cover never moves
  const p = toImage(e, drag.g);
  const { width, height } = state.photo;
  if (drag.kind === 'paint') {
    extendStroke(drag.r, p.x, p.y);
    render();
    return;
  }
  if (drag.kind === 'add') {
    const [l, t] = [Math.min(drag.start.x, p.x), Math.min(drag.start.y, p.y)];
    const [w, h] = [Math.abs(p.x - drag.start.x), Math.abs(p.y - drag.start.y)];
    Object.assign(drag.rubber.style, {
      left: `${(100 * l) / width}%`, top: `${(100 * t) / height}%`,
      width: `${(100 * w) / width}%`, height: `${(100 * h) / height}%`,
    });
    return;
  }
  const dx = p.x - drag.start.x;
  const dy = p.y - drag.start.y;
  if (drag.kind === 'move') {
    if (!drag.moved && Math.hypot(e.clientX - drag.screen[0], e.clientY - drag.screen[1]) < MIN_DRAG_PX) return;
    drag.moved = true;
    moveAdded(drag.r, drag.orig, dx, dy);
  } else {
    // Resize. The corner follows the pointer, even past the photo's border;
    // a face's cover is kept around its detected box (it can only grow).
    const o = drag.orig;
    let [l, t, r, b] = edges(o);
    if (drag.corner.includes('w')) l += dx; else r += dx;
    if (drag.corner.includes('n')) t += dy; else b += dy;
    Object.assign(drag.r, boxContaining(l, t, r, b, drag.r.floor));
  }
  render();
});

function endDrag(e) {
  if (!drag || !e.isPrimary) return;
  const d = drag;
  drag = null;
  if (d.kind === 'paint') {
    state.selected = d.r.id;
    commit();
  } else if (d.kind === 'tap') {
    if (Math.hypot(e.clientX - d.screen[0], e.clientY - d.screen[1]) < TAP_SLOP_PX) state.selected = d.id;
  } else if (d.kind === 'add') {
    d.rubber.remove();
    const p = toImage(e, d.g);
    const dist = Math.hypot(e.clientX - d.screen[0], e.clientY - d.screen[1]);
    if (dist >= MIN_DRAG_PX) {
      const r = { id: state.nextId++, ...boxContaining(d.start.x, d.start.y, p.x, p.y), fromFace: false, hidden: true };
      state.regions.push(r);
      state.selected = r.id;
      commit();
    } else {
      state.selected = null;
    }
  } else {
    state.selected = d.r.id;
    commit();
  }
  render();
}

ui.overlay.addEventListener('pointerup', endDrag);
// A touch that ends off the photo was a scroll, not a tap.
document.addEventListener('pointerup', (e) => { if (drag && drag.kind === 'tap' && !ui.overlay.contains(e.target)) drag = null; });
// The browser took the touch over (a scroll or a pinch): nothing changes.
ui.overlay.addEventListener('pointercancel', (e) => { if (e.isPrimary) cancelDrag(); });

// ------------------------------------------------------------ keyboard ----

ui.overlay.addEventListener('focusin', (e) => {
  const el = e.target.closest('.region');
  if (el) {
    state.selected = Number(el.dataset.id);
    renderOverlay();
    renderList();
  }
});

ui.overlay.addEventListener('keydown', (e) => {
  const el = e.target.closest('.region');
  if (!el || e.ctrlKey || e.metaKey) return;
  const r = regionById(Number(el.dataset.id));
  const { width, height } = state.photo;
  const step = Math.max(1, Math.round(Math.min(width, height) / 100)) * (e.altKey ? 5 : 1);
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if (moves[e.key]) {
    const [dx, dy] = moves[e.key];
    let [l, t, rr, b] = edges(r);
    if (e.shiftKey) {
      if (r.dabs) return; // a stroke is repainted, not resized
      // Shift+arrows move the right or bottom edge (a face's cover only grows).
      Object.assign(r, boxContaining(l, t, rr + dx, b + dy, r.floor));
    } else if (!r.fromFace) {
      moveAdded(r, { ...r }, dx, dy);
    } else {
      return; // a face's cover does not move
    }
    e.preventDefault();
    commit();
    render();
  } else if (e.key === 'k' || e.key === 'K') {
    if (!r.fromFace) return;
    r.hidden = !r.hidden;
    commit();
    render();
  } else if ((e.key === 'Delete' || e.key === 'Backspace') && !r.fromFace) {
    state.regions = state.regions.filter((x) => x !== r);
    state.selected = null;
    e.preventDefault();
    commit();
    render();
    ui.add.focus();
  }
});

ui.add.addEventListener('click', () => {
  if (!state.photo) return;
  const { width, height } = state.photo;
  // In the middle of what is on screen (the photo may be zoomed in).
  const g = geometry();
  const vp = ui.viewport.getBoundingClientRect();
  const cx = ((Math.max(vp.left, g.rect.left) + Math.min(vp.right, g.rect.right)) / 2 - g.rect.left) * g.sx;
  const cy = ((Math.max(vp.top, g.rect.top) + Math.min(vp.bottom, g.rect.bottom)) / 2 - g.rect.top) * g.sy;
  const side = Math.min(width, height, Math.min(vp.width, vp.height) * g.sx) / 4;
  const r = { id: state.nextId++, ...boxContaining(cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), fromFace: false, hidden: true };
  state.regions.push(r);
  state.selected = r.id;
  commit();
  renderNow();
  ui.overlay.querySelector(`.region[data-id="${r.id}"]`).focus();
});

// -------------------------------------------------------------- review ----

function encode(type) {
  const quality = type === 'image/jpeg' ? 0.92 : undefined;
  return new Promise((resolve) => ui.canvas.toBlob(resolve, type, quality));
}

function chosenType() {
  return document.querySelector('input[name=format]:checked').value;
}

function closeReview() {
  if (!state.review) return;
  state.review.abort.abort();
  for (const url of Object.values(state.review.urls)) URL.revokeObjectURL(url);
  state.review = null;
  ui.review.hidden = true;
  ui.reviewImage.removeAttribute('src');
  ui.reviewSearch.dataset.faces = '';
  ui.reviewSearch.textContent = '';
  ui.reviewSearch.classList.remove('warn');
  ui.reviewWarnings.replaceChildren();
  if (state.photo) ui.work.hidden = false;
}

/**
 * The review step: the file exactly as it will be written (the cleaned,
 * encoded bytes, shown as an image), what is still visible in it, and
 * warnings. A fresh search of the result counts the faces a detector can
 * still find.
 */
async function openReview() {
  const photo = state.photo;
  if (!photo || search) return;
  closeReview();
  renderNow(); // the canvas holds exactly the preview pixels, full size
  const blobs = {};
  for (const type of ['image/jpeg', 'image/png']) {
    const encoded = await encode(type);
    if (!encoded) {
      showError('The browser could not encode the image.');
      return;
    }
    // Drop whatever the browser's encoder adds (e.g. an ICC profile).
    blobs[type] = await cleanImageBlob(encoded);
  }
  const urls = Object.fromEntries(Object.entries(blobs).map(([t, b]) => [t, URL.createObjectURL(b)]));
  const abort = new AbortController();
  state.review = { blobs, urls, abort };
  ui.reviewImage.src = urls[chosenType()];

  const { hidden, kept, added } = counts();
  ui.reviewVisible.dataset.kept = String(kept);
  ui.reviewVisible.textContent = kept === 0
    ? `Faces left visible by you: none. ${hidden} face${hidden === 1 ? '' : 's'} hidden, ${added} area${added === 1 ? '' : 's'} you added.`
    : `Faces left visible by you: ${kept}. ${hidden} face${hidden === 1 ? '' : 's'} hidden, ${added} area${added === 1 ? '' : 's'} you added.`;
  const warnings = [];
  if (kept > 0) warnings.push(`${kept} face${kept === 1 ? ' is' : 's are'} kept visible by you and will be recognisable in the file.`);
  const kind = methodKind();
  if (kind !== 'solid') {
    warnings.push(`${kind === 'blur' ? 'Blur' : 'Pixelation'} can be partly undone, and a detector can often still find the face: ` +
      "in veil's measurements only solid fill passed (re-detected in 1% of faces, against 7-45% for blur and pixelation at the strengths tried). Use Solid to be safe.");
  }
  if (!state.searched) warnings.push('The photo was not searched for faces (the search was stopped or failed): only what you covered by hand is hidden.');
  ui.reviewWarnings.replaceChildren(...warnings.map((w) => Object.assign(document.createElement('li'), { textContent: w })));
  ui.reviewWarnings.hidden = warnings.length === 0;
  ui.work.hidden = true;
  ui.review.hidden = false;
  document.body.dataset.review = 'open';
  ui.review.scrollIntoView({ block: 'start' });

  if (!state.detector) {
    ui.reviewSearch.textContent = 'Face detection is not available here, so the result was not searched again.';
    return;
  }
  ui.reviewSearch.textContent = 'Searching the result for faces a detector can still find…';
  try {
    const again = await state.detector.detect(photo.preview, { signal: abort.signal });
    if (abort.signal.aborted) return;
    const n = again.faces.length;
    ui.reviewSearch.dataset.faces = String(n);
    ui.reviewSearch.textContent = n === 0
      ? 'A fresh search of this result finds no face.'
      : `A fresh search of this result still finds ${n} face${n === 1 ? '' : 's'}${kept ? ' (faces you kept visible count here)' : ''}. Look again before you share it.`;
    ui.reviewSearch.classList.toggle('warn', n > 0);
  } catch (e) {
    if (!abort.signal.aborted) ui.reviewSearch.textContent = `The result could not be searched again (${e.message}).`;
  }
}

for (const el of document.querySelectorAll('input[name=format]')) {
  el.addEventListener('change', () => { if (state.review) ui.reviewImage.src = state.review.urls[chosenType()]; });
}

/** Saves the reviewed file under a neutral name: nothing of the original's name, date or place. */
function download() {
  if (!state.review) return;
  const type = chosenType();
  const a = document.createElement('a');
  a.href = state.review.urls[type];
  a.download = `veil-${++state.downloads}.${type === 'image/jpeg' ? 'jpg' : 'png'}`;
  document.body.appendChild(a);
  a.click();
  a.remove();
}

ui.reviewOpen.addEventListener('click', openReview);
ui.reviewBack.addEventListener('click', () => {
  closeReview();
  delete document.body.dataset.review;
});
ui.download.addEventListener('click', download);
ui.another.addEventListener('click', () => ui.file.click());

// Offline use and installing as an app (sw.js caches this origin's files).
if ('serviceWorker' in navigator && window.isSecureContext) {
  window.veilPage.offline = navigator.serviceWorker.register('./sw.js').then(() => navigator.serviceWorker.ready)
    .catch((e) => { window.veilPage.offlineError = String(e); });
}

window.veilPage.render = renderNow;
window.veilPage.ready = start();
