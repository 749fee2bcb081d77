/**
 * Random protobuf messages for contract tests, driven by the descriptors alone: a field
 * added to a .proto file is filled, checked for and compared with no edit here. Three
 * tools make a silent drop visible:
 *
 * - {@link randomMessage} sets every field to a random non-default value (a default value
 *   would look the same dropped or not), with {@link oneofVariants} samples per message so
 *   every case of every oneof gets chosen;
 * - {@link missingFields} lists what a message leaves unset, so a test proves its sample
 *   really covers every field;
 * - {@link diff} names the field paths where two messages differ.
 */
import {
  clone,
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescOneof,
  equals,
  type MessageShape,
  ScalarType,
} from "@bufbuild/protobuf";
import {
  type ReflectList,
  type ReflectMap,
  type ReflectMessage,
  reflect,
  scalarEquals,
} from "@bufbuild/protobuf/reflect";

/** A seeded source of random values: the same seed gives the same messages. */
export interface Random {
  readonly seed: number;
  /** A float in [0, 1). */
  next(): number;
  /** An integer in [min, max], both within ±2^53. */
  int(min: number, max: number): number;
  /** One of `items` (not empty). */
  pick<T>(items: readonly T[]): T;
  /** 64 random bits. */
  bits64(): bigint;
  /**
   * 1 to `max` characters: ASCII, accented letters, CJK and an emoji (a surrogate pair), so
   * a codec that mangles UTF-8 or UTF-16 shows; never whitespace or a control character.
   */
  text(max?: number): string;
  /** 1 to `max` characters of `[A-Za-z0-9._-]`, for ids and keys. */
  token(max?: number): string;
}

const TOKEN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-";
const TEXT = [...TOKEN, ":", "/", "@", "é", "ß", "Ж", "日", "本", "😀", "🚀"];

/** A {@link Random} from `seed` (mulberry32: small, fast, and good enough for test data). */
export function seededRandom(seed: number): Random {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const u32 = () => Math.floor(next() * 2 ** 32);
  const random: Random = {
    seed,
    next,
    int(min, max) {
      // 53 bits from two draws: one draw has 32, too few for the ranges of int64 fields.
      const unit = (Math.floor(next() * 2 ** 21) * 2 ** 32 + u32()) / 2 ** 53;
      return min + Math.floor(unit * (max - min + 1));
    },
    pick: (items) => items[Math.floor(next() * items.length)] as (typeof items)[number],
    bits64: () => (BigInt(u32()) << 32n) | BigInt(u32()),
    text(max = 12) {
      let s = "";
      for (let n = random.int(1, max); n > 0; n--) s += random.pick(TEXT);
      return s;
    },
    token(max = 12) {
      let s = "";
      for (let n = random.int(1, max); n > 0; n--) s += random.pick([...TOKEN]);
      return s;
    },
  };
  return random;
}

/** How {@link randomMessage} fills a message. */
export interface FillOptions {
  /**
   * Which case each oneof takes: case number `variant` modulo its number of cases (0 by
   * default). Samples 0 to {@link oneofVariants}(desc) - 1 choose every case at least once.
   */
  variant?: number;
  /**
   * How many times one message type may appear on a path from the root, which bounds the
   * depth of recursive types (ConnectRequest → batch → ConnectRequest). Default 2: a
   * recursive message is sampled one level deep inside itself; at the bound a oneof takes
   * another case.
   */
  maxTypeRepeat?: number;
  /** Fields to leave unset: for showing that {@link missingFields} notices. */
  skip?: (field: DescField) => boolean;
}

/** Values the filler makes for well-known types whose fields have ranges JSON enforces. */
const WELL_KNOWN: Record<string, (random: Random) => Record<string, unknown>> = {
  // Years 1970 to 2100: JSON writes RFC 3339, which stops at year 9999.
  "google.protobuf.Timestamp": (random) => ({
    seconds: BigInt(random.int(1, 4_102_444_800)),
    nanos: random.int(1, 999_999_999),
  }),
  // Seconds and nanos of one sign, within JSON's ±10,000 years.
  "google.protobuf.Duration": (random) => ({
    seconds: BigInt(random.int(1, 315_576_000_000)),
    nanos: random.int(1, 999_999_999),
  }),
};

