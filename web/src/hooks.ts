/** Small Preact hooks shared by the views. */
import { useEffect, useState } from "preact/hooks";
import type { FrameNotifier } from "./frame-notifier.js";

/** Re-renders the component after each frame in which `store` changed; returns its version. */
export function useStore(store: FrameNotifier): number {
  const [, setVersion] = useState(store.version);
  useEffect(() => store.subscribe(() => setVersion(store.version)), [store]);
  return store.version;
}

/** The time, refreshed every `everyMs`: ages ("3s", "4m") move on without any event. */
export function useNow(everyMs = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}

/** The views a hash address can name. */
export type Route =
  | { readonly view: "overview" }
  | { readonly view: "tasks"; readonly state?: string }
  | { readonly view: "task"; readonly id: string }
  | { readonly view: "nodes" }
  | { readonly view: "jobs" }
  | { readonly view: "job"; readonly name: string };

/**
 * Reads a route from a hash: "#/tasks/abc" → the task abc, "#/tasks?state=PENDING" → the
 * pending tasks. Unknown addresses: the overview.
 */
export function parseRoute(hash: string): Route {
  const [path = "", query = ""] = hash.replace(/^#\/?/, "").split("?", 2);
  const parts = path.split("/").map(decodeURIComponent);
  switch (parts[0]) {
    case "tasks": {
      if (parts[1]) return { view: "task", id: parts[1] };
      const state = new URLSearchParams(query).get("state");
      return state ? { view: "tasks", state } : { view: "tasks" };
    }
    case "nodes":
      return { view: "nodes" };
    case "jobs":
      return parts[1] ? { view: "job", name: parts[1] } : { view: "jobs" };
    default:
      return { view: "overview" };
  }
}

/** The hash address of a route (for links). */
export function href(route: Route): string {
  switch (route.view) {
    case "task":
      return `#/tasks/${encodeURIComponent(route.id)}`;
    case "job":
      return `#/jobs/${encodeURIComponent(route.name)}`;
    case "overview":
      return "#/";
    case "tasks":
      return route.state ? `#/tasks?state=${route.state}` : "#/tasks";
    default:
      return `#/${route.view}`;
  }
}

/** The route of the address bar, following its changes. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(location.hash));
    addEventListener("hashchange", onChange);
    return () => removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
