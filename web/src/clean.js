// Keeps only what an image needs to be displayed. The page encodes its
// downloads afresh from pixels, so they carry none of the original file's
// metadata; but the browser's encoder adds blocks of its own (Chromium embeds
// an ICC colour profile in JPEGs, for instance). Rather than trust that these
// say nothing about the device, every download passes through a whitelist.

const JPEG_KEEP = new Set([
  0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf, // SOFn: frame headers
  0xc4, // DHT: Huffman tables
  0xcc, // DAC: arithmetic coding conditioning
  0xdb, // DQT: quantisation tables
  0xdd, // DRI: restart interval
]);

/**
 * A baseline or progressive JPEG with only SOI, a bare JFIF APP0, the
 * tables, frame and scan headers, the entropy-coded data and EOI: no APP1-15
 * (EXIF, XMP, ICC, MPF, Photoshop/IPTC), no comments, nothing after EOI.
 */
export function cleanJpeg(bytes) {
  const b = bytes;
  if (b[0] !== 0xff || b[1] !== 0xd8) throw new Error('not a JPEG');
  const out = [Uint8Array.of(0xff, 0xd8)];
  // A JFIF header with no thumbnail and 1:1 aspect, no density.
  out.push(Uint8Array.of(0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0));
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) throw new Error(`bad JPEG marker at byte ${i}`);
    const marker = b[i + 1];
    if (marker === 0xff) { i += 1; continue; } // fill byte
    if (marker === 0xd9) break; // EOI before any scan: nothing to keep
    const len = (b[i + 2] << 8) | b[i + 3];
    const end = i + 2 + len;
    if (end > b.length) throw new Error('truncated JPEG segment');
    if (marker === 0xda) {
      // SOS: the scan header, then entropy-coded data up to the next marker
      // that is not a stuffed byte or a restart marker. Progressive JPEGs
      // have several scans with tables between them: keep walking.
      let j = end;
      while (j + 1 < b.length && !(b[j] === 0xff && b[j + 1] !== 0 && !(b[j + 1] >= 0xd0 && b[j + 1] <= 0xd7))) j++;
      out.push(b.subarray(i, j));
      i = j;
      if (b[i + 1] === 0xd9) break;
      continue;
    }
    if (JPEG_KEEP.has(marker)) out.push(b.subarray(i, end));
    i = end;
  }
  out.push(Uint8Array.of(0xff, 0xd9));
  return concat(out);
}

const PNG_SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const PNG_KEEP = new Set(['IHDR', 'PLTE', 'tRNS', 'IDAT', 'IEND']);

/** A PNG with only the chunks needed to draw it: no text, EXIF, ICC, times or private chunks. */
export function cleanPng(bytes) {
  const b = bytes;
  if (!PNG_SIGNATURE.every((v, k) => b[k] === v)) throw new Error('not a PNG');
  const out = [b.subarray(0, 8)];
  let i = 8;
  while (i + 12 <= b.length) {
    const len = ((b[i] << 24) | (b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]) >>> 0;
    const type = String.fromCharCode(b[i + 4], b[i + 5], b[i + 6], b[i + 7]);
    const end = i + 12 + len;
    if (end > b.length) throw new Error('truncated PNG chunk');
    if (PNG_KEEP.has(type)) out.push(b.subarray(i, end));
    i = end;
    if (type === 'IEND') break;
  }
  return concat(out);
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The cleaned bytes of an encoded image Blob, as a new Blob of the same type. */
export async function cleanImageBlob(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const clean = blob.type === 'image/png' ? cleanPng(bytes) : cleanJpeg(bytes);
  return new Blob([clean], { type: blob.type });
}
