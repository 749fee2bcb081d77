import { useEffect, useMemo, useState } from "preact/hooks";
import { href, type Route, useRoute, useStore } from "../hooks.js";
import type { LinkState } from "../live-stream.js";
import { Session } from "../session.js";
import { forgetToken, storeToken, takeFragmentToken, takeToken } from "../token.js";
import { JobDetail, JobsView } from "./jobs-view.js";
import { NodesView } from "./nodes-view.js";
import { Overview } from "./overview.js";
import { SignIn } from "./sign-in.js";
import { TaskDetail } from "./task-detail.js";
import { TasksView } from "./tasks-view.js";

/** The page: the sign-in form until there is a token, then the dashboard. */
export function App() {
  const [token, setToken] = useState(takeToken);
  const [refusal, setRefusal] = useState<string | undefined>();
  const session = useMemo(
    () =>
      token
        ? new Session(token, (why) => {
            // The manager refused the token (revoked, expired, mistyped): ask for another.
            forgetToken();
            setRefusal(why);
            setToken(undefined);
          })
        : undefined,
    [token],
  );
  useEffect(() => session?.start(), [session]);
  // A `#token=…` address opened in this tab later (only the fragment changes, so the page
  // does not load again): sign in with it, and take it out of the address.
  useEffect(() => {
    const onHash = () => {
      const fresh = takeFragmentToken();
      if (fresh === undefined) return;
      setRefusal(undefined);
      setToken(fresh);
    };
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  if (!session) {
    return (
      <SignIn
        refusal={refusal}
        onToken={(t) => {
          storeToken(t);
          setRefusal(undefined);
          setToken(t.trim());
        }}
      />
    );
  }
  return (
    <Dashboard
      session={session}
      onSignOut={() => {
        forgetToken();
        setToken(undefined);
      }}
    />
  );
}

const NAV: readonly { route: Route; label: string }[] = [
  { route: { view: "overview" }, label: "Overview" },
  { route: { view: "tasks" }, label: "Tasks" },
  { route: { view: "nodes" }, label: "Nodes" },
  { route: { view: "jobs" }, label: "Jobs" },
];

function Dashboard({ session, onSignOut }: { session: Session; onSignOut: () => void }) {
  const route = useRoute();
  useStore(session.tasks);
  useStore(session.workers);
  useStore(session.jobs);
  const section = route.view === "task" ? "tasks" : route.view === "job" ? "jobs" : route.view;
  return (
    <div class="layout">
      <header class="top">
        <a class="brand" href="#/">
          cube
        </a>
        <nav>
          {NAV.map((n) => (
            <a key={n.label} href={href(n.route)} class={section === n.route.view ? "active" : ""}>
              {n.label}
            </a>
          ))}
        </nav>
        <Link
          tasks={session.tasks.link}
          workers={session.workers.link}
          // The jobs watch runs while a jobs page is open: then it counts too.
          jobs={section === "jobs" ? session.jobs.link : undefined}
        />
        <button type="button" class="quiet" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main>
        {route.view === "overview" && <Overview session={session} />}
        {route.view === "tasks" && <TasksView session={session} state={route.state} />}
        {route.view === "task" && <TaskDetail session={session} id={route.id} />}
        {route.view === "nodes" && <NodesView session={session} />}
        {route.view === "jobs" && <JobsView session={session} />}
        {route.view === "job" && <JobDetail session={session} name={route.name} />}
      </main>
    </div>
  );
}

/** Whether the page is live: its watches open, or what is wrong and when it tries again. */
function Link({
  tasks,
  workers,
  jobs,
}: {
  tasks: LinkState;
  workers: LinkState;
  jobs?: LinkState | undefined;
}) {
  const worst = [tasks, workers, jobs].find((s) => s !== undefined && s.kind !== "live");
  if (!worst) {
    return (
      <span class="link link-live" data-testid="link">
        live
      </span>
    );
  }
  const text =
    worst.kind === "connecting"
      ? "connecting…"
      : worst.kind === "retrying"
        ? `reconnecting in ${(worst.inMs / 1000).toFixed(1)} s (${worst.error})`
        : `stopped${worst.error ? `: ${worst.error}` : ""}`;
  return (
    <span class="link link-down" data-testid="link" title={text}>
      {text}
    </span>
  );
}
