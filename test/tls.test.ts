/**
 * TLS and worker certificates (issue 15, point 1), over real processes, real TLS and real
 * sockets: a TLS manager with the cluster's own CA, a worker that joins with a join token
 * carrying the CA's digest and gets a certificate naming it, runs a task (Docker), and is the
 * only one its certificate lets speak for it; the CLI, buf curl, curl and Python's grpcio
 * over TLS with a token; plaintext refused on the TLS port; the worker's own port answering
 * its manager alone; certificates renewed before they expire.
 */
import { execFile } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { readFile, stat, writeFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import test from "ava";
import { TaskState } from "../gen/cube/v1/task_pb.js";
import { TaskService } from "../gen/cube/v1/task_service_pb.js";
import { Role, TokenService } from "../gen/cube/v1/token_service_pb.js";
import { WorkerStatus } from "../gen/cube/v1/worker_pb.js";
import { WorkerService } from "../gen/cube/v1/worker_service_pb.js";
import { createLogger } from "../lib/logger.js";
import { grpcTransport } from "../lib/rpc/client.js";
import { PEER_CERTIFICATE, type PeerCertificate } from "../lib/rpc/peer.js";
import {
  type ClientTls,
  joinToken,
  MANAGER_URI,
  parseJoinToken,
  sanUris,
  workerOf,
  workerUri,
} from "../lib/tls/identity.js";
import {
  certDerToPem,
  createCa,
  createCsr,
  fingerprint,
  issueCertificate,
  keyToPem,
  newKeyPair,
  validity,
} from "../lib/tls/pki.js";
import { checkCertificate } from "../manager/api/authorization.js";
import { ClusterTls } from "../manager/api/cluster-tls.js";
import { readToken } from "../manager/index.js";
import { cube, cubeEnv, freePort } from "./cli-harness.js";
import { HTTP_IMAGE, requireDocker, startTestManager, tempDir } from "./fixtures.js";
import { eventually } from "./manager-harness.js";
import { Cluster } from "./manager-process.js";

const run = promisify(execFile);

const KEY_PEM = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/;
const CERT_PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/;

/** A worker's key and certificate from its data dir (tls/worker.pem). */
async function workerPem(dir: string): Promise<{ key: string; cert: string }> {
  const pem = await readFile(join(dir, "tls", "worker.pem"), "utf8");
  return { key: KEY_PEM.exec(pem)?.[0] ?? "", cert: CERT_PEM.exec(pem)?.[0] ?? "" };
}

/** A key and a certificate naming `uri`, signed by a CA of nobody's cluster. */
async function forged(uri: string): Promise<{ key: string; cert: string }> {
  const evil = await createCa("cube cluster CA", 24 * 3600_000);
  const keys = await newKeyPair();
  const cert = await issueCertificate({
    ca: evil,
    publicKey: keys.publicKey,
    names: { commonName: "forged", uris: [uri], ips: ["127.0.0.1"] },
    validityMs: 24 * 3600_000,
  });
  return { key: await keyToPem(keys.privateKey), cert };
}

/** Opens a worker stream that registers as `workerId`; resolves with how it ended. */
async function streamAs(
  address: string,
  token: string | undefined,
  tls: ClientTls,
  workerId: string,
): Promise<"registered" | "ended" | ConnectError> {
  const workers = createClient(WorkerService, grpcTransport(address, { token, tls }));
  const answers = workers.connect(
    (async function* () {
      yield {
        message: {
          case: "register" as const,
          value: { workerId, name: "rogue", acceptsBatch: true },
        },
      };
      await new Promise((resolve) => setTimeout(resolve, 2000));
    })(),
  );
  try {
    for await (const answer of answers) {
      if (answer.message.case === "registered") return "registered";
    }
    return "ended";
  } catch (error) {
    return ConnectError.from(error);
  }
}

const codeOf = (result: unknown) => (result instanceof ConnectError ? Code[result.code] : result);

test("a TLS cluster: a worker joins with the CA's digest, runs a task, and speaks only for itself", async (t) => {
  await requireDocker();
  const dir = await tempDir(t);
  const cluster = new Cluster(t, dir, { CUBE_TLS: "1" });
  const manager = await cluster.startManager();
  const caFile = join(dir, "manager", "tls", "ca.crt");
  const ca = await readFile(caFile, "utf8");
  t.is((await stat(join(dir, "manager", "tls", "ca.key"))).mode & 0o777, 0o600);
  const join1 = joinToken(await readToken(join(dir, "manager"), "worker"), fingerprint(ca));
  const worker = await cluster.startWorker("w1", { CUBE_TOKEN: join1 });
  const admin = grpcTransport(manager.address, {
    token: manager.token,
    tls: { ca, expect: MANAGER_URI },
  });
  await eventually(async () => {
    const { worker: w } = await createClient(WorkerService, admin).getWorker({ id: worker.id });
    if (w?.status !== WorkerStatus.READY) throw new Error(`worker is ${w?.status}`);
  }, 15_000);

  // The worker made its own key, and its certificate names it, signed by the cluster's CA.
  t.is((await stat(join(dir, "w1", "tls", "worker.pem"))).mode & 0o777, 0o600);
  const own = await workerPem(join(dir, "w1"));
  const ownCert = new X509Certificate(own.cert);
  t.deepEqual(sanUris(ownCert.subjectAltName), [workerUri(worker.id)]);
  t.true(ownCert.verify(new X509Certificate(ca).publicKey));
  const days = (validity(own.cert).notAfter - Date.now()) / (24 * 3600_000);
  t.true(days > 29 && days <= 30, `a 30-day certificate, not ${days}`);

  // The CLI over TLS, finding address, token and CA in its config file.
  const config = join(dir, "config.json");
  await writeFile(
    config,
    JSON.stringify({ manager: manager.address, token: manager.token, ca: caFile }),
  );
  const env = cubeEnv({ CUBE_CONFIG: config });
  const port = await freePort();
  const ran = await cube(
    [
      "run",
      HTTP_IMAGE,
      "--name",
      "web",
      "--port",
      `${port}:80`,
      "--health-path",
      "/health",
      "--wait",
    ],
    { env },
  );
  t.is(ran.code, 0, `${ran.stderr}\n${cluster.logs().slice(-3000)}`);
  const taskId = ran.stdout.trim();
  const ps = await cube(["ps", "-o", "json"], { env });
  t.is(ps.code, 0, ps.stderr);
  t.is(JSON.parse(ps.stdout).tasks[0]?.state, "TASK_STATE_RUNNING");
  // Logs go manager → worker over mTLS: the manager presents its certificate to the worker.
  await eventually(async () => {
    const logs = await cube(["logs", "web"], { env });
    // busybox httpd logs its requests on stderr, which `cube logs` keeps on stderr.
    if (logs.code !== 0 || !/response:200/.test(logs.stderr)) {
      throw new Error(`logs: ${logs.code} ${logs.stderr}`);
    }
  }, 20_000);
  // Without the CA, the CLI cannot talk to it (and says what to do).
  const noCa = await cube(["ps"], {
    env: cubeEnv({ CUBE_MANAGER: manager.address, CUBE_TOKEN: manager.token ?? "" }),
  });
  t.not(noCa.code, 0);
  t.regex(noCa.stderr, /TLS|--ca/);

  // buf curl over TLS with a token (gRPC over h2 by ALPN; reflection over TLS too).
  const buf = await run("npx", [
    "buf",
    "curl",
    "--protocol",
    "grpc",
    "--cacert",
    caFile,
    "-H",
    `Authorization: Bearer ${manager.token}`,
    `https://${manager.address}/cube.v1.TaskService/ListTasks`,
  ]);
  t.is(JSON.parse(buf.stdout).tasks[0]?.id, taskId);
  // curl: Connect JSON over HTTP/1.1 by ALPN, and /metrics, on the same TLS port.
  const viaCurl = await run("curl", [
    "-s",
    "--http1.1",
    "--cacert",
    caFile,
    "-H",
    `Authorization: Bearer ${manager.token}`,
    "-H",
    "Content-Type: application/json",
    `https://${manager.address}/cube.v1.TaskService/ListTasks`,
    "-d",
    "{}",
  ]);
  t.is(JSON.parse(viaCurl.stdout).tasks[0]?.id, taskId);
  const metrics = await run("curl", [
    "-s",
    "--cacert",
    caFile,
    `https://${manager.address}/metrics`,
  ]);
  t.regex(metrics.stdout, /cube_tasks\{state="RUNNING"\} 1/);

  // Plaintext on the TLS port: refused (gRPC h2c and HTTP/1.1 alike).
  const plain = createClient(TaskService, grpcTransport(manager.address, { token: manager.token }));
  t.true((await plain.listTasks({}, { timeoutMs: 5000 }).catch((e) => e)) instanceof ConnectError);
  const plainCurl = await run("curl", [
    "-s",
    "-o",
    "/dev/null",
    "-w",
    "%{http_code}",
    `http://${manager.address}/metrics`,
  ]).catch((e: { stdout: string }) => e);
  t.is(plainCurl.stdout, "000", "no HTTP answer over plaintext");

  // The worker stream: the credential and the certificate must both name the worker.
  const credential = (await readFile(join(dir, "w1", "credential"), "utf8")).trim();
  const tlsWith = (pair?: { key: string; cert: string }): ClientTls => ({
    ca,
    expect: MANAGER_URI,
    ...(pair ? { key: pair.key, cert: pair.cert } : {}),
  });
  // No certificate at all.
  t.is(
    codeOf(await streamAs(manager.address, credential, tlsWith(), worker.id)),
    "Unauthenticated",
  );
  // A forged certificate (another CA) naming the real worker, with its real credential.
  const fake = await forged(workerUri(worker.id));
  t.is(
    codeOf(await streamAs(manager.address, credential, tlsWith(fake), worker.id)),
    "Unauthenticated",
  );
  // …refused whatever the call: even an admin token's ListTasks.
  const forgedAdmin = createClient(
    TaskService,
    grpcTransport(manager.address, { token: manager.token, tls: tlsWith(fake) }),
  );
  t.is(
    codeOf(await forgedAdmin.listTasks({}).catch((e) => ConnectError.from(e))),
    "Unauthenticated",
  );
  // A real certificate of another worker (a rogue that joined legitimately under its own id).
  const rogueKeys = await newKeyPair();
  const joinClient = createClient(
    TokenService,
    grpcTransport(manager.address, {
      token: parseJoinToken(join1).secret,
      tls: { ca, expect: MANAGER_URI },
    }),
  );
  const rogueJoin = await joinClient.joinWorker({
    workerId: "rogue-1",
    csr: await createCsr(rogueKeys, "rogue-1"),
  });
  const rogue = {
    key: await keyToPem(rogueKeys.privateKey),
    cert: certDerToPem(rogueJoin.certificate),
  };
  t.deepEqual(sanUris(new X509Certificate(rogue.cert).subjectAltName), [workerUri("rogue-1")]);
  // Its certificate with the real worker's credential…
  const borrowed = await streamAs(manager.address, credential, tlsWith(rogue), worker.id);
  t.is(codeOf(borrowed), "PermissionDenied");
  t.regex((borrowed as ConnectError).rawMessage, /names worker "rogue-1"/);
  // …or its own credential and certificate, registering as the real worker.
  t.is(
    codeOf(await streamAs(manager.address, rogueJoin.secret, tlsWith(rogue), worker.id)),
    "PermissionDenied",
  );
  // A join over TLS without a certificate request is refused.
  const noCsr = await joinClient
    .joinWorker({ workerId: "rogue-2" })
    .catch((e) => ConnectError.from(e));
  t.is(codeOf(noCsr), "InvalidArgument");
  // The rogue's own pair works for the rogue alone (what certificates are for).
  t.is(await streamAs(manager.address, rogueJoin.secret, tlsWith(rogue), "rogue-1"), "registered");
  // Every refusal is logged with the certificate's names.
  await eventually(() => {
    const logs = manager.logs();
    if (!/"msg":"call refused"/.test(logs) || !/client certificate refused/.test(logs)) {
      throw new Error("refusals not logged yet");
    }
  });

  // The worker's own port answers its manager alone.
  const toWorker = (pair?: { key: string; cert: string }) =>
    createClient(
      TaskService,
      grpcTransport(worker.address, {
        tls: { ca, expect: workerUri(worker.id), ...(pair ?? {}) },
      }),
    );
  const askWorker = (pair?: { key: string; cert: string }) =>
    toWorker(pair)
      .listTasks({})
      .then(() => "answered")
      .catch((e) => codeOf(ConnectError.from(e)));
  t.is(await askWorker(), "Unauthenticated", "no certificate");
  t.is(await askWorker(fake), "Unauthenticated", "a forged certificate");
  t.is(await askWorker(rogue), "PermissionDenied", "another worker's certificate");
  t.is(await askWorker(own), "PermissionDenied", "its own certificate is no manager's");
  const managerPair = {
    key: await readFile(join(dir, "manager", "tls", "manager.key"), "utf8"),
    cert: await readFile(join(dir, "manager", "tls", "manager.crt"), "utf8"),
  };
  t.is(await askWorker(managerPair), "answered", "the manager's certificate");
  const plainWorker = createClient(TaskService, grpcTransport(worker.address));
  t.true(
    (await plainWorker.listTasks({}, { timeoutMs: 5000 }).catch((e) => e)) instanceof ConnectError,
  );

  // Through all of it the real worker stayed READY with its task, never moved.
  const { worker: w } = await createClient(WorkerService, admin).getWorker({ id: worker.id });
  t.is(w?.status, WorkerStatus.READY);
  const { task } = await createClient(TaskService, admin).getTask({ id: taskId });
  t.is(task?.state, TaskState.RUNNING);
  t.is(task?.workerId, worker.id);
  t.is(task?.generation, 1n);
});

test("a join token with another CA's digest is refused by the worker; an old token works with --ca", async (t) => {
  await requireDocker();
  const dir = await tempDir(t);
  const cluster = new Cluster(t, dir, { CUBE_TLS: "1" });
  const manager = await cluster.startManager();
  const caFile = join(dir, "manager", "tls", "ca.crt");
  const ca = await readFile(caFile, "utf8");
  const secret = await readToken(join(dir, "manager"), "worker");
  const wrong = await cluster.startWorker("wrong", {
    CUBE_TOKEN: joinToken(secret, "ab".repeat(32)),
  });
  // An old token (no digest) with the CA file.
  const old = await cluster.startWorker("old", { CUBE_TOKEN: secret, CUBE_CA: caFile });
  const workers = createClient(
    WorkerService,
    grpcTransport(manager.address, { token: manager.token, tls: { ca, expect: MANAGER_URI } }),
  );
  await eventually(async () => {
    const ready = (await workers.listWorkers({})).workers.filter(
      (w) => w.status === WorkerStatus.READY,
    );
    if (ready.length !== 1) throw new Error(`${ready.length} ready`);
  }, 15_000);
  await eventually(() => {
    if (!/no CA with the join token's digest/.test(wrong.logs())) throw new Error("not yet");
  }, 15_000);
  const ids = (await workers.listWorkers({})).workers.map((w) => w.id);
  t.deepEqual(ids, [old.id], "the worker given a wrong digest never joined");
});

test("worker certificates are renewed before they expire, and a renewed worker reconnects", async (t) => {
  await requireDocker();
  const dir = await tempDir(t);
  // 30-second certificates (backdated 3 s): renewed from their 19th second on, so a worker
  // restarted once the first has expired (a restart takes seconds on a loaded machine) still
  // holds a valid renewed one.
  const cluster = new Cluster(t, dir, { CUBE_TLS: "1", CUBE_WORKER_CERT_TTL: "30000" });
  const manager = await cluster.startManager();
  const ca = await readFile(join(dir, "manager", "tls", "ca.crt"), "utf8");
  const token = joinToken(await readToken(join(dir, "manager"), "worker"), fingerprint(ca));
  const worker = await cluster.startWorker("w1", { CUBE_TOKEN: token });
  const workers = createClient(
    WorkerService,
    grpcTransport(manager.address, { token: manager.token, tls: { ca, expect: MANAGER_URI } }),
  );
  const ready = () =>
    eventually(async () => {
      const { worker: w } = await workers.getWorker({ id: worker.id });
      if (w?.status !== WorkerStatus.READY) {
        throw new Error(
          `worker is ${WorkerStatus[w?.status ?? 0]}\n${cluster.logs().slice(-4000)}`,
        );
      }
    }, 15_000);
  await ready();
  const first = await workerPem(join(dir, "w1"));
  const firstUntil = validity(first.cert).notAfter;
  // The running worker renews on its own (its stream stays up meanwhile).
  await eventually(async () => {
    const now = await workerPem(join(dir, "w1"));
    if (validity(now.cert).notAfter <= firstUntil) {
      throw new Error(`not renewed yet\n${cluster.logs().slice(-3000)}`);
    }
  }, 40_000);
  t.regex(manager.logs(), /worker certificate renewed/);
  const renewed = await workerPem(join(dir, "w1"));
  t.not(renewed.key, first.key, "a new key with each certificate");
  await ready();
  // Once the first certificate has expired, a restarted worker dials with its renewed one.
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstUntil - Date.now() + 500)));
  await cluster.workers.get("w1")?.kill9();
  await cluster.startWorker("w1", { CUBE_TOKEN: token });
  await ready();
  t.pass();
});

