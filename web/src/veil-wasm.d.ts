// Types of veil-wasm.js: veil's Rust core compiled to WebAssembly. (The
// wasm-bindgen bindings under it, veil_wasm_bindings.js, are internal.)

export declare const ErrorCode: Readonly<{
  INVALID_PARAMETER: 1;
  INVALID_IMAGE: 2;
  /** A bug in veil (a Rust panic). The module is unusable afterwards: reload the page (or worker). */
  PANIC: 3;
}>;

export type ErrorCodeValue = 1 | 2 | 3;

/** An error reported by veil's core, with the core's message. */
export declare class VeilError extends Error {
  readonly name: 'VeilError';
  readonly code: ErrorCodeValue;
  readonly codeName: 'INVALID_PARAMETER' | 'INVALID_IMAGE' | 'PANIC' | 'UNKNOWN';
  constructor(code: ErrorCodeValue, message: string);
}

/** An 8-bit interleaved image (1, 3 or 4 channels) in the module's memory. */
export declare class WasmImage {
  readonly ptr: number;
  readonly width: number;
  readonly height: number;
  readonly channels: number;
  readonly byteLength: number;
  /** A live view of the pixels; take a new one after any call that may allocate. */
  readonly data: Uint8ClampedArray;
  /** An ImageData over the pixels, without a copy (RGBA only). */
  imageData(): ImageData;
  set(pixels: ArrayLike<number>): void;
  copyFrom(other: WasmImage): void;
  /** Returns the memory to the module. The image is unusable afterwards. */
  free(): void;
}

export type Method =
  | { kind: 'gaussian'; sigmaPx: number }
  | { kind: 'box'; radiusPx: number }
  | { kind: 'pixelate'; blockPx: number }
  | { kind: 'fill'; color?: [number, number, number] }
  | { kind: 'noise'; amount: number; seed?: number };

export interface Region {
  left: number;
  top: number;
  width: number;
  height: number;
  /** Default 'ellipse'. */
  shape?: 'rectangle' | 'ellipse';
  /** Soft edge width in pixels; default 0. */
  featherPx?: number;
}

export interface Face {
  left: number;
  top: number;
  right: number;
  bottom: number;
  score: number;
  /** Eyes, nose tip, mouth corners as [x, y]. */
  landmarks: [number, number][];
}

export interface CenterFaceOutputs {
  /** 1 x rows x cols */
  heatmap: Float32Array;
  /** 2 x rows x cols (log height, log width) */
  scale: Float32Array;
  /** 2 x rows x cols (y, x) */
  offset: Float32Array;
  /** 10 x rows x cols (y, x per point) */
  landmarks: Float32Array;
}

/**
 * The face search over one photo, driven by the page's network session:
 * `nextInput()` until it returns null, answering each input with
 * `pushOutput()`; then `finish()`. Free it with `free()`.
 */
export declare class FaceSearch {
  /** The next network input (float32 NCHW, batch 1, padded to multiples of 32), or null when over. */
  nextInput(): { data: Float32Array; width: number; height: number } | null;
  /** CenterFace's four outputs for the last input; `rows x cols` is the input size / 4. */
  pushOutput(outputs: CenterFaceOutputs, rows: number, cols: number): void;
  /** Runs done, runs in all, and what the next run is ("tile 2 of 6"). */
  progress(): { done: number; total: number; label: string };
  /** The faces, best score first, boxes clamped to the photo. */
  finish(): Face[];
  free(): void;
}

export declare class Veil {
  readonly memory: WebAssembly.Memory;
  createImage(width: number, height: number, channels?: 1 | 3 | 4): WasmImage;
  imageFrom(pixels: ArrayLike<number>, width: number, height: number, channels?: 1 | 3 | 4): WasmImage;
  /** Whole-image kernels: `src` to `dst`, same shape, different buffers. Alpha is kept. */
  gaussianBlur(src: WasmImage, dst: WasmImage, sigmaPx: number): void;
  boxBlur(src: WasmImage, dst: WasmImage, radiusPx: number): void;
  pixelate(src: WasmImage, dst: WasmImage, blockPx: number, originX?: number, originY?: number): void;
  /** Hides the regions of `image` in place. */
  applyToRegions(image: WasmImage, method: Method, regions: Region[]): void;
  fill(image: WasmImage, color: number[]): void;
  addNoise(image: WasmImage, amount: number, seed: number, originX?: number, originY?: number): void;
  /** The face search's default settings (from veil-core). */
  detectDefaults(): { threshold: number; maxSidePx: number };
  /** Starts the face search of `image` (copied: it can be freed right after). */
  faceSearch(image: WasmImage, settings?: { threshold?: number; maxSidePx?: number; tiles?: boolean; rotations?: boolean }): FaceSearch;
}

/** Loads the module once per page or worker; later calls share it. */
export declare function loadVeil(source?: URL | string | Response | ArrayBuffer | ArrayBufferView): Promise<Veil>;
