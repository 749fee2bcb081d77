import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { type Duration, durationMs, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type TokenRecord, TokenRecordSchema } from "../../gen/cube/store/v1/records_pb.js";
import { Role, type Token, TokenSchema } from "../../gen/cube/v1/token_service_pb.js";

/** What a presented secret resolves to. */
export type TokenCheck =
  | { readonly ok: true; readonly token: Token }
  | { readonly ok: false; readonly why: string };

const SECRET = /^cube_([0-9a-f]{16})\.([A-Za-z0-9_-]{43})$/;

function sha256(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

/**
 * The manager's bearer tokens, by id, with the SHA-256 of each secret (never the secret):
 * checking a presented secret is a map lookup and one constant-time compare. Changes are
 * returned as records for the caller to store; the table itself does no I/O.
 */
export class TokenTable {
  readonly #byId = new Map<string, TokenRecord>();
  /** Told the id of each token revoked (authorization.ts ends the streams it opened). */
  readonly #onRevoke = new Set<(id: string) => void>();

  /** Loads stored records (revoked and expired ones included). */
  constructor(records: readonly TokenRecord[] = []) {
    for (const r of records) if (r.token) this.#byId.set(r.token.id, r);
  }

  get size(): number {
    return this.#byId.size;
  }

  /** Every token, oldest first (to the nanosecond), without secrets. */
  list(): Token[] {
    const at = (x: Token) =>
      (x.createdAt?.seconds ?? 0n) * 1_000_000_000n + BigInt(x.createdAt?.nanos ?? 0);
    // A stable sort: tokens of one instant stay in the order they were made (or loaded).
    return [...this.#byId.values()]
      .map((r) => r.token as Token)
      .sort((a, b) => {
        const d = at(a) - at(b);
        return d === 0n ? 0 : d < 0n ? -1 : 1;
      });
  }

  /** A new token: its record (to store) and its secret (to show once). */
  create(
    name: string,
    role: Role,
    ttl: Duration | undefined,
    nowMs: number,
    workerId = "",
  ): { record: TokenRecord; secret: string } {
    const id = randomBytes(8).toString("hex");
    const secret = `cube_${id}.${randomBytes(32).toString("base64url")}`;
    const token = create(TokenSchema, {
      id,
      name,
      role,
      createdAt: timestampFromMs(nowMs),
      expiresAt: ttl ? timestampFromMs(nowMs + durationMs(ttl)) : undefined,
      workerId,
    });
    const record = create(TokenRecordSchema, { token, secretSha256: sha256(secret) });
    this.#byId.set(id, record);
    return { record, secret };
  }

  /**
   * Revokes a token; its record to store, or undefined when the id is unknown. From now on
   * {@link check} refuses it, and the {@link onRevoke} listeners are told.
   */
  revoke(id: string): TokenRecord | undefined {
    const record = this.#byId.get(id);
    if (!record?.token) return undefined;
    const revoked = create(TokenRecordSchema, {
      token: { ...record.token, revoked: true },
      secretSha256: record.secretSha256,
    });
    this.#byId.set(id, revoked);
    for (const fn of this.#onRevoke) fn(id);
    return revoked;
  }

  /** Calls `fn` with the id of every token revoked from now on; returns what stops that. */
  onRevoke(fn: (id: string) => void): () => void {
    this.#onRevoke.add(fn);
    return () => this.#onRevoke.delete(fn);
  }

  /** The live (not revoked, not expired at `nowMs`) admin tokens. */
  liveAdmins(nowMs: number): Token[] {
    const live: Token[] = [];
    for (const { token } of this.#byId.values()) {
      if (!token || token.role !== Role.ADMIN || token.revoked) continue;
      if (token.expiresAt && timestampDate(token.expiresAt).getTime() <= nowMs) continue;
      live.push(token);
    }
    return live;
  }

  /** The live (not revoked, not expired) credential bound to `workerId`, if any. */
  boundTo(workerId: string, nowMs: number): Token | undefined {
    for (const { token } of this.#byId.values()) {
      if (!token || token.workerId !== workerId || token.revoked) continue;
      if (token.expiresAt && timestampDate(token.expiresAt).getTime() <= nowMs) continue;
      return token;
    }
    return undefined;
  }

  /** Whether `secret` is a live token now: known, not revoked, not expired. */
  check(secret: string, nowMs: number): TokenCheck {
    const m = SECRET.exec(secret);
    if (!m) return { ok: false, why: "malformed token" };
    const record = this.#byId.get(m[1] as string);
    const token = record?.token;
    if (!record || !token) return { ok: false, why: "unknown token" };
    const hash = sha256(secret);
    if (hash.length !== record.secretSha256.length || !timingSafeEqual(hash, record.secretSha256)) {
      return { ok: false, why: "unknown token" };
    }
    if (token.revoked) return { ok: false, why: `token ${token.id} is revoked` };
    if (token.expiresAt && timestampDate(token.expiresAt).getTime() <= nowMs) {
      return { ok: false, why: `token ${token.id} expired` };
    }
    return { ok: true, token };
  }
}

/** The roles a role includes: admin ⊇ operator ⊇ read; worker stands alone. */
export function roleIncludes(held: Role, needed: Role): boolean {
  if (held === needed) return true;
  if (held === Role.ADMIN) return true;
  return held === Role.OPERATOR && needed === Role.READ;
}
