// Face detection in the page. The search (passes, tiles, merging) is veil's
// Rust core, the same code the Python package's `veil.detect.detect_faces`
// runs, so both find the same faces in a photo; it runs with CenterFace in
// onnxruntime-web inside a Web Worker (detect-worker.js), so the page stays
// responsive, reports progress and can be cancelled.

/**
 * Starts the detection worker and loads the model. `options.numThreads`:
 * onnxruntime's threads (default: up to 4 when the page is cross-origin
 * isolated, else 1). `veil`, the page's own module, is not needed: the
 * worker loads its own instance. Resolves to
 * `{ detect, numThreads, params, terminate }`.
 */
export async function createDetector(veil, modelUrl, options = {}) {
  const isolated = globalThis.crossOriginIsolated === true;
  const numThreads = options.numThreads ?? (isolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  const worker = new Worker(new URL('./detect-worker.js', import.meta.url), { type: 'module', name: 'veil-detect' });
  const pending = new Map();
  let nextId = 1;
  let broken = null;

  const ready = new Promise((resolve, reject) => {
    worker.onmessage = (event) => {
      const msg = event.data;
      if (msg.type === 'ready') resolve(msg);
      else if (msg.type === 'failed') reject(new Error(msg.message));
      else pending.get(msg.id)?.(msg);
    };
    worker.onerror = (event) => {
      event.preventDefault?.();
      broken = new Error(`the detection worker failed: ${event.message || 'unknown error'}`);
      reject(broken);
      for (const handle of pending.values()) handle({ type: 'error', message: broken.message });
    };
  });
  worker.postMessage({
    type: 'init',
    modelUrl: new URL(modelUrl, location.href).href,
    wasmUrl: new URL('./veil_wasm.wasm', import.meta.url).href,
    numThreads,
  });
  let info;
  try {
    info = await ready;
  } catch (e) {
    worker.terminate();
    throw e;
  }
  const params = { DEFAULT_THRESHOLD: info.defaults.threshold, DEFAULT_MAX_SIDE_PX: info.defaults.maxSidePx };

  /**
   * Finds the faces in `image` (a WasmImage, or anything with `data`,
   * `width`, `height` and `channels`, e.g. 4 for ImageData). `threshold`,
   * `maxSidePx`, `tiles`, `rotations`: as `veil.detect.detect_faces`.
   * `onProgress(done, total, label)` is called before each network run
   * (`label` such as "tile 3 of 6"); aborting `signal` rejects with a
   * DOMException named 'AbortError'. Resolves to `{ faces, ms, passes }`,
   * faces best score first, in the photo's pixels.
   */
  function detect(image, { threshold, maxSidePx, tiles = true, rotations = true, onProgress, signal } = {}) {
    const t0 = performance.now();
    const aborted = () => new DOMException('Face detection was cancelled.', 'AbortError');
    if (signal?.aborted) return Promise.reject(aborted());
    if (broken) return Promise.reject(broken);
    const id = nextId++;
    const channels = image.channels ?? 4;
    // A copy of the pixels travels to the worker (transferred, not cloned).
    const pixels = image.data.slice().buffer;
    return new Promise((resolve, reject) => {
      const done = () => {
        pending.delete(id);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        done();
        worker.postMessage({ type: 'cancel', id });
        reject(aborted());
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      pending.set(id, (msg) => {
        if (msg.type === 'progress') {
          onProgress?.(msg.done, msg.total, msg.label);
          return;
        }
        done();
        if (msg.type === 'result') resolve({ faces: msg.faces, ms: performance.now() - t0, passes: msg.passes });
        else if (msg.type === 'cancelled') reject(aborted());
        else reject(new Error(msg.message));
      });
      worker.postMessage(
        { type: 'detect', id, pixels, width: image.width, height: image.height, channels, threshold, maxSidePx, tiles, rotations },
        [pixels],
      );
    });
  }

  return { detect, numThreads: info.numThreads, params, terminate: () => worker.terminate() };
}