test("the Python grpcio client works over TLS with the CA and a token", async (t) => {
  const python = "/usr/bin/python3";
  try {
    await run(python, ["-c", "import grpc, google.protobuf"]);
  } catch {
    t.log("python3-grpcio is not installed (apt-get install -y python3-grpcio): skipped");
    t.pass();
    return;
  }
  const dir = await tempDir(t);
  const m = await startTestManager(t, { tls: true, dataDir: join(dir, "manager") });
  const caFile = m.ca?.file ?? "";
  // Message classes from a descriptor set (Debian's grpc_tools protoc 3.5 cannot compile
  // proto3 `optional`; buf can).
  const descriptors = join(dir, "cube.binpb");
  await run("npx", ["buf", "build", "--as-file-descriptor-set", "-o", descriptors]);
  const script = join(dir, "client.py");
  await writeFile(
    script,
    `import sys, json, grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
files = descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[1], "rb").read())
pool = descriptor_pool.DescriptorPool()
for f in files.file:
    pool.Add(f)
factory = message_factory.MessageFactory(pool)
def cls(name):
    return factory.GetPrototype(pool.FindMessageTypeByName(name))
address, ca, token = sys.argv[2], sys.argv[3], sys.argv[4]
creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
auth = [("authorization", "Bearer " + token)]
def method(channel, name, response):
    return channel.unary_unary("/cube.v1.TaskService/" + name,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=cls(response).FromString)
out = {}
with grpc.secure_channel(address, creds) as channel:
    run = cls("cube.v1.RunTaskRequest")(id="from-python")
    run.spec.image = "cube/httpd:local"
    out["run"] = method(channel, "RunTask", "cube.v1.RunTaskResponse")(run, metadata=auth).task.id
    list_tasks = method(channel, "ListTasks", "cube.v1.ListTasksResponse")
    out["listed"] = [task.id for task in list_tasks(cls("cube.v1.ListTasksRequest")(), metadata=auth).tasks]
    try:
        list_tasks(cls("cube.v1.ListTasksRequest")())
        out["anonymous"] = "answered"
    except grpc.RpcError as e:
        out["anonymous"] = e.code().name
print(json.dumps(out))
`,
  );
  const { stdout } = await run(python, [
    script,
    descriptors,
    m.address,
    caFile,
    m.adminToken ?? "",
  ]);
  const out = JSON.parse(stdout) as { run: string; listed: string[]; anonymous: string };
  t.is(out.run, "from-python");
  t.deepEqual(out.listed, ["from-python"]);
  t.is(out.anonymous, "UNAUTHENTICATED");
});