/** Well-known types with rules the filler does not know yet: failing beats a wrong sample. */
const UNSUPPORTED = new Set([
  "google.protobuf.Any",
  "google.protobuf.Struct",
  "google.protobuf.Value",
  "google.protobuf.ListValue",
  "google.protobuf.FieldMask",
]);

/**
 * A message of type `desc` with every field set to a random value that is not the field's
 * default: numbers non-zero, strings and bytes non-empty, bools true, enums a defined non-zero
 * value, lists and maps of 1 to 3 entries, nested messages filled the same way (to the
 * depth {@link FillOptions.maxTypeRepeat} allows), each oneof with the case
 * {@link FillOptions.variant} picks.
 */
export function randomMessage<Desc extends DescMessage>(
  desc: Desc,
  random: Random,
  options: FillOptions = {},
): MessageShape<Desc> {
  return fill(desc, random, options, []).message as MessageShape<Desc>;
}

function fill(
  desc: DescMessage,
  random: Random,
  options: FillOptions,
  outer: readonly string[],
): ReflectMessage {
  if (UNSUPPORTED.has(desc.typeName)) {
    throw new Error(
      `test/random-message.ts cannot make a valid ${desc.typeName} yet: teach it (see WELL_KNOWN)`,
    );
  }
  const known = WELL_KNOWN[desc.typeName];
  const r = reflect(desc);
  if (known) {
    for (const [name, value] of Object.entries(known(random))) {
      r.set(desc.fields.find((f) => f.name === name) as DescField, value);
    }
    return r;
  }
  const path = [...outer, desc.typeName];
  for (const member of desc.members) {
    if (member.kind === "oneof") {
      const field = chooseCase(member, options, path);
      if (field) setRandom(r, field, random, options, path);
    } else if (!options.skip?.(member)) {
      setRandom(r, member, random, options, path);
    }
  }
  return r;
}

function canEnter(desc: DescMessage, path: readonly string[], options: FillOptions): boolean {
  const seen = path.filter((name) => name === desc.typeName).length;
  return seen < (options.maxTypeRepeat ?? 2);
}

/**
 * The case a oneof takes: the one `variant` names, or the next that fits. A message case fits
 * when every type it reaches may still appear once more on the path; entering a case that only
 * just fits would leave a list of the recursive type empty one level down.
 */
function chooseCase(
  oneof: DescOneof,
  options: FillOptions,
  path: readonly string[],
): DescField | undefined {
  const cases = oneof.fields.filter((f) => !options.skip?.(f));
  const start = options.variant ?? 0;
  for (let i = 0; i < cases.length; i++) {
    const field = cases[(start + i) % cases.length] as DescField;
    if (
      field.fieldKind !== "message" ||
      reachable(field.message).every((d) => canEnter(d, path, options))
    ) {
      return field;
    }
  }
  return undefined;
}

