// Kernel benchmark, one page run: veil's wasm kernels against StackBlur.js
// (stackblur-canvas) and the canvas 2D `filter = 'blur()'`, on a 12 MP RGBA
// image. benches/web/run_bench.py serves this page and prints the table.

import { loadVeil } from './veil-wasm.js';
import * as StackBlur from './stackblur.min.mjs';

const params = new URLSearchParams(location.search);
const WIDTH = Number(params.get('width') || 4000);
const HEIGHT = Number(params.get('height') || 3000);
const REPEAT = Number(params.get('repeat') || 3);
const out = document.getElementById('out');

/** A photo-like test image: smooth gradients, edges and noise (blur cost does not depend on content). */
function makeImage(w, h) {
  const data = new Uint8ClampedArray(w * h * 4);
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      const edge = ((x >> 7) + (y >> 7)) & 1 ? 60 : 0;
      data[i] = (x * 255 / w + edge + (rand() & 15)) | 0;
      data[i + 1] = (y * 255 / h + (rand() & 15)) | 0;
      data[i + 2] = ((x + y) * 127 / (w + h) + edge + (rand() & 15)) | 0;
      data[i + 3] = 255;
    }
  }
  return data;
}

/** Median of REPEAT timed runs after one warm-up run. `setup` runs untimed before each. */
function time(fn, setup = () => {}) {
  setup();
  fn();
  const times = [];
  for (let i = 0; i < REPEAT; i++) {
    setup();
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

/** StackBlur's radius whose tent kernel has the given sigma: var = r(r + 2) / 6. */
function stackRadius(sigma) {
  return Math.max(1, Math.round(Math.sqrt(1 + 6 * sigma * sigma) - 1));
}

/** A plain JavaScript block-mean pixelation: what a page would write by hand. */
function pixelateJs(src, dst, w, h, block) {
  for (let by = 0; by < h; by += block) {
    const y1 = Math.min(h, by + block);
    for (let bx = 0; bx < w; bx += block) {
      const x1 = Math.min(w, bx + block);
      let r = 0, g = 0, b = 0;
      for (let y = by; y < y1; y++) {
        for (let x = bx, i = (y * w + bx) * 4; x < x1; x++, i += 4) { r += src[i]; g += src[i + 1]; b += src[i + 2]; }
      }
      const n = (y1 - by) * (x1 - bx);
      r = Math.round(r / n); g = Math.round(g / n); b = Math.round(b / n);
      for (let y = by; y < y1; y++) {
        for (let x = bx, i = (y * w + bx) * 4; x < x1; x++, i += 4) { dst[i] = r; dst[i + 1] = g; dst[i + 2] = b; dst[i + 3] = src[i + 3]; }
      }
    }
  }
}

async function main() {
  const veil = await loadVeil(new URL('./veil_wasm.wasm', import.meta.url));
  const w = WIDTH, h = HEIGHT;
  const pixels = makeImage(w, h);
  const src = veil.imageFrom(pixels, w, h, 4);
  const dst = veil.createImage(w, h, 4);
  const rows = [];
  const add = (op, impl, ms, note = '') => rows.push({ op, impl, ms, note });

  // A copy of the image: the floor any kernel pays (one read, one write).
  const copy = new Uint8ClampedArray(pixels.length);
  add('memcpy', 'TypedArray.set', time(() => copy.set(pixels)));

  const work = new ImageData(new Uint8ClampedArray(pixels.length), w, h);
  const reset = () => work.data.set(pixels);

  const canvasSrc = new OffscreenCanvas(w, h);
  canvasSrc.getContext('2d').putImageData(new ImageData(pixels, w, h), 0, 0);
  const canvasDst = new OffscreenCanvas(w, h);
  const ctx = canvasDst.getContext('2d', { willReadFrequently: true });

  for (const sigma of [3, 10, 33]) {
    const op = `gaussian sigma ${sigma}`;
    add(op, 'veil wasm', time(() => veil.gaussianBlur(src, dst, sigma)));
    const r = stackRadius(sigma);
    add(op, 'StackBlur.js', time(() => StackBlur.imageDataRGBA(work, 0, 0, w, h, r), reset), `radius ${r}`);
    add(op, "canvas filter", time(() => {
      ctx.filter = `blur(${sigma}px)`;
      ctx.drawImage(canvasSrc, 0, 0);
      ctx.getImageData(0, 0, 1, 1); // wait for the draw to finish
    }), 'drawImage + 1 px readback');
    add(op, "canvas filter + readback", time(() => {
      ctx.filter = `blur(${sigma}px)`;
      ctx.drawImage(canvasSrc, 0, 0);
      ctx.getImageData(0, 0, w, h);
    }), 'drawImage + getImageData');
  }
  ctx.filter = 'none';

  const block = 16;
  const opP = `pixelate ${block} px`;
  add(opP, 'veil wasm', time(() => veil.pixelate(src, dst, block)));
  const jsOut = new Uint8ClampedArray(pixels.length);
  add(opP, 'plain JS', time(() => pixelateJs(pixels, jsOut, w, h, block)), 'block mean loop');
  const small = new OffscreenCanvas(Math.ceil(w / block), Math.ceil(h / block));
  const sctx = small.getContext('2d');
  add(opP, 'canvas down+up', time(() => {
    sctx.imageSmoothingEnabled = true;
    sctx.imageSmoothingQuality = 'medium';
    sctx.drawImage(canvasSrc, 0, 0, small.width, small.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(small, 0, 0, w, h);
    ctx.getImageData(0, 0, 1, 1);
  }), 'not a true block mean');

  add('box blur radius 10', 'veil wasm', time(() => veil.boxBlur(src, dst, 10)));

  src.free();
  dst.free();
  return { width: w, height: h, repeat: REPEAT, userAgent: navigator.userAgent, rows };
}

main().then((result) => {
  window.benchResult = result;
  out.textContent = JSON.stringify(result, null, 2);
  document.body.dataset.state = 'done';
}, (e) => {
  window.benchResult = { error: String(e && e.stack || e) };
  out.textContent = String(e && e.stack || e);
  document.body.dataset.state = 'done';
});
