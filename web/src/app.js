// The page: open a photo, find faces, hide them, download clean pixels.
// Everything runs here; nothing is sent anywhere (see the CSP in index.html).

import { loadVeil } from './veil-wasm.js';
import { createDetector } from './detector.js';
import { cleanImageBlob } from './clean.js';
import { regionFromFace, clipRegion, methodFor, featherFor, NOISE_AMOUNT } from './regions.js';

/** Photos above this many pixels are refused: a decompression bomb would
 * take the tab's memory (each pixel costs 8 bytes here: original + preview). */
const MAX_PIXELS = 100e6;
/** Smallest region a drag creates, in screen pixels (a click is not a drag). */
const MIN_DRAG_PX = 8;

const $ = (id) => document.getElementById(id);
const ui = {
  open: $('open'), drop: $('drop'), file: $('file'), work: $('work'), status: $('status'),
  stage: $('stage'), canvas: $('canvas'), overlay: $('overlay'), strength: $('strength'),
  strengthValue: $('strength-value'), noise: $('noise'), ellipse: $('ellipse'), add: $('add'),
  jpeg: $('download-jpeg'), png: $('download-png'), another: $('another'), error: $('error'),
};

const state = {
  veil: null,
  detector: null,
  // { name, width, height, original: WasmImage, preview: WasmImage,
  //   drawn: whether the canvas holds the whole preview, lastRects: areas regions changed at the last redraw }
  photo: null,
  regions: [], // { id, left, top, width, height, fromFace, hidden, score }
  selected: null,
  detection: null, // { faces, ms } of the last detection
  seed: 0,
  nextId: 1,
  detections: 0, // photos searched so far (tests wait on body[data-detections])
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

async function openBlob(blob, name) {
  clearError();
  if (!blob || !/^image\/(jpeg|png|webp)$/.test(blob.type)) {
    showError(`Not a photo veil can open${blob && blob.type ? ` (${blob.type})` : ''}: use a JPEG, PNG or WebP file.`);
    return;
  }
  setState('decoding');
  let bitmap;
  try {
    // 'from-image' applies the EXIF orientation to the pixels; no colour
    // conversion so pixels match what other decoders (Pillow) produce.
    bitmap = await createImageBitmap(blob, {
      imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none',
    });
  } catch (e) {
    showError(`This file could not be read as an image (it may be damaged or truncated).`);
    setState(state.photo ? 'done' : 'idle');
    return;
  }
  const { width, height } = bitmap;
  if (width * height > MAX_PIXELS) {
    bitmap.close();
    showError(`This photo is too large (${width} x ${height}); the page handles up to ${MAX_PIXELS / 1e6} megapixels.`);
    setState(state.photo ? 'done' : 'idle');
    return;
  }
  const canvas = ui.canvas;
  canvas.width = width;
  canvas.height = height;
  const ctx = canvas.getContext('2d', { willReadFrequently: false });
  ctx.clearRect(0, 0, width, height);
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const pixels = ctx.getImageData(0, 0, width, height).data;

  if (state.photo) {
    state.photo.original.free();
    state.photo.preview.free();
  }
  const original = state.veil.imageFrom(pixels, width, height, 4);
  const preview = state.veil.createImage(width, height, 4);
  state.photo = { name: name || 'photo', width, height, original, preview, drawn: false, lastRects: [] };
  state.regions = [];
  state.selected = null;
  state.detection = null;
  state.seed = randomSeed();
  ui.open.hidden = true;
  ui.work.hidden = false;
  render();
  await detect();
}

function randomSeed() {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return (words[0] & 0x1fffff) * 2 ** 32 + words[1]; // below 2^53
}

async function detect() {
  const photo = state.photo;
  if (!state.detector) {
    ui.status.textContent = 'Face detection is not available: drag over each face to hide it.';
    ui.status.classList.add('warn');
    finishDetection();
    return;
  }
  setState('detecting');
  ui.status.classList.remove('warn');
  ui.status.textContent = 'Looking for faces…';
  try {
    const result = await state.detector.detect(photo.original, {
      onProgress(done, total) {
        if (total > 1 && done < total) ui.status.textContent = `Looking for faces… (small faces: part ${done} of ${total - 1})`;
      },
    });
    if (state.photo !== photo) return; // another photo was opened meanwhile
    state.detection = result;
    for (const face of result.faces) {
      const r = regionFromFace(face, photo.width, photo.height);
      state.regions.push({ id: state.nextId++, ...r, fromFace: true, hidden: true, score: face.score });
    }
    const n = result.faces.length;
    const found = n === 0 ? 'No faces found.' : n === 1 ? 'Found 1 face, hidden.' : `Found ${n} faces, all hidden.`;
    ui.status.textContent = `${found} Detection can miss faces: check the photo and drag over anything it missed.`;
    ui.status.dataset.faces = String(n);
    if (n === 0) ui.status.classList.add('warn');
  } catch (e) {
    showError(`Face detection failed (${e.message}). You can still hide faces by dragging over them.`);
  }
  render();
  finishDetection();
}

function finishDetection() {
  document.body.dataset.detections = String(++state.detections);
  setState('done');
}

ui.file.addEventListener('change', () => {
  const f = ui.file.files[0];
  if (f) openBlob(f, f.name);
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
  if (f) openBlob(f, f.name);
});
document.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === 'file' && i.type.startsWith('image/'));
  if (item) {
    e.preventDefault();
    openBlob(item.getAsFile(), 'pasted');
  }
});

