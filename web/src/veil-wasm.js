// Typed wrapper over the veil-wasm module (rust/veil-wasm): the Rust core's
// kernels, region compositing and face search, on buffers that live in the
// module's memory. Types are in veil-wasm.d.ts.

/** Status codes returned by the module (rust/veil-wasm `Status`). */
export const ErrorCode = Object.freeze({
  INVALID_PARAMETER: 1,
  INVALID_IMAGE: 2,
  PANIC: 3,
});

const CODE_NAMES = Object.freeze({ 1: 'INVALID_PARAMETER', 2: 'INVALID_IMAGE', 3: 'PANIC' });

/** An error reported by veil's core. `code` is one of `ErrorCode`. */
export class VeilError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'VeilError';
    this.code = code;
    this.codeName = CODE_NAMES[code] ?? 'UNKNOWN';
  }
}

const METHOD_CODES = Object.freeze({ gaussian: 0, box: 1, pixelate: 2, fill: 3, noise: 4 });
const SHAPE_CODES = Object.freeze({ rectangle: 0, ellipse: 1 });
const FACE_FLOATS = 15;
const REGION_FLOATS = 6;

/**
 * An image (8-bit, interleaved, rows packed) held in the module's memory.
 * Free it with `free()` when done: the module does not collect garbage.
 */
export class WasmImage {
  constructor(veil, ptr, width, height, channels) {
    this.veil = veil;
    this.ptr = ptr;
    this.width = width;
    this.height = height;
    this.channels = channels;
    this.byteLength = width * height * channels;
  }

  /** A live view of the pixels; take a new one after any call that may allocate. */
  get data() {
    return new Uint8ClampedArray(this.veil.memory.buffer, this.ptr, this.byteLength);
  }

  /** An ImageData over the pixels, without a copy (RGBA images only). */
  imageData() {
    if (this.channels !== 4) throw new VeilError(ErrorCode.INVALID_IMAGE, 'ImageData needs an RGBA image');
    return new ImageData(this.data, this.width, this.height);
  }

  /** Copies `pixels` (same byte length) into this image. */
  set(pixels) {
    if (pixels.length !== this.byteLength) {
      throw new VeilError(ErrorCode.INVALID_IMAGE, `expected ${this.byteLength} bytes, got ${pixels.length}`);
    }
    this.data.set(pixels);
  }

  /** Copies another image of the same shape into this one. */
  copyFrom(other) {
    this.veil._checkSameShape(other, this);
    new Uint8Array(this.veil.memory.buffer).copyWithin(this.ptr, other.ptr, other.ptr + other.byteLength);
  }

  free() {
    if (this.ptr) this.veil.exports.veil_free(this.ptr, this.byteLength);
    this.ptr = 0;
  }
}

/**
 * The face search over one photo (rust/veil-core `detect::search`): the
 * caller runs CenterFace on each input it hands out. See veil-wasm.d.ts.
 */
export class FaceSearch {
  constructor(veil, handle) {
    this.veil = veil;
    this.handle = handle;
  }

  _live() {
    if (!this.handle) throw new VeilError(ErrorCode.INVALID_PARAMETER, 'search: this search is freed');
    return this.handle;
  }

  /** The next network input `{ data, width, height }` (data copied out), or null when over. */
  nextInput() {
    const v = this.veil, h = this._live();
    if (v._count(() => v.exports.veil_search_next_input(h)) === 0) return null;
    const width = v.exports.veil_search_input_width(h);
    const height = v.exports.veil_search_input_height(h);
    const ptr = v.exports.veil_search_input_ptr(h) >>> 0;
    return { data: new Float32Array(v.memory.buffer, ptr, 3 * width * height).slice(), width, height };
  }

  /** CenterFace's four outputs for the last input (`rows x cols` planes). */
  pushOutput({ heatmap, scale, offset, landmarks }, rows, cols) {
    const v = this.veil, h = this._live();
    const n = rows * cols;
    const ptr = v._call(() => v.exports.veil_search_output_ptr(h, rows, cols)) >>> 0;
    if (!ptr) throw v._error(v.exports.veil_last_status());
    const view = new Float32Array(v.memory.buffer, ptr, 15 * n);
    let at = 0;
    for (const [name, a, planes] of [['heatmap', heatmap, 1], ['scale', scale, 2], ['offset', offset, 2], ['landmarks', landmarks, 10]]) {
      if (a.length !== planes * n) {
        throw new VeilError(ErrorCode.INVALID_IMAGE, `CenterFace ${name} output has ${a.length} values, expected ${planes} x ${rows} x ${cols}`);
      }
      view.set(a, at);
      at += a.length;
    }
    v._status(() => v.exports.veil_search_push_output(h, rows, cols));
  }

