// Typed wrapper over the veil-wasm module (rust/veil-wasm): the Rust core's
// kernels, region compositing and CenterFace decoding, on buffers that live
// in the module's memory. Types are in veil-wasm.d.ts.

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

  /**
   * A new image: `src` resized to `width x height` exactly as Pillow's
   * `Image.resize(size, BILINEAR)` does (what veil.detect shrinks photos with).
   */
  resizeBilinear(src, width, height) {
    const dst = this.createImage(width, height, src.channels);
    try {
      this._status(() => this.exports.veil_resize_bilinear(src.ptr, src.width, src.height, src.channels, dst.ptr, width, height));
    } catch (e) {
      dst.free();
      throw e;
    }
    return dst;
  }

  /**
   * CenterFace's input for a crop of `src`: float32 RGB planes (NCHW, batch 1)
   * zero-padded at the bottom and right to multiples of 32.
   * Returns `{ data, width, height }` with the padded size.
   */
  networkInput(src, x0 = 0, y0 = 0, width = src.width, height = src.height) {
    const pw = Math.ceil(width / 32) * 32;
    const ph = Math.ceil(height / 32) * 32;
    const n = 3 * pw * ph;
    const ptr = this._alloc(n * 4);
    try {
      this._status(() => this.exports.veil_network_input(src.ptr, src.width, src.height, src.channels,
        x0, y0, width, height, ptr, n));
      return { data: new Float32Array(this.memory.buffer, ptr, n).slice(), width: pw, height: ph };
    } finally {
      this.exports.veil_free(ptr, n * 4);
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

  /**
   * Decodes CenterFace's four outputs (batch 1, NCHW, `rows x cols` planes)
   * into faces above `scoreThreshold`, in original-image pixels.
   */
  decodeCenterFace({ heatmap, scale, offset, landmarks }, rows, cols, scoreThreshold, scaleX = 1, scaleY = 1) {
    const arrays = [heatmap, scale, offset, landmarks];
    const total = arrays.reduce((n, a) => n + a.length, 0);
    const ptr = this._alloc(total * 4);
    try {
      const view = new Float32Array(this.memory.buffer, ptr, total);
      const ptrs = [];
      let at = 0;
      for (const a of arrays) {
        view.set(a, at);
        ptrs.push(ptr + at * 4);
        at += a.length;
      }
      const n = this._count(() => this.exports.veil_decode_centerface(...ptrs, rows, cols, scoreThreshold, scaleX, scaleY));
      return this._readFaces(n);
    } finally {
      this.exports.veil_free(ptr, total * 4);
    }
  }

  /** Greedy non-maximum suppression; returns kept faces, highest score first. */
  nonMaxSuppression(faces, iouThreshold) {
    if (faces.length === 0) return [];
    const values = new Float32Array(faces.length * FACE_FLOATS);
    faces.forEach((f, i) => {
      values.set([f.left, f.top, f.right, f.bottom, f.score], i * FACE_FLOATS);
      f.landmarks.forEach(([x, y], k) => values.set([x, y], i * FACE_FLOATS + 5 + 2 * k));
    });
    const ptr = this._alloc(values.byteLength);
    try {
      new Float32Array(this.memory.buffer, ptr, values.length).set(values);
      const n = this._count(() => this.exports.veil_nms(ptr, faces.length, iouThreshold));
      return this._readFaces(n);
    } finally {
      this.exports.veil_free(ptr, values.byteLength);
    }
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
