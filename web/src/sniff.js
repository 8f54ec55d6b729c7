// Reads a photo's format and size from its header bytes, before anything is
// decoded: a 20000 x 20000 PNG can be a few hundred bytes on disk and 1.6 GB
// once decoded, so the pixel limit must be applied to the header, not to a
// decoded bitmap. Also catches files that are not images, or are cut short,
// with a message a person can act on.

/** A file the page refuses; `message` is written for the person, not for logs. */
export class PhotoError extends Error {
  constructor(message) {
    super(message);
    this.name = 'PhotoError';
  }
}

const MIME = { heic: 'image/heic', jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp', gif: 'image/gif', bmp: 'image/bmp' };

async function bytesOf(blob, start, end) {
  return new Uint8Array(await blob.slice(start, end).arrayBuffer());
}

const be16 = (b, i) => (b[i] << 8) | b[i + 1];
const be32 = (b, i) => ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
const le16 = (b, i) => b[i] | (b[i + 1] << 8);
const le24 = (b, i) => b[i] | (b[i + 1] << 8) | (b[i + 2] << 16);
const le32 = (b, i) => (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24)) >>> 0;
const ascii = (b, i, n) => String.fromCharCode(...b.subarray(i, i + n));

function truncated(what) {
  return new PhotoError(`This file could not be read as a photo: it is cut short or damaged (${what}). Try the original file again.`);
}

/** The format from the first bytes, or null. */
function formatOf(b) {
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if ([137, 80, 78, 71, 13, 10, 26, 10].every((v, k) => b[k] === v)) return 'png';
  if (ascii(b, 0, 4) === 'RIFF' && ascii(b, 8, 4) === 'WEBP') return 'webp';
  if (ascii(b, 0, 6) === 'GIF87a' || ascii(b, 0, 6) === 'GIF89a') return 'gif';
  if (ascii(b, 0, 2) === 'BM') return 'bmp';
  if (ascii(b, 4, 4) === 'ftyp') {
    const brand = ascii(b, 8, 4);
    if (/^(heic|heix|heim|heis|hevc|hevx|mif1|msf1|avif)$/.test(brand)) return brand === 'avif' ? 'avif' : 'heic';
  }
  return null;
}

/** JPEG: walk the segments up to the frame header (SOFn); EXIF can be 64 KB
 * per segment and there can be several, so read segment by segment. Then
 * check that the file ends its scan data with EOI. */
async function jpegHeader(blob) {
  let i = 2;
  for (let guard = 0; guard < 1000; guard++) {
    const head = await bytesOf(blob, i, i + 12);
    if (head.length < 4) throw truncated('no frame header');
    if (head[0] !== 0xff) throw truncated(`bad marker at byte ${i}`);
    const marker = head[1];
    if (marker === 0xff) { i += 1; continue; }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) { i += 2; continue; }
    if (marker === 0xd9 || marker === 0xda) throw truncated('no frame header before the image data');
    const len = be16(head, 2);
    if (len < 2 || i + 2 + len > blob.size) throw truncated('a segment runs past the end of the file');
    const sof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (sof) {
      if (head.length < 9) throw truncated('short frame header');
      const height = be16(head, 5);
      const width = be16(head, 7);
      // The scan data must be followed by EOI somewhere after the frame
      // header: a download cut short ends in the middle of the scan, and
      // browsers then show the missing part as grey.
      const tail = await bytesOf(blob, i, blob.size);
      if (!hasEoi(tail)) throw truncated('the image data ends early');
      return { width, height };
    }
    i += 2 + len;
  }
  throw truncated('too many segments');
}

function hasEoi(b) {
  for (let k = b.length - 2; k >= 0; k--) if (b[k] === 0xff && b[k + 1] === 0xd9) return true;
  return false;
}

/** PNG: IHDR must come first; walk the chunk headers to IEND. */
async function pngHeader(blob) {
  const b = await bytesOf(blob, 0, 33);
  if (b.length < 33 || ascii(b, 12, 4) !== 'IHDR') throw truncated('no IHDR header');
  const width = be32(b, 16);
  const height = be32(b, 20);
  let i = 8;
  for (let guard = 0; guard < 1_000_000 && i + 12 <= blob.size; guard++) {
    const h = await bytesOf(blob, i, i + 8);
    const len = be32(h, 0);
    const type = ascii(h, 4, 4);
    i += 12 + len;
    if (i > blob.size) break;
    if (type === 'IEND') return { width, height };
  }
  throw truncated('no IEND chunk: the file ends early');
}