test("the manager's certificate: names for host checks, renewed in its last third or when names change", async (t) => {
  const dir = await tempDir(t);
  const logger = createLogger("tls", "silent");
  const tls = await ClusterTls.open({ dataDir: dir, listenHost: "127.0.0.1", logger });
  t.is((await stat(join(dir, "tls", "manager.key"))).mode & 0o777, 0o600);
  t.is((await stat(join(dir, "tls", "ca.key"))).mode & 0o777, 0o600);
  const cert = new X509Certificate(await readFile(join(dir, "tls", "manager.crt"), "utf8"));
  for (const name of ["URI:cube://manager", "IP Address:127.0.0.1", "DNS:localhost"]) {
    t.true(cert.subjectAltName?.includes(name), name);
  }
  t.false(await tls.renewIfDue(), "fresh: kept");
  t.false(await tls.renewIfDue(Date.now() + 59 * 24 * 3600_000), "day 59 of 90: kept");
  t.true(await tls.renewIfDue(Date.now() + 61 * 24 * 3600_000), "day 61 of 90: renewed");
  t.is(tls.generation, 2, "issued at the first start, then renewed");
  // The same CA across restarts; a new listen host gets a new certificate naming it.
  const again = await ClusterTls.open({ dataDir: dir, listenHost: "10.1.2.3", logger });
  t.is(again.caSha256, tls.caSha256);
  t.is(again.generation, 1, "renewed at start: 10.1.2.3 was missing");
  const named = new X509Certificate(await readFile(join(dir, "tls", "manager.crt"), "utf8"));
  t.true(named.subjectAltName?.includes("IP Address:10.1.2.3"));
});

