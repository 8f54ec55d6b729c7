// Face detection in the page: CenterFace in onnxruntime-web, with the same
// passes, preprocessing (veil-wasm's Pillow-exact resize), decoding and
// suppression (veil-core, compiled to WebAssembly) as the Python package's
// `veil.detect.detect_faces`, so both find the same faces in a photo.
// Keep the constants and `detect` in step with python/veil/detect.py
// (`_detect_array`); tests/web/test_page.py checks that they agree.

import * as ort from './ort/ort.wasm.min.mjs';

/**
 * detect.py's settings. scripts/build_web.sh copies the current values into
 * detect-params.json, read at start-up; these are the fallback.
 */
export const PARAMS = {
  DEFAULT_THRESHOLD: 0.2,
  DEFAULT_MAX_SIDE_PX: 1024,
  /** The full-resolution pass runs in tiles of at most this side. */
  TILE_MAX_PX: 2048,
  /** Tile sides are multiples of this (the network's input must be). */
  INPUT_MULTIPLE_PX: 32,
  /** Tiles overlap by at least this much. */
  TILE_OVERLAP_PX: 128,
  /** Faces smaller than this in the shrunk photo are left to the tiles. */
  MIN_FACE_SHRUNK_PX: 24,
  NMS_IOU_THRESHOLD: 0.3,
};
const INPUT_NAME = 'input.1';
const OUTPUT_NAMES = ['537', '538', '539', '540']; // heatmap, scale, offset, landmarks

// detect.py computes on float32 arrays; rounding each step to float32 here
// keeps every comparison on the same side.
const f32 = Math.fround;