  /** `{ done, total, label }`: runs done, runs in all, what the next run is. */
  progress() {
    const v = this.veil, h = this._live();
    const ptr = v.exports.veil_search_label_ptr(h) >>> 0;
    const len = v.exports.veil_search_label_len(h);
    const label = new TextDecoder().decode(new Uint8Array(v.memory.buffer, ptr, len));
    return { done: v.exports.veil_search_done(h), total: v.exports.veil_search_total(h), label };
  }

  /** The faces, best score first, boxes clamped to the photo. */
  finish() {
    const v = this.veil, h = this._live();
    return v._readFaces(v._count(() => v.exports.veil_search_finish(h)));
  }

  free() {
    if (this.handle) this.veil.exports.veil_search_free(this.handle);
    this.handle = 0;
  }
}

/** The loaded module. Create it with `loadVeil()`. */
export class Veil {
  constructor(instance) {
    this.exports = instance.exports;
    this.memory = instance.exports.memory;
    this.exports.veil_init();
  }

  _lastError() {
    const ptr = this.exports.veil_last_error_ptr() >>> 0;
    const len = this.exports.veil_last_error_len();
    return new TextDecoder().decode(new Uint8Array(this.memory.buffer, ptr, len));
  }

  // Runs a module call; maps a trap (a Rust panic, which aborts) to a VeilError.
  _call(fn) {
    try {
      return fn();
    } catch (e) {
      if (e instanceof WebAssembly.RuntimeError) {
        this.broken = true;
        throw new VeilError(ErrorCode.PANIC, this._lastError() || `internal error in veil: ${e.message}`);
      }
      throw e;
    }
  }

  // The one error-mapping helper: a failed status from the module becomes a
  // VeilError carrying the core's message.
  _error(code) {
    return new VeilError(code, this._lastError() || `veil error ${code}`);
  }

  _status(fn) {
    const status = this._call(fn);
    if (status !== 0) throw this._error(status);
  }

  _count(fn) {
    const n = this._call(fn);
    if (n < 0) throw this._error(-n);
    return n;
  }

  _alloc(byteLength) {
    const ptr = this.exports.veil_alloc(byteLength) >>> 0;
    if (!ptr) throw new VeilError(ErrorCode.INVALID_IMAGE, `out of memory allocating ${byteLength} bytes`);
    return ptr;
  }

  _checkSameShape(a, b) {
    if (a.width !== b.width || a.height !== b.height || a.channels !== b.channels) {
      throw new VeilError(ErrorCode.INVALID_IMAGE,
        `images differ in shape: ${a.width}x${a.height}x${a.channels} and ${b.width}x${b.height}x${b.channels}`);
    }
  }

  /** A zeroed image in the module's memory. */
  createImage(width, height, channels = 4) {
    for (const [name, v] of [['width', width], ['height', height], ['channels', channels]]) {
      if (!Number.isInteger(v) || v <= 0) throw new VeilError(ErrorCode.INVALID_IMAGE, `${name} must be a positive integer, got ${v}`);
    }
    return new WasmImage(this, this._alloc(width * height * channels), width, height, channels);
  }

  /** A copy of `pixels` (e.g. ImageData.data) as an image in the module's memory. */
  imageFrom(pixels, width, height, channels = 4) {
    const image = this.createImage(width, height, channels);
    image.set(pixels);
    return image;
  }

  gaussianBlur(src, dst, sigmaPx) {
    this._checkSameShape(src, dst);
    this._status(() => this.exports.veil_gaussian_blur(src.ptr, dst.ptr, src.width, src.height, src.channels, sigmaPx));
  }

  boxBlur(src, dst, radiusPx) {
    this._checkSameShape(src, dst);
    this._status(() => this.exports.veil_box_blur(src.ptr, dst.ptr, src.width, src.height, src.channels, toUint(radiusPx, 'radiusPx')));
  }

  pixelate(src, dst, blockPx, originX = 0, originY = 0) {
    this._checkSameShape(src, dst);
    this._status(() => this.exports.veil_pixelate(src.ptr, dst.ptr, src.width, src.height, src.channels,
      toUint(blockPx, 'blockPx'), toInt(originX, 'originX'), toInt(originY, 'originY')));
  }

