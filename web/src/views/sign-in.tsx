import { useState } from "preact/hooks";

/**
 * Asks for a token when the page has none (opened without `#token=…`) or the manager refused
 * it. A read token shows everything; stopping tasks, scaling jobs and cordoning nodes need
 * an operator token, and the manager says so when one is missing.
 */
export function SignIn(props: { refusal: string | undefined; onToken: (token: string) => void }) {
  const [value, setValue] = useState("");
  return (
    <div class="sign-in">
      <h1>cube</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (value.trim()) props.onToken(value);
        }}
      >
        <label for="token">API token</label>
        <input
          id="token"
          type="password"
          autocomplete="off"
          value={value}
          onInput={(e) => setValue((e.target as HTMLInputElement).value)}
          placeholder="paste a token"
        />
        <button type="submit">Sign in</button>
      </form>
      {props.refusal && <p class="error">The manager refused the token: {props.refusal}</p>}
      <p class="hint">
        <code>cube dev</code> prints this page's address with its admin token. Otherwise make one
        with <code>cube token create --role read --name dashboard</code> (or <code>operator</code>{" "}
        to stop tasks, scale jobs and cordon nodes). The token stays in this tab only.
      </p>
    </div>
  );
}
