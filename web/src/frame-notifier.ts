/**
 * Change notification at most once per animation frame. A busy cluster sends hundreds of
 * events a second; each is applied to the data at once (cheap), but the page is told — and
 * renders — once per frame, however many arrived. In a hidden tab frames stop, and so do
 * renders, while the data stays current.
 */
export class FrameNotifier {
  #listeners = new Set<() => void>();
  #scheduled = false;
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
    requestAnimationFrame(() => {
      this.#scheduled = false;
      for (const listener of this.#listeners) listener();
    });
  }
}
