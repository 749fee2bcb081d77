/**
 * JoinWorker gives one worker id one credential, also when two joins of that id run at the
 * same time: on a TLS manager each signs a CSR (an await) between checking the id and making
 * the credential.
 */
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import test, { type ExecutionContext } from "ava";
import { Role, TokenService } from "../gen/cube/v1/token_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { createCsr, newKeyPair } from "../lib/tls/pki.js";
import { authorization } from "../manager/api/authorization.js";
import { ClusterTls } from "../manager/api/cluster-tls.js";
import { managerRoutes } from "../manager/api/routes.js";
import { tempDir } from "./fixtures.js";
import { harness } from "./manager-harness.js";

/** A TLS control plane behind the real auth interceptor, and a join token for it. */
async function joinBed(t: ExecutionContext) {
  const logger = createLogger("manager", "silent");
  const h = await harness(t);
  const tls = await ClusterTls.open({ dataDir: await tempDir(t), listenHost: "127.0.0.1", logger });
  t.teardown(() => tls.close());
  const auth = authorization(h.cp.tokens, h.cp.clock, logger);
  const transport = createRouterTransport(managerRoutes(h.cp, tls), {
    router: { requestGate: auth.gate, interceptors: [auth.interceptor] },
  });
  const join = h.cp.tokens.create("join", Role.WORKER, undefined, h.cp.clock.now()).secret;
  return { h, join, tokens: createClient(TokenService, transport) };
}

test("two concurrent JoinWorker calls for one worker id: exactly one gets a credential", async (t) => {
  const { h, join, tokens } = await joinBed(t);
  const csr = async () => createCsr(await newKeyPair(), "w1");
  const [a, b] = [await csr(), await csr()];
  const answers = await Promise.allSettled([
    tokens.joinWorker({ workerId: "w1", csr: a }, { headers: { authorization: `Bearer ${join}` } }),
    tokens.joinWorker({ workerId: "w1", csr: b }, { headers: { authorization: `Bearer ${join}` } }),
  ]);
  const joined = answers.filter((x) => x.status === "fulfilled");
  const refused = answers.flatMap((x) =>
    x.status === "rejected" ? [ConnectError.from(x.reason)] : [],
  );
  t.is(joined.length, 1, "one join succeeds");
  t.is(refused.length, 1, "the other is refused");
  t.is(refused[0]?.code, Code.Aborted, refused[0]?.message);
  t.regex(refused[0]?.rawMessage ?? "", /^worker "w1" is joining on another call right now/);
  const credentials = h.cp.tokens.list().filter((x) => x.workerId === "w1");
  t.is(credentials.length, 1, "one credential for w1");

  // Once it exists, a later join is refused as before; after a revoke, the id may join again.
  const again = await t.throwsAsync(
    tokens.joinWorker(
      { workerId: "w1", csr: await csr() },
      { headers: { authorization: `Bearer ${join}` } },
    ),
  );
  t.is(ConnectError.from(again).code, Code.PermissionDenied);
  h.cp.tokens.revoke(credentials[0]?.id ?? "");
  const rejoined = await tokens.joinWorker(
    { workerId: "w1", csr: await csr() },
    { headers: { authorization: `Bearer ${join}` } },
  );
  t.is(rejoined.token?.workerId, "w1");
});

test("a join whose CSR is refused frees the worker id for the next join", async (t) => {
  const { join, tokens } = await joinBed(t);
  const headers = { authorization: `Bearer ${join}` };
  const bad = await t.throwsAsync(
    tokens.joinWorker({ workerId: "w1", csr: new Uint8Array([1, 2, 3]) }, { headers }),
  );
  t.is(ConnectError.from(bad).code, Code.InvalidArgument);
  const ok = await tokens.joinWorker(
    { workerId: "w1", csr: await createCsr(await newKeyPair(), "w1") },
    { headers },
  );
  t.is(ok.token?.workerId, "w1");
});
