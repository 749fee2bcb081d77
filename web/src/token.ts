/**
 * The page's API token. `cube dev` prints the dashboard's address with the admin token in
 * the fragment (`/#token=…`): a fragment never leaves the browser (no request, no server
 * log, no Referer carries it). The page moves it to sessionStorage — this tab only, gone
 * when the tab closes — and takes it out of the address bar and the history at once.
 */

const KEY = "cube.token";

/**
 * Takes a token out of the address's fragment, if there is one (at start, and when a
 * `#token=…` address is opened in a tab already showing the page): stored, and gone from
 * the address bar.
 */
export function takeFragmentToken(): string | undefined {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m?.[1]) return undefined;
  const token = decodeURIComponent(m[1]);
  sessionStorage.setItem(KEY, token);
  // replaceState: the address with the token is not left in the tab's history either.
  history.replaceState(null, "", `${location.pathname}${location.search}#/`);
  return token;
}

/** Takes a token out of the address's fragment, if there is one; then the stored token. */
export function takeToken(): string | undefined {
  return takeFragmentToken() ?? sessionStorage.getItem(KEY) ?? undefined;
}

/** Keeps a token pasted into the sign-in form. */
export function storeToken(token: string): void {
  sessionStorage.setItem(KEY, token.trim());
}

/** Forgets the token (sign out, or the manager refused it). */
export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}
