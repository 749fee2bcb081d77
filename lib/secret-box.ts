import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { writeSecretFile } from "./secret-file.js";

/** What an encrypted value starts with: the scheme and its version. */
const PREFIX = "enc:v1:";
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Encrypts short strings (secret env values) with AES-256-GCM under one key: each value gets
 * a fresh random nonce and its own authentication tag, so a changed or swapped ciphertext is
 * refused, not decrypted to garbage. The output is text ("enc:v1:" + base64url), so it fits
 * where the plain value was.
 */
export class SecretBox {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length !== KEY_BYTES) throw new Error(`a secret key is ${KEY_BYTES} bytes`);
    this.#key = Buffer.from(key);
  }

  /**
   * The key kept in `path` (mode 0600), made on first use. Whoever can read it can read
   * every secret stored with it: it belongs with the data it protects, and is backed up
   * (or not) with it.
   */
  static async open(path: string): Promise<SecretBox> {
    try {
      return new SecretBox(await readFile(path));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new Error(`cannot read the secret key ${path}: ${(error as Error).message}`);
      }
    }
    const key = randomBytes(KEY_BYTES);
    // Exclusive: two processes racing on a new directory must not end up with two keys.
    await writeSecretFile(path, key, { exclusive: true });
    return new SecretBox(key);
  }

  /**
   * A secret of its own for `purpose`, the same every time with this key (HMAC-SHA256 of the
   * purpose, base64url): nothing more to store, and as safe as the key file.
   */
  derive(purpose: string): string {
    return createHmac("sha256", this.#key).update(purpose).digest("base64url");
  }

  seal(plain: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    const body = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return PREFIX + Buffer.concat([iv, cipher.getAuthTag(), body]).toString("base64url");
  }

  /** Whether `value` is {@link seal}'s output (by its prefix), not a plain value. */
  static isSealed(value: string): boolean {
    return value.startsWith(PREFIX);
  }

  /** The plain value of {@link seal}'s output; throws when it was altered or sealed with another key. */
  open(sealed: string): string {
    if (!sealed.startsWith(PREFIX)) throw new Error("not a sealed value");
    const raw = Buffer.from(sealed.slice(PREFIX.length), "base64url");
    if (raw.length < IV_BYTES + TAG_BYTES) throw new Error("sealed value too short");
    const decipher = createDecipheriv("aes-256-gcm", this.#key, raw.subarray(0, IV_BYTES));
    decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
    return Buffer.concat([
      decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)),
      decipher.final(),
    ]).toString("utf8");
  }

  /**
   * `values` with each value sealed (a new object, made with Object.fromEntries: an assignment
   * would drop a key named `__proto__`).
   */
  sealAll(values: Readonly<Record<string, string>>): Record<string, string> {
    return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, this.seal(v)]));
  }

  /** `values` with each value opened (a new object, as {@link sealAll} makes it). */
  openAll(values: Readonly<Record<string, string>>): Record<string, string> {
    return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, this.open(v)]));
  }
}
