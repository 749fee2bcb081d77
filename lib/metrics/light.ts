/**
 * A counter and a histogram for hot paths, registered in a prom-client {@link Registry} like
 * its own metrics. prom-client's Histogram allocates a label object and builds a hash string
 * on every observe (~120–200 ns); these touch a number and a typed array (~10 ns), because
 * the manager observes once per placement, and at ~27,000 placements/s the young generation
 * is what limits it. They take no labels, or one label whose values are all known up front.
 */
import type { Registry } from "prom-client";

/** One value line as prom-client's registry formats it. */
interface Sample {
  readonly metricName?: string;
  readonly labels: Record<string, string | number>;
  readonly value: number;
}

/** What prom-client's registry reads of a metric: its name, and get() at each scrape. */
interface Collectable {
  readonly name: string;
  get(): Promise<{
    name: string;
    help: string;
    type: "counter" | "histogram";
    aggregator: "sum";
    values: Sample[];
  }>;
}

function register(registry: Registry, metric: Collectable): void {
  // The registry keeps any object with a name and get() (it calls nothing else on it); its
  // types only name prom-client's own classes.
  registry.registerMetric(metric as unknown as Parameters<Registry["registerMetric"]>[0]);
}

/** A monotonically increasing count (name ends in `_total`). */
export class LightCounter implements Collectable {
  readonly name: string;
  readonly #help: string;
  #value = 0;

  constructor(registry: Registry, name: string, help: string) {
    this.name = name;
    this.#help = help;
    register(registry, this);
  }

  /** Adds `n` (default 1). */
  inc(n = 1): void {
    this.#value += n;
  }

  /** The count so far. */
  get value(): number {
    return this.#value;
  }

  async get() {
    return {
      name: this.name,
      help: this.#help,
      type: "counter" as const,
      aggregator: "sum" as const,
      values: [{ labels: {}, value: this.#value }],
    };
  }
}

/** The observations of one label value: counts per bucket (not cumulative), sum, count. */
export class HistogramSeries {
  readonly #bounds: readonly number[];
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last one above every bound. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  /** Records one observation (seconds, bytes: the metric's base unit). */
  observe(value: number): void {
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]) i++;
    this.counts[i]++;
    this.sum += value;
    this.count++;
  }
}

/** What a {@link LightHistogram} is made of. */
export interface LightHistogramOptions<V extends string> {
  /** Full name with its unit: `cube_store_commit_duration_seconds`. */
  readonly name: string;
  readonly help: string;
  /** Upper bounds, ascending; +Inf is added. */
  readonly buckets: readonly number[];
  /** One label and every value it takes, each series made up front (and shown from 0). */
  readonly label?: { readonly name: string; readonly values: readonly V[] };
}

/** A histogram with no label, or one label of known values. */
export class LightHistogram<V extends string = never> implements Collectable {
  readonly name: string;
  readonly #help: string;
  readonly #bounds: readonly number[];
  readonly #labelName: string | undefined;
  readonly #series = new Map<string, HistogramSeries>();

  constructor(registry: Registry, options: LightHistogramOptions<V>) {
    this.name = options.name;
    this.#help = options.help;
    this.#bounds = [...options.buckets].sort((a, b) => a - b);
    this.#labelName = options.label?.name;
    for (const v of options.label?.values ?? [""]) {
      this.#series.set(v, new HistogramSeries(this.#bounds));
    }
    register(registry, this);
  }

  /** The series of one label value (keep it: observing through it costs no lookup). */
  series(value: V): HistogramSeries {
    const s = this.#series.get(value);
    if (!s) throw new Error(`${this.name}: ${this.#labelName} "${value}" was not declared`);
    return s;
  }

  /** Records one observation; only for a histogram without a label. */
  observe(value: number): void {
    (this.#series.get("") as HistogramSeries).observe(value);
  }

  async get() {
    const values: Sample[] = [];
    for (const [labelValue, s] of this.#series) {
      const labels: Record<string, string> =
        this.#labelName === undefined ? {} : { [this.#labelName]: labelValue };
      let cumulative = 0;
      for (let i = 0; i <= this.#bounds.length; i++) {
        cumulative += s.counts[i];
        const le = i < this.#bounds.length ? String(this.#bounds[i]) : "+Inf";
        values.push({
          metricName: `${this.name}_bucket`,
          labels: { ...labels, le },
          value: cumulative,
        });
      }
      values.push({ metricName: `${this.name}_sum`, labels, value: s.sum });
      values.push({ metricName: `${this.name}_count`, labels, value: s.count });
    }
    return {
      name: this.name,
      help: this.#help,
      type: "histogram" as const,
      aggregator: "sum" as const,
      values,
    };
  }
}