  /** Hides `regions` of `image` in place with `method` (see veil-wasm.d.ts). */
  applyToRegions(image, method, regions) {
    const kind = METHOD_CODES[method.kind];
    if (kind === undefined) throw new VeilError(ErrorCode.INVALID_PARAMETER, `method: unknown kind ${method.kind}`);
    let p = [0, 0, 0];
    if (method.kind === 'gaussian') p = [method.sigmaPx, 0, 0];
    else if (method.kind === 'box') p = [method.radiusPx, 0, 0];
    else if (method.kind === 'pixelate') p = [method.blockPx, 0, 0];
    else if (method.kind === 'fill') p = [...(method.color ?? [0, 0, 0])];
    else if (method.kind === 'noise') p = [method.amount, method.seed ?? 0, 0];
    if (regions.length === 0) return;
    const values = new Float64Array(regions.length * REGION_FLOATS);
    regions.forEach((r, i) => {
      const shape = SHAPE_CODES[r.shape ?? 'ellipse'];
      if (shape === undefined) throw new VeilError(ErrorCode.INVALID_PARAMETER, `shape: unknown shape ${r.shape}`);
      values.set([r.left, r.top, r.width, r.height, shape, r.featherPx ?? 0], i * REGION_FLOATS);
    });
    const ptr = this._alloc(values.byteLength);
    try {
      new Float64Array(this.memory.buffer, ptr, values.length).set(values);
      this._status(() => this.exports.veil_apply_regions(image.ptr, image.width, image.height, image.channels,
        kind, p[0], p[1], p[2], ptr, regions.length));
    } finally {
      this.exports.veil_free(ptr, values.byteLength);
    }
  }

  /** Sets the colour channels of every pixel to `color` (1 value for grey, 3 otherwise). */
  fill(image, color) {
    const bytes = Uint8Array.from(color);
    const ptr = this._alloc(bytes.length);
    try {
      new Uint8Array(this.memory.buffer, ptr, bytes.length).set(bytes);
      this._status(() => this.exports.veil_fill(image.ptr, image.width, image.height, image.channels, ptr, bytes.length));
    } finally {
      this.exports.veil_free(ptr, bytes.length);
    }
  }

  /** Adds seeded uniform noise in -amount..amount; (originX, originY) places `image` in the photo. */
  addNoise(image, amount, seed, originX = 0, originY = 0) {
    this._status(() => this.exports.veil_add_noise(image.ptr, image.width, image.height, image.channels,
      toUint(amount, 'amount'), seed, toUint(originX, 'originX'), toUint(originY, 'originY')));
  }

  /** The face search's default settings (from veil-core). */
  detectDefaults() {
    return {
      threshold: this.exports.veil_detect_default_threshold(),
      maxSidePx: this.exports.veil_detect_default_max_side_px(),
    };
  }

  /**
   * Starts the face search of `image` (copied: it can be freed right after).
   * `settings`: `{ threshold, maxSidePx, tiles, rotations }`, each optional.
   */
  faceSearch(image, { threshold, maxSidePx, tiles = true, rotations = true } = {}) {
    const d = this.detectDefaults();
    threshold ??= d.threshold;
    maxSidePx ??= d.maxSidePx;
    if (typeof threshold !== 'number') throw new VeilError(ErrorCode.INVALID_PARAMETER, `threshold: must be a number, got ${threshold}`);
    const handle = this._call(() => this.exports.veil_search_new(image.ptr, image.width, image.height, image.channels,
      threshold, toUint(maxSidePx, 'maxSidePx'), tiles ? 1 : 0, rotations ? 1 : 0)) >>> 0;
    if (!handle) throw this._error(this.exports.veil_last_status());
    return new FaceSearch(this, handle);
  }

  _readFaces(n) {
    const v = new Float32Array(this.memory.buffer, this.exports.veil_faces_ptr() >>> 0, n * FACE_FLOATS);
    const faces = [];
    for (let i = 0; i < n; i++) {
      const o = i * FACE_FLOATS;
      const landmarks = [];
      for (let k = 0; k < 5; k++) landmarks.push([v[o + 5 + 2 * k], v[o + 6 + 2 * k]]);
      faces.push({ left: v[o], top: v[o + 1], right: v[o + 2], bottom: v[o + 3], score: v[o + 4], landmarks });
    }
    return faces;
  }
}

function toUint(v, name) {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) {
    throw new VeilError(ErrorCode.INVALID_PARAMETER, `${name}: must be a whole number >= 0, got ${v}`);
  }
  return v;
}

function toInt(v, name) {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0x7fffffff) {
    throw new VeilError(ErrorCode.INVALID_PARAMETER, `${name}: must be a 32-bit whole number, got ${v}`);
  }
  return v;
}

/**
 * Loads the module. `source` is a URL (default: veil_wasm.wasm beside this
 * file), a Response, or the module's bytes.
 */
export async function loadVeil(source = new URL('./veil_wasm.wasm', import.meta.url)) {
  let instance;
  if (source instanceof ArrayBuffer || ArrayBuffer.isView(source)) {
    ({ instance } = await WebAssembly.instantiate(source, {}));
  } else {
    const response = source instanceof Response ? source : await fetch(source);
    if (!response.ok) throw new Error(`cannot load ${response.url}: HTTP ${response.status}`);
    ({ instance } = await WebAssembly.instantiateStreaming(response, {}));
  }
  return new Veil(instance);
}