/** WebP: the RIFF size says how long the file is; VP8 / VP8L / VP8X carry the size. */
async function webpHeader(blob) {
  const b = await bytesOf(blob, 0, 30);
  if (b.length < 30) throw truncated('short header');
  if (le32(b, 4) + 8 > blob.size) throw truncated('the file ends early');
  const chunk = ascii(b, 12, 4);
  if (chunk === 'VP8X') return { width: le24(b, 24) + 1, height: le24(b, 27) + 1 };
  if (chunk === 'VP8L') {
    if (b[20] !== 0x2f) throw truncated('bad lossless header');
    const bits = le32(b, 21);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8 ') {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) throw truncated('bad lossy header');
    return { width: le16(b, 26) & 0x3fff, height: le16(b, 28) & 0x3fff };
  }
  throw truncated(`unknown WebP chunk ${JSON.stringify(chunk)}`);
}

/** GIF: the logical screen, grown to the first frame if that is larger
 * (decoders draw the whole frame, so a small screen cannot hide a big one). */
async function gifHeader(blob) {
  const b = await bytesOf(blob, 0, Math.min(blob.size, 1 << 20));
  if (b.length < 13) throw truncated('short header');
  const last = await bytesOf(blob, blob.size - 1, blob.size);
  if (last[0] !== 0x3b) throw truncated('no trailer: the file ends early');
  let width = le16(b, 6);
  let height = le16(b, 8);
  let i = 13 + (b[10] & 0x80 ? 3 << ((b[10] & 7) + 1) : 0);
  while (i < b.length && b[i] === 0x21) { // extensions: label, then sub-blocks up to a zero length
    i += 2;
    while (i < b.length && b[i] !== 0) i += b[i] + 1;
    i += 1;
  }
  if (i + 9 <= b.length && b[i] === 0x2c) {
    width = Math.max(width, le16(b, i + 1) + le16(b, i + 5));
    height = Math.max(height, le16(b, i + 3) + le16(b, i + 7));
  }
  return { width, height };
}

async function bmpHeader(blob) {
  const b = await bytesOf(blob, 0, 26);
  if (b.length < 26) throw truncated('short header');
  if (le32(b, 2) > blob.size || le32(b, 10) >= blob.size) throw truncated('the file ends early');
  const dib = le32(b, 14);
  if (dib === 12) return { width: le16(b, 18), height: le16(b, 20) };
  const h = le32(b, 22) | 0;
  return { width: le32(b, 18) | 0, height: Math.abs(h) };
}

/**
 * HEIC/HEIF (ISO base media file): the image sizes are `ispe` properties in
 * meta > iprp > ipco. The largest one is taken (a grid image's own size is
 * the whole photo; its tiles and thumbnail are smaller), so the pixel limit
 * is never applied to a tile. Box sizes are checked against the file's.
 */
async function heifHeader(blob) {
  let at = 0;
  let meta = null;
  for (let guard = 0; guard < 64 && at + 8 <= blob.size; guard++) {
    const h = await bytesOf(blob, at, at + 16);
    let size = be32(h, 0);
    let head = 8;
    if (size === 1) {
      size = be32(h, 8) * 2 ** 32 + be32(h, 12);
      head = 16;
    } else if (size === 0) {
      size = blob.size - at;
    }
    if (size < head || at + size > blob.size) throw truncated('a box runs past the end of the file');
    if (ascii(h, 4, 4) === 'meta') {
      if (size > 16 << 20) throw truncated('an oversized meta box');
      meta = await bytesOf(blob, at + head + 4, at + size); // a full box: skip version and flags
    }
    at += size;
  }
  if (!meta) throw truncated('no meta box');
  let best = null;
  const walk = (b, from, to, depth) => {
    let i = from;
    while (i + 8 <= to && depth < 8) {
      const size = be32(b, i);
      const type = ascii(b, i + 4, 4);
      if (size < 8 || i + size > to) throw truncated(`a bad ${JSON.stringify(type)} box`);
      if (type === 'iprp' || type === 'ipco') walk(b, i + 8, i + size, depth + 1);
      else if (type === 'ispe' && size >= 20) {
        const width = be32(b, i + 12);
        const height = be32(b, i + 16);
        if (!best || width * height > best.width * best.height) best = { width, height };
      }
      i += size;
    }
  };
  walk(meta, 0, meta.length, 0);
  if (!best) throw truncated('no image size in its header');
  return best;
}

/**
 * `{ format, type, width, height }` from the header of `blob`, or a
 * PhotoError saying why it cannot be opened. Nothing is decoded.
 */
export async function sniffPhoto(blob) {
  if (!blob || blob.size === 0) throw new PhotoError('This file is empty: it is not a photo.');
  const head = await bytesOf(blob, 0, 16);
  const format = formatOf(head);
  if (!format || format === 'avif') {
    throw new PhotoError(`This file is not a photo the page can open${blob.type ? ` (${blob.type})` : ''}: use a JPEG, PNG, WebP, GIF or BMP file.`);
  }
  const read = { jpeg: jpegHeader, png: pngHeader, webp: webpHeader, gif: gifHeader, bmp: bmpHeader, heic: heifHeader }[format];
  const { width, height } = await read(blob);
  if (!(width > 0 && height > 0)) throw truncated('its header gives no size');
  return { format, type: MIME[format], width, height };
}
