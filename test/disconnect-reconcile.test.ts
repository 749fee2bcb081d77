/**
 * The inventory reconcile after a lost worker comes back, as named table cases of the pure
 * function (manager/rules/reconcile.ts): contact restored, the copy that was replaced kept or
 * stopped (exactly one copy survives), and why.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import test from "ava";
import {
  DesiredState,
  HealthStatus,
  type Task,
  TaskSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { type InventoryItem, InventoryItemSchema } from "../gen/cube/v1/worker_service_pb.js";
import { reconcile } from "../manager/rules/reconcile.js";

/** A task as the manager holds it; on w1, RUNNING, desired RUNNING unless told otherwise. */
const task = (id: string, generation: bigint, extra: MessageInitShape<typeof TaskSchema> = {}) =>
  create(TaskSchema, {
    id,
    generation,
    workerId: "w1",
    state: TaskState.RUNNING,
    desiredState: DesiredState.RUNNING,
    ...extra,
  });

/** What w1 holds of a task. */
const item = (taskId: string, generation: bigint, state = TaskState.RUNNING) =>
  create(InventoryItemSchema, {
    taskId,
    generation,
    state,
    containerId: `c-${taskId}-${generation}`,
  });

const checked = { spec: { image: "x", healthCheck: { path: "/health" } } };

interface Case {
  /** The tasks as the manager holds them. */
  readonly tasks: Task[];
  /** What w1 (the worker that comes back) holds. */
  readonly items: InventoryItem[];
  /** The plan, one list per line: "restore[a] reclaim[] duplicates[] stop[] run[] current[]". */
  readonly want: string;
  /** The words of each reclaim or duplicate decision, by task. */
  readonly because?: Record<string, string>;
  /** reconcile's keepReturning: the worker's agent restarted within the restart grace. */
  readonly keepReturning?: string;
}

