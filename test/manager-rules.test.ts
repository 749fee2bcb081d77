/**
 * The manager's pure rules as named table cases: restart policy, back-off, reconcile, what a
 * worker may report, and what each lifecycle move sets and resets.
 */
import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import test from "ava";
import {
  DesiredState,
  HealthStatus,
  RestartMode,
  type Task,
  TaskSchema,
  TaskState,
} from "../gen/cube/v1/task_pb.js";
import { InventoryItemSchema } from "../gen/cube/v1/worker_service_pb.js";
import {
  ended,
  failed,
  pending,
  refusedReport,
  running,
  scheduled,
  stopped,
  stopRequested,
  type TaskPatch,
} from "../manager/core/lifecycle.js";
import { reconcile } from "../manager/rules/reconcile.js";
import {
  backoffMs,
  decideRestart,
  type EndKind,
  formatAttempt,
  formatMs,
  RESTART_RESET_MS,
} from "../manager/rules/restart-policy.js";

/** The manager's clock when the restart cases are decided. */
const NOW = 1_800_000_000_000;

function task(
  mode: RestartMode,
  restartCount: number,
  policy: { max?: number; backoff?: number; maxBackoff?: number; readyForMs?: number } = {},
): Task {
  return create(TaskSchema, {
    id: "t",
    restartCount,
    readyAt: policy.readyForMs === undefined ? undefined : timestampFromMs(NOW - policy.readyForMs),
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

const { ALWAYS, ON_FAILURE } = RestartMode;
const RESET = RESTART_RESET_MS;

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
  ["always: a clean exit restarts", task(RestartMode.ALWAYS, 2), "completed", "restart 3 in 400ms"],
  ["always, max_restarts 0: no limit", task(ALWAYS, 50), "failed", "restart 51 in 10s"],
  ["always, max_restarts 3: gives up", task(ALWAYS, 3, { max: 3 }), "failed", "give-up 3"],
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

/** The decision as the cases write it: "restart 2/3 in 200ms", "give-up 3", "none". */
function decision(t0: Task, end: EndKind): string {
  const d = decideRestart(t0, end, NOW);
  return d.kind === "restart"
    ? `restart ${formatAttempt(d.attempt, d.max)} in ${formatMs(d.delayMs)}`
    : d.kind === "give-up"
      ? `give-up ${d.max}`
      : "none";
}

for (const [name, t0, end, want] of RESTART_CASES) {
  test(`restart policy: ${name}`, (t) => {
    t.is(decision(t0, end), want);
  });
}

/**
 * [ready for (ms) when it ended, restart_count, max_restarts, end, decision]: a task ready for
 * RESTART_RESET_MS starts its count and its back-off afresh.
 */
const RESET_CASES: [number, number, number, EndKind, string][] = [
  [RESET, 3, 0, "failed", "restart 1/3 in 100ms"],
  [RESET + 1, 7, 8, "unhealthy", "restart 1/8 in 100ms"],
  [RESET - 1, 3, 0, "failed", "give-up 3"],
  [12_000, 2, 5, "failed", "restart 3/5 in 400ms"],
];

for (const [readyForMs, count, max, end, want] of RESET_CASES) {
  test(`restart policy: ready ${formatMs(readyForMs)}, ${count} restarts, ${end} → ${want}`, (t) => {
    t.is(decision(task(ON_FAILURE, count, { max, readyForMs }), end), want);
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

// What a worker may report, per state the manager holds: "X" it may, "t" the transition table
// forbids it, "m" the table allows it but the move is the manager's (a restart, a move, back
// to PENDING). Same-state reports never get here (applyUpdate treats them as no move).
const REPORTS = `
  from \\ to    UNSPECIFIED  PENDING  SCHEDULED  RUNNING  COMPLETED  FAILED  UNKNOWN
  UNSPECIFIED       t          m         t         t         t        t       t
  PENDING           t          t         m         t         m        t       t
  SCHEDULED         t          m         m         X         X        X       m
  RUNNING           t          m         m         t         X        X       m
  COMPLETED         t          m         m         t         t        t       t
  FAILED            t          m         m         t         t        t       t
  UNKNOWN           t          m         m         X         X        X       t
`;

type StateName = keyof typeof TaskState & string;
const [reportHeader = "", ...reportRows] = REPORTS.trim().split("\n");
const REPORT_COLUMNS = reportHeader.trim().split(/\s+/).slice(3) as StateName[];

test("the table of reports covers every state, both ways", (t) => {
  const names = Object.keys(TaskState).filter((k) => Number.isNaN(Number(k)));
  t.deepEqual([...REPORT_COLUMNS].sort(), [...names].sort());
  t.deepEqual(reportRows.map((r) => r.trim().split(/\s+/)[0]).sort(), [...names].sort());
});

for (const row of reportRows) {
  const [from, ...cells] = row.trim().split(/\s+/) as [StateName, ...string[]];
  if (cells.length !== REPORT_COLUMNS.length) throw new Error(`row ${from}: ${cells.length} cells`);
  for (const [i, to] of REPORT_COLUMNS.entries()) {
    const cell = cells[i];
    const want =
      cell === "X"
        ? "may report"
        : cell === "t"
          ? "not in the transition table"
          : "the manager's to decide";
    test(`a worker reporting ${from} → ${to}: ${want}`, (t) => {
      const got = refusedReport(TaskState[from], TaskState[to]);
      if (cell === "X") t.is(got, undefined);
      else if (cell === "t") t.is(got, `${from} → ${to} is not in the transition table`);
      else t.is(got, `${from} → ${to} is the manager's to decide, not a worker's to report`);
    });
  }
}

test("a worker reporting a state number outside the enum is refused as no task state", (t) => {
  t.is(refusedReport(TaskState.RUNNING, 99 as TaskState), "UNKNOWN(99) is not a task state");
});

// What each move sets and resets, applied over a task that ran once (generation 1, exit code 3,
// healthy, container and ports): the fields a move leaves out keep their values.
const ran = create(TaskSchema, {
  id: "t",
  state: TaskState.RUNNING,
  workerId: "w1",
  generation: 1n,
  containerId: "c1",
  ports: [{ containerPort: 80, hostPort: 8080 }],
  exitCode: 3,
  health: HealthStatus.HEALTHY,
  reason: "old",
  restartCount: 1,
});
const AT = 1_800_000_000_000;

const MOVES: [string, TaskPatch, Record<string, unknown>][] = [
  [
    "scheduled: the next generation, nothing observed yet",
    scheduled(ran, "w2", 2, AT),
    {
      state: TaskState.SCHEDULED,
      workerId: "w2",
      generation: 2n,
      restartCount: 2,
      containerId: "",
      ports: [],
      exitCode: undefined,
      health: HealthStatus.UNSPECIFIED,
      reason: "",
    },
  ],
  [
    "pending: off its worker, with the scheduler's reason",
    pending("0/1 workers fit", 2),
    {
      state: TaskState.PENDING,
      workerId: "",
      containerId: "",
      ports: [],
      health: HealthStatus.UNSPECIFIED,
      generation: 1n,
      reason: "0/1 workers fit",
    },
  ],
  [
    "running: started, the container and exit code kept",
    running(AT),
    { state: TaskState.RUNNING, reason: "", containerId: "c1", exitCode: 3, generation: 1n },
  ],
  [
    "ended without an exit code keeps the one it had",
    ended(TaskState.FAILED, "start failed", AT),
    { state: TaskState.FAILED, reason: "start failed", exitCode: 3 },
  ],
  [
    "ended with an exit code",
    ended(TaskState.COMPLETED, "exit code 0", AT, 0),
    { state: TaskState.COMPLETED, reason: "exit code 0", exitCode: 0 },
  ],
  [
    "stopped by the manager",
    stopped(AT),
    { state: TaskState.COMPLETED, reason: "stopped", exitCode: 3, workerId: "w1" },
  ],
  [
    "stopped as the worker saw it, with its exit code",
    stopped(timestampFromMs(AT), 137),
    { state: TaskState.COMPLETED, reason: "stopped", exitCode: 137 },
  ],
  [
    "failed by the manager",
    failed("health check failed", AT),
    { state: TaskState.FAILED, reason: "health check failed", health: HealthStatus.HEALTHY },
  ],
  [
    "stop requested: only the desired state",
    stopRequested(),
    { desiredState: DesiredState.STOPPED, state: TaskState.RUNNING },
  ],
];

for (const [name, patch, want] of MOVES) {
  test(`lifecycle: ${name}`, (t) => {
    const after: Task = { ...ran, ...patch };
    t.like(after, want);
    for (const [key, value] of Object.entries(want)) {
      if (value === undefined) t.is(after[key as keyof Task], undefined, key);
    }
    if (patch.finishedAt) t.is(timestampMs(patch.finishedAt), AT);
    if (patch.startedAt) t.is(timestampMs(patch.startedAt), AT);
  });
}