function setRandom(
  r: ReflectMessage,
  field: DescField,
  random: Random,
  options: FillOptions,
  path: readonly string[],
): void {
  switch (field.fieldKind) {
    case "scalar":
      r.set(field, randomScalar(field.scalar, random));
      return;
    case "enum":
      r.set(field, randomEnum(field.enum, random));
      return;
    case "message":
      if (canEnter(field.message, path, options)) {
        r.set(field, fill(field.message, random, options, path));
      }
      return;
    case "list": {
      if (field.listKind === "message" && !canEnter(field.message, path, options)) return;
      const list = r.get(field) as ReflectList;
      for (let n = random.int(1, 3); n > 0; n--) {
        if (field.listKind === "message") list.add(fill(field.message, random, options, path));
        else if (field.listKind === "enum") list.add(randomEnum(field.enum, random));
        else list.add(randomScalar(field.scalar, random));
      }
      return;
    }
    case "map": {
      if (field.mapKind === "message" && !canEnter(field.message, path, options)) return;
      const map = r.get(field) as ReflectMap;
      // Keys may repeat (a bool key has one non-default value): at least one entry stays.
      for (let n = random.int(1, 3); n > 0; n--) {
        const key = randomScalar(field.mapKey, random);
        if (field.mapKind === "message") map.set(key, fill(field.message, random, options, path));
        else if (field.mapKind === "enum") map.set(key, randomEnum(field.enum, random));
        else map.set(key, randomScalar(field.scalar, random));
      }
      return;
    }
  }
}

function nonZero(make: () => number): number {
  for (;;) {
    const v = make();
    if (v !== 0) return v;
  }
}

function nonZeroBig(make: () => bigint): bigint {
  for (;;) {
    const v = make();
    if (v !== 0n) return v;
  }
}

/** A random value of a scalar type, never its zero value (64-bit ones as bigint, as reflect takes them). */
function randomScalar(type: ScalarType, random: Random): unknown {
  switch (type) {
    case ScalarType.STRING:
      return random.text();
    case ScalarType.BYTES:
      return Uint8Array.from({ length: random.int(1, 16) }, () => random.int(0, 255));
    case ScalarType.BOOL:
      return true; // the only value a dropped bool does not also have
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return nonZero(() => random.int(-(2 ** 31), 2 ** 31 - 1));
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return random.int(1, 2 ** 32 - 1);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return nonZeroBig(() => BigInt.asIntN(64, random.bits64()));
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return nonZeroBig(() => random.bits64());
    case ScalarType.FLOAT:
      return Math.fround(randomDouble(random, 6));
    case ScalarType.DOUBLE:
      return randomDouble(random, 12);
  }
}

/** A finite non-zero double of either sign, magnitudes 1e-6 to 10^maxExponent. */
function randomDouble(random: Random, maxExponent: number): number {
  const sign = random.next() < 0.5 ? -1 : 1;
  return sign * (1 + random.next() * 9) * 10 ** random.int(-6, maxExponent - 1);
}

function randomEnum(desc: DescEnum, random: Random): number {
  const values = desc.values.filter((v) => v.number !== 0);
  return values.length > 0 ? random.pick(values).number : 0;
}

const reachableCache = new Map<string, DescMessage[]>();

/** The message types reachable from `desc` through its fields, `desc` first. */
function reachable(desc: DescMessage): DescMessage[] {
  const cached = reachableCache.get(desc.typeName);
  if (cached) return cached;
  const seen = new Map<string, DescMessage>();
  const visit = (d: DescMessage) => {
    if (seen.has(d.typeName)) return;
    seen.set(d.typeName, d);
    for (const f of d.fields) if (f.message) visit(f.message);
  };
  visit(desc);
  const out = [...seen.values()];
  reachableCache.set(desc.typeName, out);
  return out;
}

/** Names (`type.field`) of every oneof case of `desc` and of the messages it reaches. */
export function oneofCases(desc: DescMessage): Set<string> {
  const out = new Set<string>();
  for (const d of reachable(desc)) {
    for (const o of d.oneofs) for (const f of o.fields) out.add(`${d.typeName}.${f.name}`);
  }
  return out;
}

/**
 * How many samples of `desc` it takes for every oneof case to be chosen once (variants 0 to
 * n - 1): the most cases any reachable oneof has; 1 when there is none.
 */
export function oneofVariants(desc: DescMessage): number {
  let n = 1;
  for (const d of reachable(desc)) for (const o of d.oneofs) n = Math.max(n, o.fields.length);
  return n;
}

