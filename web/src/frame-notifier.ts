/**
 * Shortest time between two renders of one store. A busy cluster changes all the time, and
 * each render repaints the rows in view (a new task shifts every row of a newest-first
 * table): at 60 renders a second headless Chromium spent most of a core painting; at 10 it
 * looks as live to people.
 */
const MIN_RENDER_MS = 100;

/**
 * Change notification batched into animation frames. A busy cluster sends hundreds of events
 * a second; each is applied to the data at once (cheap), but the page is told — and renders
 * — in the next animation frame, at most every {@link MIN_RENDER_MS}, however many arrived.
 * In a hidden tab frames stop, and so do renders, while the data stays current.
 */
export class FrameNotifier {
  #listeners = new Set<() => void>();
  #scheduled = false;
  #lastRender = 0;
  /** Bumped on every change: a view compares it to know whether to recompute. */
  version = 0;

  /** Calls `listener` after the frames in which something changed; returns the unsubscribe. */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Something changed: listeners hear of it on the next animation frame. */
  changed(): void {
    this.version++;
    if (this.#scheduled) return;
    this.#scheduled = true;
    const render = () =>
      requestAnimationFrame(() => {
        this.#scheduled = false;
        this.#lastRender = performance.now();
        for (const listener of this.#listeners) listener();
      });
    const wait = this.#lastRender + MIN_RENDER_MS - performance.now();
    if (wait > 0) setTimeout(render, wait);
    else render();
  }
}