// -------------------------------------------------------------- render ----

let renderQueued = false;

/** Schedules a redraw of the preview and the overlay (once per frame). */
function render() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderNow();
  });
}

/** Hides the regions in `image` (a copy of the original) with the current settings. */
function hideRegions(image) {
  const kind = methodKind();
  const strength = Number(ui.strength.value);
  const shape = ui.ellipse.checked ? 'ellipse' : 'rectangle';
  for (const r of state.regions) {
    if (!r.hidden) continue;
    const region = { left: r.left, top: r.top, width: r.width, height: r.height, shape, featherPx: featherFor(kind, r) };
    state.veil.applyToRegions(image, methodFor(kind, strength, r), [region]);
    if (ui.noise.checked && kind !== 'solid') {
      state.veil.applyToRegions(image, { kind: 'noise', amount: NOISE_AMOUNT, seed: state.seed }, [{ ...region, featherPx: 0 }]);
    }
  }
}

/**
 * The pixels a region can change: its box, the feather beyond it, and a
 * margin for rounding; clipped to the photo. Integers: [x0, y0, x1, y1).
 */
function dirtyRect(r, width, height) {
  const pad = featherFor(methodKind(), r) + 2;
  return [
    Math.max(0, Math.floor(r.left - pad)), Math.max(0, Math.floor(r.top - pad)),
    Math.min(width, Math.ceil(r.left + r.width + pad)), Math.min(height, Math.ceil(r.top + r.height + pad)),
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
}

function renderOverlay() {
  const photo = state.photo;
  const existing = new Map([...ui.overlay.querySelectorAll('.region')].map((el) => [Number(el.dataset.id), el]));
  let faceNo = 0;
  for (const r of state.regions) {
    let el = existing.get(r.id);
    existing.delete(r.id);
    if (!el) {
      el = document.createElement('button');
      el.type = 'button';
      el.className = 'region';
      el.dataset.id = String(r.id);
      el.innerHTML = '<span class="tag"></span>' +
        ['nw', 'ne', 'sw', 'se'].map((c) => `<span class="handle ${c}" data-corner="${c}" aria-hidden="true"></span>`).join('');
      ui.overlay.appendChild(el);
    }
    const label = r.fromFace ? `Face ${++faceNo}` : 'Your box';
    el.style.left = `${(100 * r.left) / photo.width}%`;
    el.style.top = `${(100 * r.top) / photo.height}%`;
    el.style.width = `${(100 * r.width) / photo.width}%`;
    el.style.height = `${(100 * r.height) / photo.height}%`;
    el.classList.toggle('kept', !r.hidden);
    el.classList.toggle('selected', state.selected === r.id);
    el.setAttribute('aria-pressed', String(r.hidden));
    el.setAttribute('aria-label', `${label}: ${r.hidden ? 'hidden' : 'kept visible'}`);
    el.querySelector('.tag').textContent = `${label}${r.hidden ? '' : ' (kept)'}`;
    el.querySelectorAll('.handle').forEach((h) => { h.hidden = state.selected !== r.id; });
  }
  for (const el of existing.values()) el.remove();
}

for (const el of [ui.strength, ui.noise, ui.ellipse, ...document.querySelectorAll('input[name=method]')]) {
  el.addEventListener('input', () => {
    ui.strengthValue.textContent = ui.strength.value;
    ui.strength.disabled = methodKind() === 'solid';
    render();
  });
}
ui.strength.disabled = methodKind() === 'solid';

// ------------------------------------------------- pointer interaction ----

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

ui.overlay.addEventListener('pointerdown', (e) => {
  if (!state.photo || e.button !== 0) return;
  const g = geometry();
  const p = toImage(e, g);
  const regionEl = e.target.closest('.region');
  const handle = e.target.closest('.handle');
  if (handle && regionEl) {
    const r = regionById(Number(regionEl.dataset.id));
    drag = { kind: 'resize', r, corner: handle.dataset.corner, g, start: p, orig: { ...r }, moved: false };
  } else if (regionEl) {
    const r = regionById(Number(regionEl.dataset.id));
    drag = { kind: 'move', r, g, start: p, orig: { ...r }, moved: false, screen: [e.clientX, e.clientY] };
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
  if (!drag) return;
  const p = toImage(e, drag.g);
  const { width, height } = state.photo;
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
    Object.assign(drag.r, clipRegion({ ...drag.orig, left: drag.orig.left + dx, top: drag.orig.top + dy }, width, height));
  } else {
    drag.moved = true;
    const o = drag.orig;
    let [l, t, r, b] = [o.left, o.top, o.left + o.width, o.top + o.height];
    if (drag.corner.includes('w')) l += dx; else r += dx;
    if (drag.corner.includes('n')) t += dy; else b += dy;
    const box = { left: Math.min(l, r), top: Math.min(t, b), width: Math.max(1, Math.abs(r - l)), height: Math.max(1, Math.abs(b - t)) };
    Object.assign(drag.r, clipRegion(box, width, height));
  }
  render();
});

function endDrag(e) {
  if (!drag) return;
  const d = drag;
  drag = null;
  if (d.kind === 'add') {
    d.rubber.remove();
    const p = toImage(e, d.g);
    const dist = Math.hypot(e.clientX - d.screen[0], e.clientY - d.screen[1]);
    if (dist >= MIN_DRAG_PX) {
      const box = {
        left: Math.min(d.start.x, p.x), top: Math.min(d.start.y, p.y),
        width: Math.abs(p.x - d.start.x), height: Math.abs(p.y - d.start.y),
      };
      const r = { id: state.nextId++, ...clipRegion(box, state.photo.width, state.photo.height), fromFace: false, hidden: true };
      state.regions.push(r);
      state.selected = r.id;
    } else {
      state.selected = null;
    }
  } else if (!d.moved && d.kind === 'move') {
    // A click on a box toggles it: hidden <-> kept visible.
    d.r.hidden = !d.r.hidden;
    state.selected = d.r.id;
  } else {
    state.selected = d.r.id;
  }
  render();
}

ui.overlay.addEventListener('pointerup', endDrag);
ui.overlay.addEventListener('pointercancel', (e) => {
  if (drag && drag.rubber) drag.rubber.remove();
  if (drag && drag.orig) Object.assign(drag.r, drag.orig);
  drag = null;
  render();
});

// ------------------------------------------------------------ keyboard ----

ui.overlay.addEventListener('click', (e) => {
  // Pointer clicks are handled in pointerup; this is the keyboard's
  // Enter/Space on a focused box (detail === 0).
  const el = e.target.closest('.region');
  if (!el || e.detail !== 0) return;
  const r = regionById(Number(el.dataset.id));
  r.hidden = !r.hidden;
  state.selected = r.id;
  render();
});

ui.overlay.addEventListener('focusin', (e) => {
  const el = e.target.closest('.region');
  if (el) {
    state.selected = Number(el.dataset.id);
    renderOverlay();
  }
});

ui.overlay.addEventListener('keydown', (e) => {
  const el = e.target.closest('.region');
  if (!el) return;
  const r = regionById(Number(el.dataset.id));
  const { width, height } = state.photo;
  const step = Math.max(1, Math.round(Math.min(width, height) / 100)) * (e.altKey ? 5 : 1);
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if (moves[e.key]) {
    const [dx, dy] = moves[e.key];
    const box = e.shiftKey
      ? { left: r.left, top: r.top, width: Math.max(1, r.width + dx), height: Math.max(1, r.height + dy) }
      : { ...r, left: r.left + dx, top: r.top + dy };
    Object.assign(r, clipRegion(box, width, height));
    e.preventDefault();
    render();
  } else if ((e.key === 'Delete' || e.key === 'Backspace') && !r.fromFace) {
    state.regions = state.regions.filter((x) => x !== r);
    state.selected = null;
    e.preventDefault();
    render();
    ui.add.focus();
  }
});

ui.add.addEventListener('click', () => {
  if (!state.photo) return;
  const { width, height } = state.photo;
  const side = Math.min(width, height) / 4;
  const r = { id: state.nextId++, ...clipRegion({ left: (width - side) / 2, top: (height - side) / 2, width: side, height: side }, width, height), fromFace: false, hidden: true };
  state.regions.push(r);
  state.selected = r.id;
  renderNow();
  ui.overlay.querySelector(`.region[data-id="${r.id}"]`).focus();
});

// ------------------------------------------------------------ download ----

/** Encodes the hidden image afresh (so no metadata survives) and saves it. */
async function download(type) {
  const photo = state.photo;
  if (!photo) return;
  renderNow(); // the canvas holds exactly the preview pixels, full size
  const quality = type === 'image/jpeg' ? 0.92 : undefined;
  const encoded = await new Promise((resolve) => ui.canvas.toBlob(resolve, type, quality));
  if (!encoded) {
    showError('The browser could not encode the image.');
    return;
  }
  // Drop whatever the browser's encoder adds (e.g. an ICC profile).
  const blob = await cleanImageBlob(encoded);
  const base = photo.name.replace(/\.[^.]*$/, '') || 'photo';
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = `${base}-veiled.${type === 'image/jpeg' ? 'jpg' : 'png'}`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

ui.jpeg.addEventListener('click', () => download('image/jpeg'));
ui.png.addEventListener('click', () => download('image/png'));
ui.another.addEventListener('click', () => ui.file.click());

window.veilPage.render = renderNow;
window.veilPage.ready = start();