test("with TLS a manager may listen on every address, and its certificate names them all", async (t) => {
  const m = await startTestManager(t, { listen: "0.0.0.0:0", tls: true });
  const cert = new X509Certificate(await readFile(join(dirname(m.ca?.file ?? ""), "manager.crt")));
  const names = cert.subjectAltName ?? "";
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === "IPv4") t.true(names.includes(`IP Address:${a.address}`), a.address);
    }
  }
  const port = m.address.split(":").at(-1);
  const ca = await readFile(m.ca?.file ?? "", "utf8");
  const tasks = createClient(
    TaskService,
    grpcTransport(`127.0.0.1:${port}`, { token: m.adminToken, tls: { ca } }),
  );
  t.deepEqual((await tasks.listTasks({})).tasks, [], "host name checks pass on loopback");
});

test("the certificate rules: forged refused, another worker's denied, tokens need none", (t) => {
  const connect = "/cube.v1.WorkerService/Connect";
  const token = { workerId: "w1" } as Parameters<typeof checkCertificate>[1];
  const good: PeerCertificate = { verified: true, uris: [workerUri("w1")], fingerprint: "x" };
  const code = (f: () => void) => {
    try {
      f();
      return "ok";
    } catch (error) {
      return Code[(error as ConnectError).code];
    }
  };
  t.is(
    code(() => checkCertificate(connect, token, good)),
    "ok",
  );
  t.is(
    code(() => checkCertificate(connect, token, undefined)),
    "Unauthenticated",
  );
  t.is(
    code(() => checkCertificate(connect, token, { ...good, verified: false })),
    "Unauthenticated",
  );
  t.is(
    code(() => checkCertificate(connect, token, { ...good, uris: [workerUri("w2")] })),
    "PermissionDenied",
  );
  t.is(
    code(() => checkCertificate(connect, token, { ...good, uris: [MANAGER_URI] })),
    "Unauthenticated",
  );
  const list = "/cube.v1.TaskService/ListTasks";
  t.is(
    code(() => checkCertificate(list, undefined, undefined)),
    "ok",
    "token clients have none",
  );
  t.is(
    code(() => checkCertificate(list, undefined, { ...good, verified: false })),
    "Unauthenticated",
  );
  t.is(PEER_CERTIFICATE.defaultValue, undefined);
  // Identity helpers.
  t.deepEqual(sanUris('URI:cube://worker/a.b, DNS:localhost, URI:"cube://x,y"'), [
    "cube://worker/a.b",
    "cube://x,y",
  ]);
  t.is(workerOf([workerUri("a"), "cube://manager"]), "a");
  t.is(workerOf([workerUri("a"), workerUri("b")]), undefined, "two names: none");
  const digest = "ab".repeat(32);
  t.deepEqual(parseJoinToken(joinToken("cube_x.y", digest)), {
    secret: "cube_x.y",
    caSha256: digest,
  });
  t.deepEqual(parseJoinToken("cube_x.y"), { secret: "cube_x.y" });
  t.is(Role.WORKER, 4);
});
