import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

/*
 * The protobuf wire format at its simplest — varints, fixed doubles, length-delimited
 * fields — for the hand-written codecs (lib/task-codec.ts, lib/spec-codec.ts,
 * manager/store-codec.ts).
 */

/** A growable byte buffer for protobuf varints, strings and byte strings. */
export class Bytes {
  #buf: Buffer;
  #len = 0;

  constructor(size = 64) {
    // allocUnsafe takes small buffers from Node's pool: no zeroing, no fresh allocation.
    this.#buf = Buffer.allocUnsafe(size);
  }

  get length(): number {
    return this.#len;
  }

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  /** An unsigned varint (numbers up to 2^53, or bigints up to 2^64; negatives as int64). */
  varint(value: number | bigint): this {
    this.#room(10);
    // Revisions, generations and seconds are bigints but small: skip BigInt arithmetic.
    const small = typeof value === "bigint" && value >= 0n && value < 0x80000000n;
    if (small || (typeof value === "number" && value >= 0 && value < 0x80000000)) {
      let v = Number(value);
      while (v > 0x7f) {
        this.#buf[this.#len++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.#buf[this.#len++] = v;
      return this;
    }
    let v = BigInt.asUintN(64, BigInt(value));
    while (v > 0x7fn) {
      this.#buf[this.#len++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.#buf[this.#len++] = Number(v);
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.#room(bytes.length);
    this.#buf.set(bytes, this.#len);
    this.#len += bytes.length;
    return this;
  }

  /** varint length, then the bytes. */
  delimited(bytes: Uint8Array): this {
    return this.varint(bytes.length).raw(bytes);
  }

  /** A length-delimited field: tag, length, bytes. */
  field(fieldNo: number, bytes: Uint8Array): this {
    return this.varint((fieldNo << 3) | 2).delimited(bytes);
  }

  /** A varint field, left out when zero (proto3 implicit presence). */
  uint(fieldNo: number, value: number | bigint): this {
    if (value === 0 || value === 0n) return this;
    return this.varint(fieldNo << 3).varint(value);
  }

  /** A string field, left out when empty. */
  string(fieldNo: number, value: string): this {
    if (value === "") return this;
    return this.stringAlways(fieldNo, value);
  }

  /** A string field even when empty (list elements, map entries). */
  stringAlways(fieldNo: number, value: string): this {
    // Ids, names and reasons are short ASCII: copied by hand, without the two native calls.
    const chars = value.length;
    if (chars < 0x80) {
      this.varint((fieldNo << 3) | 2);
      this.#room(chars + 1);
      const buf = this.#buf;
      const at = this.#len + 1;
      let i = 0;
      for (; i < chars; i++) {
        const c = value.charCodeAt(i);
        if (c > 0x7f) break;
        buf[at + i] = c;
      }
      if (i === chars) {
        buf[at - 1] = chars;
        this.#len = at + chars;
        return this;
      }
      this.#len -= varintSize((fieldNo << 3) | 2);
    }
    const n = Buffer.byteLength(value);
    this.varint((fieldNo << 3) | 2).varint(n);
    this.#room(n);
    this.#len += this.#buf.write(value, this.#len, "utf8");
    return this;
  }

  /** A double field (fixed 64 bits), left out when 0. */
  double(fieldNo: number, value: number): this {
    if (value === 0 && !Object.is(value, -0)) return this;
    this.varint((fieldNo << 3) | 1);
    this.#room(8);
    this.#buf.writeDoubleLE(value, this.#len);
    this.#len += 8;
    return this;
  }

  /** A Duration field, left out when unset. */
  duration(fieldNo: number, d: Duration | undefined): this {
    return d ? this.#secondsNanos(fieldNo, d.seconds, d.nanos) : this;
  }

  /** A Timestamp field, left out when unset. */
  timestamp(fieldNo: number, t: Timestamp | undefined): this {
    return t ? this.#secondsNanos(fieldNo, t.seconds, t.nanos) : this;
  }

  /** {seconds = 1, nanos = 2} written in place: its length is known without encoding it. */
  #secondsNanos(fieldNo: number, seconds: bigint, nanos: number): this {
    const length =
      (seconds === 0n ? 0 : 1 + varintSize(seconds)) + (nanos === 0 ? 0 : 1 + varintSize(nanos));
    return this.varint((fieldNo << 3) | 2)
      .varint(length)
      .uint(1, seconds)
      .uint(2, nanos);
  }

  /** Empties the buffer for another encoding (keeping its memory). */
  reset(): this {
    this.#len = 0;
    return this;
  }

  /**
   * The bytes written so far, copied to a buffer of their own size from Node's pool: for a
   * Bytes reused through {@link reset}, whose memory the next encoding overwrites.
   */
  copy(): Uint8Array {
    const n = this.#len;
    const out = Buffer.allocUnsafe(n);
    const buf = this.#buf;
    // Most encodings are ~100 bytes: a loop beats the native copy's call.
    if (n <= 256) for (let i = 0; i < n; i++) out[i] = buf[i] as number;
    else buf.copy(out, 0, 0, n);
    return out;
  }

  /**
   * The bytes written so far: a view of this buffer, not a copy (most encodings are
   * written into another buffer at once). A view kept holds on to the memory it was cut
   * from — for a small Bytes, an 8 KiB chunk of Node's pool shared with other encodings.
   * (`Buffer#slice` is a view too; `Uint8Array.prototype.slice.call(b)` copies.)
   */
  finish(): Uint8Array {
    return this.#buf.subarray(0, this.#len);
  }
}

/** Bytes of a varint (negative numbers take 10, as int64). */
function varintSize(value: number | bigint): number {
  // Seconds, revisions and generations are small bigints: counted as numbers.
  if (typeof value === "bigint" && value >= 0n && value < 0x80000000n) value = Number(value);
  let v = typeof value === "bigint" ? BigInt.asUintN(64, value) : value;
  if (typeof v === "number") {
    if (v < 0) return 10;
    if (v < 0x80000000) {
      let n = 1;
      while (v > 0x7f) {
        v >>>= 7;
        n++;
      }
      return n;
    }
    v = BigInt(v);
  }
  let n = 1;
  while (v > 0x7fn) {
    v >>= 7n;
    n++;
  }
  return n;
}

const decoder = new TextDecoder();

/** Reads varints and delimited chunks from `buf`. */
export class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  /** A varint as a number: uint32 fields, enums, tags (above 2^28 through the bigint path). */
  small(): number {
    const start = this.pos;
    let result = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new Error("truncated varint");
      result |= (b & 0x7f) << shift;
      if (b < 0x80) return result;
    }
    this.pos = start;
    return Number(BigInt.asUintN(32, this.varint()));
  }

  varint(): bigint {
    // Up to 7 bytes (49 bits) in plain numbers: revisions and generations always are.
    const start = this.pos;
    let small = 0;
    let mul = 1;
    for (let i = 0; i < 7; i++) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new Error("truncated varint");
      small += (b & 0x7f) * mul;
      if (b < 0x80) return BigInt(small);
      mul *= 128;
    }
    this.pos = start;
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const b = this.buf[this.pos++];
      if (b === undefined) throw new Error("truncated varint");
      result |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return result;
      shift += 7n;
    }
  }

  /** A fixed 64-bit double. */
  double(): number {
    if (this.pos + 8 > this.buf.length) throw new Error("truncated double");
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0, true);
    this.pos += 8;
    return v;
  }

  /** UTF-8 text of a chunk of this reader's buffer. */
  text(chunk: Uint8Array): string {
    // Ids, names and images are short ASCII: building them directly beats a decoder call.
    if (chunk.length <= 64) {
      let ascii = true;
      for (let i = 0; i < chunk.length; i++) {
        if ((chunk[i] as number) > 0x7f) {
          ascii = false;
          break;
        }
      }
      if (ascii) return String.fromCharCode.apply(null, chunk as unknown as number[]);
    }
    return decoder.decode(chunk);
  }

  /**
   * A Timestamp or Duration ({seconds = 1, nanos = 2}) from its bytes; undefined when it
   * holds any other field.
   */
  static secondsNanos(bytes: Uint8Array): { seconds: bigint; nanos: number } | undefined {
    let seconds = 0n;
    let nanos = 0;
    const r = new Reader(bytes);
    while (!r.done) {
      const tag = r.small();
      if (tag === 1 << 3) seconds = BigInt.asIntN(64, r.varint());
      else if (tag === 2 << 3) nanos = Number(BigInt.asIntN(32, r.varint()));
      else return undefined;
    }
    return { seconds, nanos };
  }

  delimited(): Uint8Array {
    const len = Number(this.varint());
    const start = this.pos;
    this.pos += len;
    if (this.pos > this.buf.length) throw new Error("truncated record");
    return this.buf.subarray(start, this.pos);
  }
}
