/**
 * Reads a PNG (8-bit RGB or RGBA, not interlaced — what Chromium's screenshots are) far
 * enough to count its distinct colours: a blank or failed render is one or two colours, a
 * drawn page hundreds.
 */
import { inflateSync } from "node:zlib";

/** Size and distinct colours of a PNG. */
export interface PngSummary {
  readonly width: number;
  readonly height: number;
  readonly colours: number;
}

/** Decodes `png` and counts its distinct colours (alpha included). */
export function pngColours(png: Uint8Array): PngSummary {
  const buf = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  if (buf.readUInt32BE(0) !== 0x89504e47) throw new Error("not a PNG");
  let pos = 8;
  let width = 0;
  let height = 0;
  let channels = 0;
  const idat: Buffer[] = [];
  while (pos < buf.length) {
    const length = buf.readUInt32BE(pos);
    const type = buf.toString("latin1", pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + length);
    if (type === "IHDR") {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8];
      const colourType = data[9];
      if (depth !== 8 || (colourType !== 2 && colourType !== 6) || data[12] !== 0) {
        throw new Error(
          `unsupported PNG: depth ${depth}, colour type ${colourType}, interlace ${data[12]}`,
        );
      }
      channels = colourType === 6 ? 4 : 3;
    } else if (type === "IDAT") {
      idat.push(data);
    } else if (type === "IEND") {
      break;
    }
    pos += 12 + length;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  const prev = new Uint8Array(stride);
  const row = new Uint8Array(stride);
  const seen = new Set<number>();
  for (let y = 0; y < height; y++) {
    const base = y * (stride + 1);
    const filter = raw[base] as number;
    for (let x = 0; x < stride; x++) {
      const v = raw[base + 1 + x] as number;
      const a = x >= channels ? (row[x - channels] as number) : 0;
      const b = prev[x] as number;
      const c = x >= channels ? (prev[x - channels] as number) : 0;
      let out: number;
      switch (filter) {
        case 0:
          out = v;
          break;
        case 1:
          out = v + a;
          break;
        case 2:
          out = v + b;
          break;
        case 3:
          out = v + ((a + b) >> 1);
          break;
        case 4: {
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          out = v + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
          break;
        }
        default:
          throw new Error(`bad PNG filter ${filter} on row ${y}`);
      }
      row[x] = out & 0xff;
    }
    for (let x = 0; x < stride; x += channels) {
      let key = ((row[x] as number) << 16) | ((row[x + 1] as number) << 8) | (row[x + 2] as number);
      if (channels === 4) key = key * 256 + (row[x + 3] as number);
      seen.add(key);
    }
    prev.set(row);
  }
  return { width, height, colours: seen.size };
}
