import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import type { UsagePoint } from "../worker-store.js";

/** Samples are put in buckets this long, so nodes sampled at different instants line up. */
const BUCKET_SECONDS = 5;

/**
 * The cluster's usage over time, in percent: CPU, memory and disk, each the mean over the
 * nodes that reported in a bucket. One line per resource, not per node, so the chart reads
 * the same with 2 nodes or 200.
 */
export function clusterUsage(
  history: ReadonlyMap<string, readonly UsagePoint[]>,
): uPlot.AlignedData {
  const buckets = new Map<number, { cpu: number; memory: number; disk: number; n: number }>();
  for (const points of history.values()) {
    for (const p of points) {
      const t = Math.floor(p.t / BUCKET_SECONDS) * BUCKET_SECONDS;
      const b = buckets.get(t) ?? { cpu: 0, memory: 0, disk: 0, n: 0 };
      b.cpu += p.cpu;
      b.memory += p.memory;
      b.disk += p.disk;
      b.n++;
      buckets.set(t, b);
    }
  }
  const xs = [...buckets.keys()].sort((a, b) => a - b);
  const mean = (key: "cpu" | "memory" | "disk") =>
    xs.map((t) => {
      const b = buckets.get(t) as { cpu: number; memory: number; disk: number; n: number };
      return Math.round((b[key] / b.n) * 10) / 10;
    });
  return [xs, mean("cpu"), mean("memory"), mean("disk")];
}

/** A uPlot chart of {@link clusterUsage}, redrawn when `data` changes, as wide as its box. */
export function UsageChart({ data }: { data: uPlot.AlignedData }) {
  const box = useRef<HTMLDivElement>(null);
  const chart = useRef<uPlot | null>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const plot = new uPlot(
      {
        width: Math.max(200, el.clientWidth),
        height: 180,
        scales: {
          // At least the last minute: a chart of the first few samples would show seconds
          // split into milliseconds.
          x: { time: true, range: (_u, min, max) => [Math.min(min, max - 60), max] },
          y: { range: [0, 100] },
        },
        axes: [
          {
            values: (_u, ticks) =>
              ticks.map((t) => new Date(t * 1000).toLocaleTimeString(undefined, { hour12: false })),
          },
          { values: (_u, ticks) => ticks.map((v) => `${v}%`), size: 48 },
        ],
        series: [
          {},
          {
            label: "CPU",
            stroke: "#2563eb",
            width: 2,
            value: (_u, v) => (v == null ? "–" : `${v}%`),
          },
          {
            label: "Memory",
            stroke: "#16a34a",
            width: 2,
            value: (_u, v) => (v == null ? "–" : `${v}%`),
          },
          {
            label: "Disk",
            stroke: "#d97706",
            width: 2,
            value: (_u, v) => (v == null ? "–" : `${v}%`),
          },
        ],
        legend: { live: false },
        cursor: { drag: { x: false, y: false } },
      },
      [[], [], [], []],
      el,
    );
    chart.current = plot;
    const resize = new ResizeObserver(() =>
      plot.setSize({ width: Math.max(200, el.clientWidth), height: 180 }),
    );
    resize.observe(el);
    return () => {
      resize.disconnect();
      plot.destroy();
      chart.current = null;
    };
  }, []);
  useEffect(() => {
    chart.current?.setData(data);
  }, [data]);
  return <div class="chart" ref={box} />;
}