const CASES: Record<string, Case> = {
  "an UNKNOWN task whose copy runs at its generation is restored": {
    tasks: [task("a", 1n, { state: TaskState.UNKNOWN })],
    items: [item("a", 1n)],
    want: "restore[a] reclaim[] duplicates[] stop[] run[] current[]",
  },
  "an UNKNOWN task still starting is restored too (to SCHEDULED, the item says)": {
    tasks: [task("a", 1n, { state: TaskState.UNKNOWN })],
    items: [item("a", 1n, TaskState.SCHEDULED)],
    want: "restore[a] reclaim[] duplicates[] stop[] run[] current[]",
  },
  "an UNKNOWN task that ended while contact was lost is restored (its end then applies)": {
    tasks: [task("a", 1n, { state: TaskState.UNKNOWN })],
    items: [item("a", 1n, TaskState.FAILED)],
    want: "restore[a] reclaim[] duplicates[] stop[] run[] current[]",
  },
  "an UNKNOWN task the worker does not hold is sent again": {
    tasks: [task("a", 1n, { state: TaskState.UNKNOWN })],
    items: [],
    want: "restore[] reclaim[] duplicates[] stop[] run[a] current[]",
  },
  "an UNKNOWN task held at an older generation gets its RUN again": {
    tasks: [task("a", 2n, { state: TaskState.UNKNOWN })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[] duplicates[] stop[] run[a] current[]",
  },
  "an UNKNOWN task held at a newer generation than the manager knows is stopped": {
    tasks: [task("a", 1n, { state: TaskState.UNKNOWN })],
    items: [item("a", 2n)],
    want: "restore[] reclaim[] duplicates[] stop[a] run[] current[]",
  },
  "an UNKNOWN task stopped meanwhile is stopped, not restored": {
    tasks: [task("a", 1n, { state: TaskState.UNKNOWN, desiredState: DesiredState.STOPPED })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[] duplicates[] stop[a] run[] current[]",
  },
  "replaced, and the replacement RUNNING (no health check): the returning copy is stopped": {
    tasks: [task("a", 2n, { workerId: "w2" })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[] duplicates[a] stop[a] run[] current[]",
    because: { a: "the replacement is RUNNING" },
  },
  "replaced, and the replacement RUNNING and healthy: the returning copy is stopped": {
    tasks: [task("a", 2n, { workerId: "w2", health: HealthStatus.HEALTHY, ...checked })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[] duplicates[a] stop[a] run[] current[]",
    because: { a: "the replacement is RUNNING and healthy" },
  },
  "replaced, the replacement RUNNING but not healthy yet: the returning copy is kept": {
    tasks: [task("a", 2n, { workerId: "w2", ...checked })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[a] duplicates[] stop[] run[] current[]",
    because: { a: "the replacement is RUNNING but not healthy yet" },
  },
  "replaced, the replacement unhealthy: the returning copy is kept": {
    tasks: [task("a", 2n, { workerId: "w2", health: HealthStatus.UNHEALTHY, ...checked })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[a] duplicates[] stop[] run[] current[]",
    because: { a: "the replacement is RUNNING but not healthy yet" },
  },
  "replaced, the replacement still starting (SCHEDULED): the returning copy is kept": {
    tasks: [task("a", 2n, { workerId: "w2", state: TaskState.SCHEDULED })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[a] duplicates[] stop[] run[] current[]",
    because: { a: "no replacement runs (it is SCHEDULED)" },
  },
  "replaced, but no worker fitted (PENDING): the returning copy is kept": {
    tasks: [task("a", 1n, { workerId: "", state: TaskState.PENDING })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[a] duplicates[] stop[] run[] current[]",
    because: { a: "no replacement could be placed (PENDING)" },
  },
  "replaced, and the replacement FAILED: the returning copy is kept": {
    tasks: [task("a", 2n, { workerId: "w2", state: TaskState.FAILED })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[a] duplicates[] stop[] run[] current[]",
    because: { a: "no replacement runs (it is FAILED)" },
  },
  "replaced, and the replacement's worker lost too (UNKNOWN): the returning copy is kept": {
    tasks: [task("a", 2n, { workerId: "w2", state: TaskState.UNKNOWN })],
    items: [item("a", 1n)],
    want: "restore[] reclaim[a] duplicates[] stop[] run[] current[]",
    because: { a: "no replacement runs (it is UNKNOWN)" },
  },
  "replaced, but the returning copy is not running (it ended): it is stopped, never kept": {
    tasks: [task("a", 2n, { workerId: "w2", state: TaskState.SCHEDULED })],
    items: [item("a", 1n, TaskState.FAILED)],
    want: "restore[] reclaim[] duplicates[] stop[a] run[] current[]",
  },
  "replaced, then stopped on request: the returning copy is stopped, never kept": {
    tasks: [
      task("a", 2n, {
        workerId: "w2",
        state: TaskState.SCHEDULED,
        desiredState: DesiredState.STOPPED,
      }),
    ],
    items: [item("a", 1n)],
    want: "restore[] reclaim[] duplicates[] stop[a] run[] current[]",
  },
  "a copy at the very generation the task runs elsewhere (a stale copy after a reclaim) is stopped":
    {
      tasks: [task("a", 2n, { workerId: "w2", state: TaskState.SCHEDULED })],
      items: [item("a", 2n)],
      want: "restore[] reclaim[] duplicates[] stop[a] run[] current[]",
    },
  "an agent that restarted keeps its running copies even over RUNNING, healthy replacements": {
    tasks: [
      task("a", 2n, { workerId: "w2" }),
      task("b", 2n, { workerId: "w2", ...checked, health: HealthStatus.HEALTHY }),
      task("c", 2n, { workerId: "w2", state: TaskState.SCHEDULED }),
      task("d", 2n, { workerId: "w2", desiredState: DesiredState.STOPPED }),
    ],
    items: [item("a", 1n), item("b", 1n), item("c", 1n), item("d", 1n), item("e", 1n)],
    keepReturning: "its agent restarted",
    want: "restore[] reclaim[a,b,c] duplicates[] stop[d,e] run[] current[]",
    because: { a: "its agent restarted", b: "its agent restarted" },
  },
  "a READY worker's own tasks are left alone among the lost ones": {
    tasks: [
      task("a", 1n),
      task("b", 3n, { state: TaskState.UNKNOWN }),
      task("c", 2n, { workerId: "w2" }),
      task("d", 2n, { workerId: "w2", state: TaskState.SCHEDULED }),
    ],
    items: [item("a", 1n), item("b", 3n), item("c", 1n), item("d", 1n), item("ghost", 1n)],
    want: "restore[b] reclaim[d] duplicates[c] stop[c,ghost] run[] current[a]",
  },
};

for (const [name, c] of Object.entries(CASES)) {
  test(`reconcile after contact is back: ${name}`, (t) => {
    const byId = new Map(c.tasks.map((x) => [x.id, x]));
    const placedHere = c.tasks
      .filter((x) => x.workerId === "w1" && x.state !== TaskState.PENDING)
      .map((x) => x.id);
    const r = reconcile("w1", c.items, (id) => byId.get(id), placedHere, c.keepReturning);
    const ids = (list: readonly { taskId: string }[]) => list.map((i) => i.taskId).join(",");
    t.is(
      [
        `restore[${ids(r.restore)}]`,
        `reclaim[${ids(r.reclaim.map((d) => d.item))}]`,
        `duplicates[${ids(r.duplicates.map((d) => d.item))}]`,
        `stop[${ids(r.stop)}]`,
        `run[${r.run}]`,
        `current[${r.current}]`,
      ].join(" "),
      c.want,
    );
    for (const [id, because] of Object.entries(c.because ?? {})) {
      const decision = [...r.reclaim, ...r.duplicates].find((d) => d.item.taskId === id);
      t.is(decision?.because, because, id);
    }
    // Exactly one copy survives: no task is both kept here and stopped here.
    const kept = new Set([
      ...r.current,
      ...ids(r.restore).split(","),
      ...ids(r.reclaim.map((d) => d.item)).split(","),
    ]);
    for (const stopped of r.stop) t.false(kept.has(stopped.taskId), stopped.taskId);
  });
}
