import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import {
  assertTransition,
  canTransition,
  holdsResources,
  isFinished,
  stateName,
} from "../lib/task-state.js";

// The expected table, written out by hand rather than derived from TRANSITIONS, so that a
// change to the table has to be made twice: here and in lib/task-state.ts.
// Rows are the state a task is in, columns the state it moves to; "X" is legal.
const TABLE = `
  from \\ to    UNSPECIFIED  PENDING  SCHEDULED  RUNNING  COMPLETED  FAILED  UNKNOWN
  UNSPECIFIED       .          X         .         .         .        .       .
  PENDING           .          .         X         .         X        .       .
  SCHEDULED         .          X         X         X         X        X       X
  RUNNING           .          X         X         .         X        X       X
  COMPLETED         .          X         X         .         .        .       .
  FAILED            .          X         X         .         .        .       .
  UNKNOWN           .          X         X         X         X        X       .
`;

type StateName = keyof typeof TaskState & string;
const [header = "", ...rows] = TABLE.trim().split("\n");
const COLUMNS = header.trim().split(/\s+/).slice(3) as StateName[];
const EXPECTED = new Map(
  rows.map((row) => {
    const [from = "", ...cells] = row.trim().split(/\s+/);
    if (cells.length !== COLUMNS.length) throw new Error(`row ${from} has ${cells.length} cells`);
    return [from as StateName, cells.map((c) => c === "X")] as const;
  }),
);

test("the table covers every TaskState value", (t) => {
  const values = Object.keys(TaskState).filter((k) => Number.isNaN(Number(k)));
  t.deepEqual([...values].sort(), [...COLUMNS].sort());
  t.is(COLUMNS.length, 7);
});

test("the table has a row for every column", (t) => {
  t.deepEqual([...EXPECTED.keys()], COLUMNS);
});

for (const [from, cells] of EXPECTED) {
  for (const [i, to] of COLUMNS.entries()) {
    const expected = cells[i] === true;
    test(`${from} → ${to} is ${expected ? "legal" : "illegal"}`, (t) => {
      t.is(canTransition(TaskState[from], TaskState[to]), expected);
      if (expected) {
        t.notThrows(() => assertTransition(TaskState[from], TaskState[to]));
      } else {
        const error = t.throws(() => assertTransition(TaskState[from], TaskState[to]));
        t.is(error?.message, `illegal task state transition ${from} → ${to}`);
      }
    });
  }
}

test("a state number outside the enum is never a legal move", (t) => {
  t.false(canTransition(99 as TaskState, TaskState.PENDING));
  t.false(canTransition(TaskState.PENDING, 99 as TaskState));
  t.throws(() => assertTransition(99 as TaskState, TaskState.PENDING), {
    message: "illegal task state transition UNKNOWN(99) → PENDING",
  });
});

test("isFinished and holdsResources", (t) => {
  const finished = COLUMNS.filter((s) => isFinished(TaskState[s]));
  const holding = COLUMNS.filter((s) => holdsResources(TaskState[s]));
  t.deepEqual(finished, ["COMPLETED", "FAILED"]);
  t.deepEqual(holding, ["SCHEDULED", "RUNNING", "UNKNOWN"]);
});

test("stateName", (t) => {
  t.is(stateName(TaskState.RUNNING), "RUNNING");
  t.is(stateName(42 as TaskState), "UNKNOWN(42)");
});
