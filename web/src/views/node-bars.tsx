import type { Worker } from "../../../gen/cube/v1/worker_pb.js";
import { bytes, cores, percent } from "../format.js";

/**
 * One resource of a node: the solid part is what the scheduler allocated to tasks (against
 * the declared capacity), the thin line under it what the node measured in use.
 */
function Bar(props: { label: string; allocated: number; used: number | undefined; text: string }) {
  const warn = props.allocated >= 90 ? " bar-full" : "";
  return (
    <div class="bar-row" title={props.text}>
      <span class="bar-label">{props.label}</span>
      <span class={`bar${warn}`}>
        <span class="bar-alloc" style={{ width: `${props.allocated}%` }} />
        {props.used !== undefined && <span class="bar-used" style={{ width: `${props.used}%` }} />}
      </span>
      <span class="bar-text">{props.text}</span>
    </div>
  );
}

/** CPU, memory and disk bars of a worker: allocated of capacity, and measured use. */
export function NodeBars({ worker }: { worker: Worker }) {
  const cap = worker.capacity;
  const alloc = worker.allocated;
  const m = worker.metrics;
  const memUsed = m ? m.memoryTotalBytes - m.memoryAvailableBytes : undefined;
  const diskUsed = m ? m.diskTotalBytes - m.diskFreeBytes : undefined;
  return (
    <div class="bars">
      <Bar
        label="cpu"
        allocated={percent(alloc?.cpu ?? 0, cap?.cpu ?? 0)}
        used={m ? Math.min(100, m.cpuPercent) : undefined}
        text={`${cores(alloc?.cpu ?? 0)}/${cores(cap?.cpu ?? 0)} cores${m ? ` · ${Math.round(m.cpuPercent)}% busy` : ""}`}
      />
      <Bar
        label="mem"
        allocated={percent(alloc?.memoryBytes ?? 0n, cap?.memoryBytes ?? 0n)}
        used={m && memUsed !== undefined ? percent(memUsed, m.memoryTotalBytes) : undefined}
        text={`${bytes(alloc?.memoryBytes ?? 0n)}/${bytes(cap?.memoryBytes ?? 0n)}${m && memUsed !== undefined ? ` · ${bytes(memUsed)} used` : ""}`}
      />
      <Bar
        label="disk"
        allocated={percent(alloc?.diskBytes ?? 0n, cap?.diskBytes ?? 0n)}
        used={m && diskUsed !== undefined ? percent(diskUsed, m.diskTotalBytes) : undefined}
        text={`${bytes(alloc?.diskBytes ?? 0n)}/${bytes(cap?.diskBytes ?? 0n)}${m && diskUsed !== undefined ? ` · ${bytes(diskUsed)} used` : ""}`}
      />
    </div>
  );
}
