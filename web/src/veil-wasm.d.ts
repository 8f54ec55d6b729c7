// Types of veil-wasm.js: veil's Rust core compiled to WebAssembly.

export declare const ErrorCode: Readonly<{
  INVALID_PARAMETER: 1;
  INVALID_IMAGE: 2;
  /** A bug in veil (a Rust panic). The module is unusable afterwards: load it again. */
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
  /** A new image resized as Pillow's `Image.resize(size, BILINEAR)` does. */
  resizeBilinear(src: WasmImage, width: number, height: number): WasmImage;
  /** CenterFace input for a crop: float32 RGB planes padded to multiples of 32. */
  networkInput(src: WasmImage, x0?: number, y0?: number, width?: number, height?: number):
    { data: Float32Array; width: number; height: number };
  decodeCenterFace(outputs: CenterFaceOutputs, rows: number, cols: number, scoreThreshold: number,
    scaleX?: number, scaleY?: number): Face[];
  nonMaxSuppression(faces: Face[], iouThreshold: number): Face[];
}

export declare function loadVeil(source?: URL | string | Response | ArrayBuffer | ArrayBufferView): Promise<Veil>;
