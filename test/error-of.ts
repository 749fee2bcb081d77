import { ConnectError } from "@connectrpc/connect";

/** The ConnectError a call failed with; throws when it did not fail. */
export async function errorOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}
