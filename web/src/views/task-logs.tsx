import { ConnectError } from "@connectrpc/connect";
import { useEffect, useRef, useState } from "preact/hooks";
import { LogStream } from "../../../gen/cube/v1/task_service_pb.js";
import { LogResume } from "../../../lib/log-resume.js";
import { why } from "../api.js";
import { isFatal } from "../live-stream.js";
import type { Session } from "../session.js";

/** Lines kept on the page: a chatty container must not fill the tab's memory. */
const MAX_LINES = 2000;
/** Lines asked for when the stream opens. */
const TAIL = 500;
/** Pause before following again after a drop. */
const RETRY_MS = 1000;

interface Line {
  readonly n: number;
  readonly err: boolean;
  readonly text: string;
}

/** What one container's followed log has shown: kept through a cut so the view goes on. */
interface Followed {
  readonly resume: LogResume;
  readonly decoders: { readonly out: TextDecoder; readonly err: TextDecoder };
  /** A line begun but not ended, per stream: finished by the next chunk of that stream. */
  readonly partial: { out: string; err: string };
  n: number;
}

function followed(): Followed {
  return {
    resume: new LogResume(),
    decoders: { out: new TextDecoder(), err: new TextDecoder() },
    partial: { out: "", err: "" },
    n: 0,
  };
}

/**
 * A task's output, followed (TaskLogs with follow): the last lines, then each new one as the
 * container writes it. The view stays at the bottom unless scrolled up. A dropped stream (the
 * manager or the worker restarting) is followed again from where it stopped, by the chunks'
 * stamps, with no line twice; a new container (a restart, a move) starts the view again.
 */
export function TaskLogs({
  session,
  id,
  container,
}: {
  session: Session;
  id: string;
  container: string;
}) {
  const [lines, setLines] = useState<readonly Line[]>([]);
  const [status, setStatus] = useState<string>("connecting…");
  const [attempt, setAttempt] = useState(0);
  const box = useRef<HTMLPreElement>(null);
  const stick = useRef(true);
  const shown = useRef<Followed>(followed());
  // Declared before the stream's effect, so it runs first when the container changes.
  useEffect(() => {
    shown.current = followed();
    setLines([]);
  }, [id, container]);
  useEffect(() => {
    const abort = new AbortController();
    const follow = shown.current;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let pending: Line[] = [];
    let frame = 0;
    // Lines are added once per frame, however many chunks came in it.
    const flush = () => {
      frame = 0;
      const add = pending;
      pending = [];
      setLines((old) => {
        const all = old.concat(add);
        return all.length > MAX_LINES ? all.slice(all.length - MAX_LINES) : all;
      });
    };
    const { resume, decoders, partial } = follow;
    // After a drop: from shortly before the last chunk shown, dropping what was shown.
    const since = resume.since;
    resume.reopen();
    setStatus(since ? "following again…" : "connecting…");
    (async () => {
      for await (const chunk of session.api.tasks.taskLogs(
        since ? { id, follow: true, since } : { id, follow: true, tail: TAIL },
        { signal: abort.signal },
      )) {
        setStatus("following");
        if (!resume.take(chunk)) continue;
        const which = chunk.stream === LogStream.STDERR ? "err" : "out";
        const text = partial[which] + decoders[which].decode(chunk.data, { stream: true });
        const parts = text.split("\n");
        partial[which] = parts.pop() ?? "";
        for (const part of parts) pending.push({ n: follow.n++, err: which === "err", text: part });
        if (pending.length > 0 && frame === 0) frame = requestAnimationFrame(flush);
      }
      for (const which of ["out", "err"] as const) {
        if (partial[which])
          pending.push({ n: follow.n++, err: which === "err", text: partial[which] });
        partial[which] = "";
      }
      flush();
      setStatus("ended: the container is gone");
    })().catch((e: unknown) => {
      if (abort.signal.aborted) return;
      if (frame) cancelAnimationFrame(frame);
      if (pending.length > 0) flush();
      const error = ConnectError.from(e);
      if (isFatal(error)) {
        setStatus(`refused: ${why(error)}`);
        return;
      }
      // A dropped connection (the manager restarting, the network changing): follow again
      // after a pause; what is shown stays.
      setStatus(`interrupted: ${why(error)}; following again…`);
      retry = setTimeout(() => setAttempt((a) => a + 1), RETRY_MS);
    });
    return () => {
      abort.abort();
      clearTimeout(retry);
      if (frame) cancelAnimationFrame(frame);
    };
  }, [id, container, attempt, session]);
  useEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines]);
  return (
    <div>
      <div class="toolbar">
        <span class="muted" data-testid="logs-status">
          {status}
        </span>
        {(status.startsWith("ended") || status.startsWith("refused")) && (
          <button type="button" class="quiet" onClick={() => setAttempt((a) => a + 1)}>
            Follow again
          </button>
        )}
      </div>
      <pre
        class="logs"
        ref={box}
        data-testid="logs"
        onScroll={(e) => {
          const el = e.target as HTMLPreElement;
          stick.current = el.scrollTop + el.clientHeight >= el.scrollHeight - 4;
        }}
      >
        {lines.map((l) => (
          <div key={l.n} class={l.err ? "stderr" : undefined}>
            {l.text}
          </div>
        ))}
      </pre>
    </div>
  );
}
