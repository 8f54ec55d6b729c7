// Face detection off the page's main thread: this module worker loads
// onnxruntime-web, CenterFace and its own copy of veil's WebAssembly core,
// and drives the core's face search (rust/veil-core `detect::search`, the
// same code `veil.detect` drives with onnxruntime), running the network on
// each input the search hands out. web/src/detector.js talks to it.
//
// Messages in:  { type: 'init', modelUrl, wasmUrl, numThreads }
//               { type: 'detect', id, pixels (ArrayBuffer), width, height, channels, threshold, maxSidePx, tiles, rotations }
//               { type: 'cancel', id }
// Messages out: { type: 'ready', numThreads, defaults } | { type: 'failed', message }
//               { type: 'progress', id, done, total, label }
//               { type: 'result', id, faces, passes } | { type: 'error', id, message } | { type: 'cancelled', id }

import * as ort from './ort/ort.wasm.min.mjs';
import { loadVeil } from './veil-wasm.js';

const INPUT_NAME = 'input.1';
const OUTPUT_NAMES = ['537', '538', '539', '540']; // heatmap, scale, offset, landmarks

let veil = null;
let session = null;
const cancelled = new Set();
// One search at a time: onnxruntime-web runs one session call at once.
let queue = Promise.resolve();

async function init({ modelUrl, wasmUrl, numThreads }) {
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  ort.env.wasm.numThreads = numThreads;
  ort.env.logLevel = 'error';
  veil = await loadVeil(new URL(wasmUrl));
  const response = await fetch(modelUrl);
  if (!response.ok) throw new Error(`cannot load the face model: HTTP ${response.status}`);
  const model = new Uint8Array(await response.arrayBuffer());
  session = await ort.InferenceSession.create(model, { executionProviders: ['wasm'], graphOptimizationLevel: 'all' });
  return { numThreads: ort.env.wasm.numThreads, defaults: veil.detectDefaults() };
}

async function detect({ id, pixels, width, height, channels, threshold, maxSidePx, tiles, rotations }) {
  if (cancelled.delete(id)) return { type: 'cancelled', id };
  const image = veil.imageFrom(new Uint8Array(pixels), width, height, channels);
  let search;
  try {
    search = veil.faceSearch(image, { threshold, maxSidePx, tiles, rotations });
  } finally {
    image.free();
  }
  try {
    for (;;) {
      const { done, total, label } = search.progress();
      postMessage({ type: 'progress', id, done, total, label });
      const input = search.nextInput();
      if (input === null) break;
      const tensor = new ort.Tensor('float32', input.data, [1, 3, input.height, input.width]);
      const out = await session.run({ [INPUT_NAME]: tensor });
      tensor.dispose?.();
      if (cancelled.delete(id)) {
        for (const name of OUTPUT_NAMES) out[name].dispose?.();
        return { type: 'cancelled', id };
      }
      const [, , rows, cols] = out[OUTPUT_NAMES[0]].dims;
      const [heatmap, scale, offset, landmarks] = OUTPUT_NAMES.map((name) => out[name].data);
      search.pushOutput({ heatmap, scale, offset, landmarks }, rows, cols);
      for (const name of OUTPUT_NAMES) out[name].dispose?.();
    }
    const passes = search.progress().total;
    return { type: 'result', id, faces: search.finish(), passes };
  } finally {
    search.free();
  }
}

self.onmessage = (event) => {
  const msg = event.data;
  if (msg.type === 'init') {
    init(msg).then(
      (info) => postMessage({ type: 'ready', ...info }),
      (e) => postMessage({ type: 'failed', message: e.message || String(e) }),
    );
  } else if (msg.type === 'cancel') {
    cancelled.add(msg.id);
  } else if (msg.type === 'detect') {
    queue = queue.then(() => detect(msg)).then(
      (reply) => postMessage(reply),
      (e) => postMessage({ type: 'error', id: msg.id, message: e.message || String(e) }),
    ).finally(() => cancelled.delete(msg.id));
  }
};