/** Python's round(): halves go to the even neighbour. */
export function pyRound(x) {
  const r = Math.round(x);
  return Math.abs(x - Math.trunc(x)) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * detect.py `_tile_layout`: the fewest tiles of at most `maxTile` px (sized
 * to a multiple of `multiple`) covering `length` px, neighbours sharing at
 * least `overlap` px. Returns `{ starts, tile }`.
 */
export function tileLayout(length, maxTile, overlap, multiple) {
  if (length <= maxTile) return { starts: [0], tile: length };
  const count = Math.ceil((length - overlap) / (maxTile - overlap));
  let tile = Math.ceil((length + (count - 1) * overlap) / count);
  tile = Math.min(maxTile, Math.ceil(tile / multiple) * multiple);
  const step = (length - tile) / (count - 1);
  return { starts: Array.from({ length: count }, (_, i) => pyRound(i * step)), tile };
}

/** detect.py `_owned_ranges`: the part of the axis each tile answers for. */
export function ownedRanges(starts, tile) {
  const bounds = [-Infinity];
  for (let i = 0; i + 1 < starts.length; i++) bounds.push((starts[i] + tile + starts[i + 1]) / 2);
  bounds.push(Infinity);
  return starts.map((_, i) => [bounds[i], bounds[i + 1]]);
}

/** detect.py `_side`: the longer side of a box. */
function side(f) {
  return Math.max(f32(f.right - f.left), f32(f.bottom - f.top));
}

/**
 * detect.py `_mostly_inside`: at least half of `f` lies inside one of `big`
 * that scores higher (a part of a face seen as a face at full resolution).
 */
function mostlyInside(f, big) {
  const area = f32(f32(f.right - f.left) * f32(f.bottom - f.top));
  if (big.length === 0 || !(area > 0)) return false;
  const half = f32(0.5 * area);
  return big.some((b) => {
    const w = Math.max(0, f32(Math.min(f.right, b.right) - Math.max(f.left, b.left)));
    const h = Math.max(0, f32(Math.min(f.bottom, b.bottom) - Math.max(f.top, b.top)));
    return f32(w * h) >= half && b.score > f.score;
  });
}

function translate(f, dx, dy) {
  return {
    left: f32(f.left + dx), top: f32(f.top + dy), right: f32(f.right + dx), bottom: f32(f.bottom + dy),
    score: f.score,
    landmarks: f.landmarks.map(([x, y]) => [f32(x + dx), f32(y + dy)]),
  };
}

function clamp(v, lo, hi) {
  return Math.min(hi, Math.max(lo, v));
}

/**
 * Loads the model. `options.numThreads`: onnxruntime's threads (default: up
 * to 4 when the page is cross-origin isolated, else 1).
 */
export async function createDetector(veil, modelUrl, options = {}) {
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  const isolated = globalThis.crossOriginIsolated === true;
  ort.env.wasm.numThreads = options.numThreads ?? (isolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  ort.env.logLevel = 'error';
  const params = { ...PARAMS };
  try {
    const r = await fetch(new URL('./detect-params.json', import.meta.url));
    if (r.ok) Object.assign(params, await r.json());
  } catch {
    // keep the built-in values
  }
  const response = await fetch(modelUrl);
  if (!response.ok) throw new Error(`cannot load the face model: HTTP ${response.status}`);
  const model = new Uint8Array(await response.arrayBuffer());
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['wasm'],
    graphOptimizationLevel: 'all',
  });

  /** Faces in one network pass over a crop of `image` (before suppression), in photo pixels. */
  async function run(image, crop, threshold, scaleX, scaleY) {
    const input = veil.networkInput(image, crop.x, crop.y, crop.width, crop.height);
    const tensor = new ort.Tensor('float32', input.data, [1, 3, input.height, input.width]);
    const out = await session.run({ [INPUT_NAME]: tensor });
    const [heatmap, scale, offset, landmarks] = OUTPUT_NAMES.map((name) => out[name].data);
    const [, , rows, cols] = out[OUTPUT_NAMES[0]].dims;
    const faces = veil.decodeCenterFace({ heatmap, scale, offset, landmarks }, rows, cols, threshold, scaleX, scaleY);
    for (const name of OUTPUT_NAMES) out[name].dispose?.();
    return faces;
  }

  /**
   * detect.py `_detect_array`: the whole photo shrunk to `maxSidePx`, then
   * (when it had to shrink) full-resolution tiles for the small faces,
   * merged by non-maximum suppression. `image` is a WasmImage.
   * `onProgress(done, total)` is called after each network pass.
   * Returns `{ faces, ms, passes }`, faces best score first.
   */
  async function detect(image, { threshold = params.DEFAULT_THRESHOLD, maxSidePx = params.DEFAULT_MAX_SIDE_PX, tiles = true, onProgress } = {}) {
    const t0 = performance.now();
    const { width: w, height: h } = image;
    const shrink = Math.min(1.0, maxSidePx / Math.max(h, w));
    const rw = Math.max(1, pyRound(w * shrink));
    const rh = Math.max(1, pyRound(h * shrink));
    const tiled = tiles && shrink < 1.0;
    const overlap = Math.trunc(Math.min(Math.floor(params.TILE_MAX_PX / 2),
      Math.max(params.TILE_OVERLAP_PX, (2 * params.MIN_FACE_SHRUNK_PX) / shrink)));
    const rows = tiled ? tileLayout(h, params.TILE_MAX_PX, overlap, params.INPUT_MULTIPLE_PX) : { starts: [] };
    const cols = tiled ? tileLayout(w, params.TILE_MAX_PX, overlap, params.INPUT_MULTIPLE_PX) : { starts: [] };
    const total = 1 + rows.starts.length * cols.starts.length;

    const small = rw === w && rh === h ? image : veil.resizeBilinear(image, rw, rh);
    let whole;
    try {
      whole = await run(small, { x: 0, y: 0, width: rw, height: rh }, threshold, w / rw, h / rh);
    } finally {
      if (small !== image) small.free();
    }
    onProgress?.(1, total);

    let found = whole;
    if (tiled) {
      // The whole-photo pass keeps the large faces, the tiles the small ones
      // (see detect.py for why the sizes are split between the passes).
      const large = whole.filter((f) => side(f) >= overlap / 2);
      const tileFaces = [];
      let done = 1;
      const yRanges = ownedRanges(rows.starts, rows.tile);
      const xRanges = ownedRanges(cols.starts, cols.tile);
      for (const [j, y0] of rows.starts.entries()) {
        for (const [i, x0] of cols.starts.entries()) {
          const crop = { x: x0, y: y0, width: Math.min(cols.tile, w - x0), height: Math.min(rows.tile, h - y0) };
          const [[xLo, xHi], [yLo, yHi]] = [xRanges[i], yRanges[j]];
          for (const face of await run(image, crop, threshold, 1.0, 1.0)) {
            const f = translate(face, x0, y0);
            // A tile answers for the faces centred in its own part of the photo.
            const cx = f32(f32(f.left + f.right) / 2);
            const cy = f32(f32(f.top + f.bottom) / 2);
            if (xLo <= cx && cx < xHi && yLo <= cy && cy < yHi) tileFaces.push(f);
          }
          onProgress?.(++done, total);
        }
      }
      found = large.concat(tileFaces.filter((f) => side(f) <= overlap && !mostlyInside(f, large)));
    }

    const faces = veil.nonMaxSuppression(found, params.NMS_IOU_THRESHOLD).map((f) => ({
      ...f,
      // Padding and the tiles' extents can reach past the photo.
      left: clamp(f.left, 0, w), right: clamp(f.right, 0, w),
      top: clamp(f.top, 0, h), bottom: clamp(f.bottom, 0, h),
    }));
    return { faces, ms: performance.now() - t0, passes: total };
  }

  return { detect, session, params, numThreads: ort.env.wasm.numThreads };
}