/** Names (`type.field`) of the oneof cases set in `message`, nested messages included. */
export function chosenCases<Desc extends DescMessage>(
  desc: Desc,
  message: MessageShape<Desc>,
): Set<string> {
  const out = new Set<string>();
  const visit = (r: ReflectMessage) => {
    for (const o of r.oneofs) {
      const f = r.oneofCase(o);
      if (f) out.add(`${r.desc.typeName}.${f.name}`);
    }
    forEachNested(r, (_, inner) => visit(inner));
  };
  visit(reflect(desc, message));
  return out;
}

/** Calls `fn` with the path suffix and the reflection of every set nested message of `r`. */
function forEachNested(r: ReflectMessage, fn: (suffix: string, inner: ReflectMessage) => void) {
  for (const f of r.fields) {
    if (!r.isSet(f)) continue;
    if (f.fieldKind === "message") fn(f.name, r.get(f) as ReflectMessage);
    else if (f.fieldKind === "list" && f.listKind === "message") {
      for (const [i, item] of (r.get(f) as ReflectList<ReflectMessage>).entries()) {
        fn(`${f.name}[${i}]`, item);
      }
    } else if (f.fieldKind === "map" && f.mapKind === "message") {
      for (const [k, v] of r.get(f) as ReflectMap<unknown, ReflectMessage>) {
        fn(`${f.name}[${JSON.stringify(String(k))}]`, v);
      }
    }
  }
}

/**
 * Paths of the fields `message` leaves unset, nested messages included: a field with
 * implicit presence at its default, an empty list or map, an unset message, a oneof with
 * no case (named `oneof_name (oneof)`).
 */
export function missingFields<Desc extends DescMessage>(
  desc: Desc,
  message: MessageShape<Desc>,
): string[] {
  const out: string[] = [];
  const visit = (r: ReflectMessage, prefix: string) => {
    for (const member of r.members) {
      if (member.kind === "oneof") {
        if (!r.oneofCase(member)) out.push(`${prefix}${member.name} (oneof)`);
      } else if (!r.isSet(member)) {
        out.push(`${prefix}${member.name}`);
      }
    }
    forEachNested(r, (suffix, inner) => visit(inner, `${prefix}${suffix}.`));
  };
  visit(reflect(desc, message), "");
  return out;
}

/**
 * Where `actual` differs from `expected`, one line per differing field path (each prefixed
 * with `prefix`): `spec.ports[1].host_ip: "a" (expected "b")`. Empty when they are equal by
 * protobuf-es's `equals`, which decides; the descent is only there to name the field.
 */
export function diff<Desc extends DescMessage>(
  desc: Desc,
  actual: MessageShape<Desc> | undefined,
  expected: MessageShape<Desc> | undefined,
  prefix = "",
): string[] {
  if (!actual || !expected) {
    return actual === expected ? [] : [`${prefix || "(message)"}: ${actual ? "set" : "unset"}`];
  }
  if (equals(desc, actual, expected)) return [];
  const out: string[] = [];
  if (actual.$typeName !== expected.$typeName) {
    out.push(`${prefix}$typeName: ${actual.$typeName} (expected ${expected.$typeName})`);
  } else {
    diffReflect(reflect(desc, actual), reflect(desc, expected), prefix, out);
  }
  if (out.length === 0) out.push(`${prefix}(equals() says they differ; no field does)`);
  return out;
}

