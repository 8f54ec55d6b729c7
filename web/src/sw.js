// Keeps the page working offline: everything it needs (the page, veil's
// WebAssembly core, onnxruntime-web and the model) is cached on the first
// visit. Requests go to the network first, so a rebuilt page is picked up at
// once; the cache answers only when the server cannot be reached. Only this
// origin's files are ever stored (the page makes no other requests).

const CACHE = 'veil-page-v1';
// scripts/build_web.sh checks that this list names every file the page loads.
const FILES = [
  './', 'index.html', 'style.css', 'app.js', 'detector.js', 'detect-worker.js', 'veil-wasm.js', 'clean.js',
  'regions.js', 'sniff.js', 'veil_wasm_bindings.js', 'veil_wasm.wasm', 'models/centerface.onnx',
  'ort/ort.wasm.min.mjs', 'ort/ort-wasm-simd-threaded.mjs', 'ort/ort-wasm-simd-threaded.wasm',
  'heif/libheif-bundle.mjs', 'manifest.webmanifest', 'icons/icon-192.png', 'icons/icon-512.png',
];

self.addEventListener('install', (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET' || new URL(request.url).origin !== self.location.origin) return;
  event.respondWith((async () => {
    const cache = await caches.open(CACHE);
    try {
      const response = await fetch(request);
      if (response.ok && response.type === 'basic') await cache.put(request, response.clone());
      return response;
    } catch (offline) {
      const cached = await cache.match(request, { ignoreSearch: true });
      if (cached) return cached;
      throw offline;
    }
  })());
});
