/** The manager's pure rules as named table cases: restart policy, back-off, reconcile. */
import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import {
  DesiredState,
  RestartMode,
  type Task,
  TaskSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { InventoryItemSchema } from "../gen/cube/v1/worker_service_pb.js";
import { reconcile } from "../manager/rules/reconcile.js";
import {
  backoffMs,
  decideRestart,
  type EndKind,
  formatMs,
} from "../manager/rules/restart-policy.js";

function task(
  mode: RestartMode,
  restartCount: number,
  policy: { max?: number; backoff?: number; maxBackoff?: number } = {},
): Task {
  return create(TaskSchema, {
    id: "t",
    restartCount,
    spec: {
      image: "x",
      restartPolicy: {
        mode,
        maxRestarts: policy.max ?? 0,
        backoff: policy.backoff === undefined ? undefined : durationFromMs(policy.backoff),
        maxBackoff: policy.maxBackoff === undefined ? undefined : durationFromMs(policy.maxBackoff),
      },
    },
  });
}

const RESTART_CASES: [string, Task, EndKind, string][] = [
  ["never: a failure stays", task(RestartMode.NEVER, 0), "failed", "none"],
  ["unspecified means never", task(RestartMode.UNSPECIFIED, 0), "failed", "none"],
  [
    "on-failure: a failure restarts",
    task(RestartMode.ON_FAILURE, 0),
    "failed",
    "restart 1/3 in 100ms",
  ],
  [
    "on-failure: unhealthy restarts",
    task(RestartMode.ON_FAILURE, 1),
    "unhealthy",
    "restart 2/3 in 200ms",
  ],
  ["on-failure: a clean exit stays", task(RestartMode.ON_FAILURE, 0), "completed", "none"],
  [
    "always: a clean exit restarts",
    task(RestartMode.ALWAYS, 2),
    "completed",
    "restart 3/3 in 400ms",
  ],
  ["the book's limit: gives up after 3", task(RestartMode.ON_FAILURE, 3), "failed", "give-up 3"],
  ["max_restarts 2", task(RestartMode.ON_FAILURE, 2, { max: 2 }), "failed", "give-up 2"],
  [
    "back-off doubles from its base",
    task(RestartMode.ALWAYS, 3, { max: 10, backoff: 50 }),
    "failed",
    "restart 4/10 in 400ms",
  ],
  ["back-off is capped", task(RestartMode.ALWAYS, 8, { max: 10 }), "failed", "restart 9/10 in 10s"],
  [
    "max_backoff caps it lower",
    task(RestartMode.ALWAYS, 5, { max: 10, maxBackoff: 1500 }),
    "failed",
    "restart 6/10 in 1.5s",
  ],
];

for (const [name, t0, end, want] of RESTART_CASES) {
  test(`restart policy: ${name}`, (t) => {
    const d = decideRestart(t0, end);
    const got =
      d.kind === "restart"
        ? `restart ${d.attempt}/${d.max} in ${formatMs(d.delayMs)}`
        : d.kind === "give-up"
          ? `give-up ${d.max}`
          : "none";
    t.is(got, want);
  });
}

test("back-off of attempt n is base * 2^(n-1)", (t) => {
  const x = task(RestartMode.ALWAYS, 0, { backoff: 100, maxBackoff: 10_000 });
  t.deepEqual(
    [1, 2, 3, 4, 8, 9].map((n) => backoffMs(x, n)),
    [100, 200, 400, 800, 10_000, 10_000],
  );
});

const placed = (
  id: string,
  generation: bigint,
  extra: { workerId?: string; state?: TaskState; desiredState?: DesiredState } = {},
) =>
  create(TaskSchema, {
    id,
    generation,
    workerId: "w1",
    state: TaskState.RUNNING,
    desiredState: DesiredState.RUNNING,
    ...extra,
  });
const item = (taskId: string, generation: bigint, state = TaskState.RUNNING) =>
  create(InventoryItemSchema, { taskId, generation, state });

const RECONCILE_CASES: [string, Task[], ReturnType<typeof item>[], string][] = [
  [
    "a task where it should be is left alone",
    [placed("a", 1n)],
    [item("a", 1n)],
    "stop[] run[] current[a]",
  ],
  ["an unknown task is stopped", [], [item("ghost", 1n)], "stop[ghost] run[] current[]"],
  [
    "a task moved elsewhere is stopped",
    [placed("a", 2n, { workerId: "w2" })],
    [item("a", 1n)],
    "stop[a] run[] current[]",
  ],
  [
    "a task meant to stop is stopped",
    [placed("a", 1n, { desiredState: DesiredState.STOPPED })],
    [item("a", 1n)],
    "stop[a] run[] current[]",
  ],
  [
    "a container still running for a task that gave up is stopped",
    [placed("a", 1n, { state: TaskState.FAILED })],
    [item("a", 1n)],
    "stop[a] run[] current[]",
  ],
  [
    "an exited container of an ended task is kept for its logs",
    [placed("a", 1n, { state: TaskState.FAILED })],
    [item("a", 1n, TaskState.FAILED)],
    "stop[] run[] current[a]",
  ],
  ["a missing task is sent again", [placed("a", 1n)], [], "stop[] run[a] current[]"],
  [
    "an older generation of a task placed here is replaced by RUN, not STOP",
    [placed("a", 3n, { state: TaskState.SCHEDULED })],
    [item("a", 2n)],
    "stop[] run[a] current[]",
  ],
  [
    "a newer generation than the manager knows is stopped",
    [placed("a", 1n)],
    [item("a", 2n)],
    "stop[a] run[] current[]",
  ],
];

for (const [name, tasks, items, want] of RECONCILE_CASES) {
  test(`reconcile: ${name}`, (t) => {
    const byId = new Map(tasks.map((x) => [x.id, x]));
    const here = tasks.filter(
      (x) =>
        x.workerId === "w1" && (x.state === TaskState.RUNNING || x.state === TaskState.SCHEDULED),
    );
    const r = reconcile(
      "w1",
      items,
      (id) => byId.get(id),
      here.map((x) => x.id),
    );
    t.is(`stop[${r.stop.map((i) => i.taskId)}] run[${r.run}] current[${r.current}]`, want);
  });
}