function diffReflect(a: ReflectMessage, b: ReflectMessage, prefix: string, out: string[]): void {
  for (const f of a.fields) {
    const path = `${prefix}${f.name}`;
    const setA = a.isSet(f);
    const setB = b.isSet(f);
    if (!setA && !setB) continue;
    if (setA !== setB) {
      out.push(
        setA
          ? `${path}: ${show(f, a.get(f))} (expected unset)`
          : `${path}: unset (expected ${show(f, b.get(f))})`,
      );
      continue;
    }
    switch (f.fieldKind) {
      case "scalar":
      case "enum":
        if (!sameValue(f, a.get(f), b.get(f))) {
          out.push(`${path}: ${show(f, a.get(f))} (expected ${show(f, b.get(f))})`);
        }
        break;
      case "message":
        diffReflect(a.get(f) as ReflectMessage, b.get(f) as ReflectMessage, `${path}.`, out);
        break;
      case "list": {
        const la = a.get(f) as ReflectList;
        const lb = b.get(f) as ReflectList;
        if (la.size !== lb.size) {
          out.push(`${path}: ${la.size} entries (expected ${lb.size})`);
          break;
        }
        for (let i = 0; i < la.size; i++) {
          diffValue(f, la.get(i), lb.get(i), `${path}[${i}]`, out);
        }
        break;
      }
      case "map": {
        const ma = a.get(f) as ReflectMap;
        const mb = b.get(f) as ReflectMap;
        for (const [k, v] of mb) {
          const at = `${path}[${JSON.stringify(String(k))}]`;
          if (!ma.has(k)) out.push(`${at}: missing (expected ${show(f, v)})`);
          else diffValue(f, ma.get(k), v, at, out);
        }
        for (const [k, v] of ma) {
          if (!mb.has(k)) out.push(`${path}[${JSON.stringify(String(k))}]: ${show(f, v)} (extra)`);
        }
        break;
      }
    }
  }
}

/** Compares one list item or map value. */
function diffValue(f: DescField, a: unknown, b: unknown, path: string, out: string[]): void {
  if (f.message) {
    diffReflect(a as ReflectMessage, b as ReflectMessage, `${path}.`, out);
  } else if (!sameValue(f, a, b)) {
    out.push(`${path}: ${show(f, a)} (expected ${show(f, b)})`);
  }
}

function sameValue(f: DescField, a: unknown, b: unknown): boolean {
  return f.scalar === undefined ? a === b : scalarEquals(f.scalar, a as never, b as never);
}

function show(f: DescField, value: unknown): string {
  if (f.enum && typeof value === "number") {
    return f.enum.values.find((v) => v.number === value)?.name ?? String(value);
  }
  if (typeof value === "string") return JSON.stringify(value);
  if (value instanceof Uint8Array) return `bytes[${value.length}]`;
  if (f.fieldKind === "list") return `${(value as ReflectList).size} entries`;
  if (f.fieldKind === "map") return `${(value as ReflectMap).size} entries`;
  if (f.message && typeof value === "object") return `a ${f.message.name}`;
  return String(value);
}

/**
 * A copy of `message` with the field at `path` cleared: field names joined by dots, list
 * items as `name[i]` (`tasks[0].spec.health_check.port`). For tests that show a check
 * notices a dropped field.
 */
export function withoutField<Desc extends DescMessage>(
  desc: Desc,
  message: MessageShape<Desc>,
  path: string,
): MessageShape<Desc> {
  const copy = clone(desc, message);
  let r = reflect(desc, copy);
  const segments = path.split(".");
  segments.forEach((segment, i) => {
    const m = /^(\w+)(?:\[(\d+)\])?$/.exec(segment);
    const field = m ? r.fields.find((f) => f.name === m[1]) : undefined;
    if (!m || !field) throw new Error(`withoutField: no field "${segment}" in ${r.desc.typeName}`);
    const last = i === segments.length - 1;
    if (last && m[2] === undefined) {
      r.clear(field);
      return;
    }
    if (!r.isSet(field)) throw new Error(`withoutField: ${segment} of ${path} is not set`);
    const next =
      m[2] === undefined ? r.get(field) : (r.get(field) as ReflectList).get(Number(m[2]));
    if (last) throw new Error(`withoutField: ${path} names a list item; name one of its fields`);
    if (!next || typeof next !== "object" || !("desc" in next)) {
      throw new Error(`withoutField: ${segment} of ${path} is not a message`);
    }
    r = next as ReflectMessage;
  });
  return copy;
}
