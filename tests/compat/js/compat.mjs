// Compatibility test: the official JavaScript SDK (@dapr/dapr 3.18.0, DaprClient) against the
// mecha binary, unchanged, once over HTTP and once over gRPC. Started by run.sh; exits non-zero
// on any failure and prints "N passed, M failed" last.
//
//   node compat.mjs --mecha /path/to/mecha
//
// Mecha runs on free ports (port 0, read back from its "mecha listening" log line) with one
// in-memory store and one configured app, so every call carries the SDK's dapr-api-token
// (the start-up probe GET /v1.0/metadata or the GetMetadata RPC included).
//
// Every per-store scenario also runs against a SQLite store (a file in the run's temporary
// directory) and a MySQL store (MYSQL_URL, default the local MariaDB
// root:@tcp(127.0.0.1:3306)/test; tables named after the run, so parallel runs never share one,
// and dropped at the end with the mariadb/mysql command when it is installed).
//
// The assertions pin what the SDK makes observable, per /work/shared/spec/clients.md §2:
// HTTP save/delete return {error} instead of throwing, get returns the parsed body only,
// getBulk is the way to read etags, gRPC errors are ConnectErrors ("[aborted] ...").

import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { DaprClient, CommunicationProtocolEnum, LogLevel, StateConcurrencyEnum, StateConsistencyEnum } from "@dapr/dapr";

const SDK_VERSION = "3.18.0";
const STORE = "statestore";
const APP_ID = "js-compat";
const TOKEN = "js-compat-token";

const COMPONENT = `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
`;

// The stores that serve strong consistency, as daprd users configure them (a Redis store as the
// SDK's own e2e suite names it, state-redis): no `stores:` entry, so the built-in (compatible)
// default decides, as it does for a newcomer.
function component(name, type, metadata) {
  const items = Object.entries(metadata)
    .map(([k, v]) => `  - name: ${k}\n    value: "${v}"\n`).join("");
  return `apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: ${name}\nspec:\n  type: ${type}\n  version: v1\n  metadata:\n${items}`;
}
const etcdHosts = (process.env.ETCD_ENDPOINTS ??
  "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793").replaceAll("http://", "");
const STRONG_STORES = {
  "state-redis": component("state-redis", "state.redis",
    { redisHost: (process.env.REDIS_URL ?? "redis://127.0.0.1:6379").replace("redis://", "") }),
  "state-redis-cluster": component("state-redis-cluster", "state.redis", {
    redisHost: process.env.REDIS_CLUSTER_NODES ??
      [1, 2, 3, 4, 5, 6].map((i) => `127.0.0.1:2700${i}`).join(","),
    redisType: "cluster",
  }),
  "state-pg": component("state-pg", "state.postgresql", {
    connectionString: process.env.DATABASE_URL ?? "postgres://postgres:postgres@127.0.0.1:5432/test",
    tableName: "mecha_js_compat",
  }),
  "state-etcd": component("state-etcd", "state.etcd", { endpoints: etcdHosts }),
};

// The SQL stores, as daprd's docs configure them; every per-store scenario runs on each.
const RUN_ID = `${process.pid}_${Date.now()}`;
const MYSQL_URL = process.env.MYSQL_URL ?? "root:@tcp(127.0.0.1:3306)/test";
const MYSQL_SCHEMA = "test";
const MYSQL_TABLES = [`mecha_js_${RUN_ID}`, `mecha_js_${RUN_ID}_meta`];
const SQL_STORES = {
  "state-sqlite": (workdir) => component("state-sqlite", "state.sqlite", {
    connectionString: join(workdir, "state.db"),
    tableName: "state",
    metadataTableName: "metadata",
    timeout: "20s",
  }),
  "state-mysql": () => component("state-mysql", "state.mysql", {
    connectionString: MYSQL_URL,
    schemaName: MYSQL_SCHEMA,
    tableName: MYSQL_TABLES[0],
    metadataTableName: MYSQL_TABLES[1],
    timeoutInSeconds: "20",
  }),
};
const STORE_TYPES = { [STORE]: "state.in-memory", "state-sqlite": "state.sqlite", "state-mysql": "state.mysql" };

// Best effort: drops this run's MySQL tables with the mariadb or mysql command.
function dropMysqlTables() {
  const m = /^(?:([^:@]*)(?::([^@]*))?@)?(?:tcp\(([^:)]*)(?::(\d+))?\))?\//.exec(MYSQL_URL);
  const sql = `DROP TABLE IF EXISTS ${MYSQL_TABLES.map((t) => `\`${MYSQL_SCHEMA}\`.\`${t}\``).join(", ")}`;
  for (const cli of ["mariadb", "mysql"]) {
    if (!m) break;
    const r = spawnSync(cli, ["-u", m[1] || "root", "-h", m[3] || "127.0.0.1", "-P", m[4] || "3306", "-e", sql],
      { env: { ...process.env, MYSQL_PWD: m[2] ?? "" }, stdio: "ignore" });
    if (!r.error) return;
  }
  console.log(`note: MySQL tables ${MYSQL_TABLES.join(", ")} left in schema ${MYSQL_SCHEMA}`);
}

// The SDK examples send partitionKey, which no Mecha store has: the built-in (compatible)
// default ignores it, as daprd does, with a mecha-receipt on each such response.
const CONFIG = `apps:
  - id: ${APP_ID}
    token: ${TOKEN}
`;

const LISTENING = /mecha listening.*?http=(\S+).*?grpc=(\S+)/;
const ANSI = /\x1b\[[0-9;]*m/g;

// gRPC status codes as ConnectError numbers them.
const GRPC = { invalid_argument: 3, aborted: 10, internal: 13 };

function parseArgs() {
  const i = process.argv.indexOf("--mecha");
  if (i < 0 || !process.argv[i + 1]) {
    console.error("usage: node compat.mjs --mecha <path to mecha>");
    process.exit(2);
  }
  return process.argv[i + 1];
}

function checkSdkVersion() {
  const require = createRequire(import.meta.url);
  const pkg = JSON.parse(readFileSync(require.resolve("@dapr/dapr/package.json"), "utf8"));
  if (pkg.version !== SDK_VERSION) {
    throw new Error(`@dapr/dapr ${pkg.version} installed, expected ${SDK_VERSION}`);
  }
  return pkg.version;
}

function startMecha(binary, workdir) {
  const components = join(workdir, "components");
  mkdirSync(components);
  writeFileSync(join(components, "statestore.yaml"), COMPONENT);
  for (const [name, text] of Object.entries(STRONG_STORES)) {
    writeFileSync(join(components, `${name}.yaml`), text);
  }
  for (const [name, text] of Object.entries(SQL_STORES)) {
    writeFileSync(join(components, `${name}.yaml`), text(workdir));
  }
  const config = join(workdir, "mecha.yaml");
  writeFileSync(config, CONFIG);
  const proc = spawn(
    binary,
    ["--resources-path", components, "--config", config,
      "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0", "--log-level", "info"],
    { cwd: workdir, env: { ...process.env, NO_COLOR: "1" }, stdio: ["ignore", "pipe", "pipe"] },
  );
  const log = [];
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => finish(new Error("mecha did not report its ports within 60 s")), 60_000);
    function finish(err, ports) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        proc.kill("SIGKILL");
        reject(new Error(`${err.message}\n${log.join("\n")}`));
      } else {
        resolve({ proc, log, ...ports });
      }
    }
    for (const stream of [proc.stdout, proc.stderr]) {
      let buf = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).replace(ANSI, "");
          buf = buf.slice(nl + 1);
          log.push(line);
          const m = LISTENING.exec(line);
          if (m) finish(null, { http: m[1], grpc: m[2] });
        }
      });
    }
    proc.on("error", (e) => finish(e));
    proc.on("exit", (code, signal) => finish(new Error(`mecha exited early (code ${code}, signal ${signal})`)));
  });
}

function portOf(addr) {
  const m = /:(\d+)$/.exec(addr);
  if (!m) throw new Error(`cannot read a port from ${addr}`);
  return m[1];
}

// --- error helpers --------------------------------------------------------------------------

// HTTP: the SDK throws (get, getBulk, transaction, query) or returns (save, delete) an Error whose
// message is JSON {error, error_msg, status}; error_msg is Mecha's body.
function httpError(err, status, errorCode, message) {
  assert.ok(err instanceof Error, `expected an Error, got ${String(err)}`);
  let outer;
  try {
    outer = JSON.parse(err.message);
  } catch {
    assert.fail(`error message is not the SDK's JSON wrapper: ${err.message}`);
  }
  assert.equal(outer.status, status, `HTTP status: ${err.message}`);
  const body = JSON.parse(outer.error_msg);
  assert.equal(body.errorCode, errorCode, `errorCode: ${outer.error_msg}`);
  if (message instanceof RegExp) assert.match(body.message, message, `message: ${outer.error_msg}`);
  else assert.equal(body.message, message, `message: ${outer.error_msg}`);
  return body;
}

async function httpThrows(promise, status, errorCode, message) {
  let err;
  try {
    const res = await promise;
    assert.fail(`expected HTTP ${status} ${errorCode}, but the call returned ${JSON.stringify(res)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  return httpError(err, status, errorCode, message);
}

// gRPC: ConnectError with code and message "[<code>] <status message>".
async function grpcThrows(promise, codeName, message) {
  let err;
  try {
    const res = await promise;
    assert.fail(`expected gRPC ${codeName}, but the call returned ${JSON.stringify(res)}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(err?.name, "ConnectError", `expected a ConnectError, got ${err?.stack ?? err}`);
  assert.equal(err.code, GRPC[codeName], `code: ${err.message}`);
  assert.ok(err.message.startsWith(`[${codeName}] `), `message prefix: ${err.message}`);
  const raw = err.rawMessage;
  if (message instanceof RegExp) assert.match(raw, message, `message: ${err.message}`);
  else assert.equal(raw, message, `message: ${err.message}`);
  return err;
}

// The reason strings inside the google.rpc details of a ConnectError (ErrorInfo.reason is a
// plain proto string field, so it shows up verbatim in the detail bytes).
function grpcDetailTypes(err) {
  return err.details.map((d) => d.type ?? d.desc?.typeName);
}

function grpcDetailsMention(err, text) {
  return err.details.some((d) => d.value && Buffer.from(d.value).toString("latin1").includes(text));
}

// --- scenarios ------------------------------------------------------------------------------

// The scenarios on `store`; the store-independent ones (strong consistency on every store,
// unknown store) only when `store` is the in-memory store.
function scenarios(proto, store) {
  const http = proto === "HTTP";
  const k = (name) => `${proto.toLowerCase()}-${name}`;

  // save/delete over HTTP never throw: the result is {} or {error}.
  async function save(client, items, options) {
    const res = await client.state.save(store, items, options);
    assert.deepEqual(res, {}, `save returned ${inspectResult(res)}`);
  }

  async function strongAndPartitionKey(client, store) {
    const key = `${k("opts")}-${Date.now()}`;
    const strong = StateConsistencyEnum.CONSISTENCY_STRONG;
    const where = `${store}:`;
    let res = await client.state.save(store, [{
      key, value: "value-1",
      options: { concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE, consistency: strong },
      metadata: { hello: "world", partitionKey: "p1" },
    }]);
    assert.deepEqual(res, {}, `${where} strong first-write save failed: ${inspectResult(res)}`);
    assert.equal(await client.state.get(store, key, { consistency: strong }), "value-1", where);
    const [item] = await client.state.getBulk(store, [key]);
    res = await client.state.save(store, [{
      key, value: "value-2", etag: item.etag, options: { consistency: strong },
    }]);
    assert.deepEqual(res, {}, `${where} strong save with etag failed: ${inspectResult(res)}`);
    res = await client.state.transaction(store, [
      { operation: "upsert", request: { key, value: "value-3" } },
    ], { partitionKey: "p1" });
    assert.ok(!res?.error, `${where} transaction with partitionKey failed: ${inspectResult(res)}`);
    assert.equal(await client.state.get(store, key), "value-3", where);
    res = await client.state.delete(store, key, { consistency: strong });
    assert.deepEqual(res, {}, `${where} strong delete failed: ${inspectResult(res)}`);
    assert.equal(await client.state.get(store, key), "", where);
  }

  async function etagOf(client, key) {
    const [item] = await client.state.getBulk(store, [key]);
    assert.equal(item.key, key);
    assert.equal(typeof item.etag, "string");
    assert.ok(item.etag.length > 0, `no etag for ${key}: ${JSON.stringify(item)}`);
    return item.etag;
  }

  return {
    async save_get_object(client) {
      const value = { name: "mecha", n: 42, nested: { ok: true, list: [1, "two"] } };
      await save(client, [{ key: k("obj"), value }]);
      assert.deepEqual(await client.state.get(store, k("obj")), value);
      // HTTP: ?metadata.partitionKey=p1&consistency=strong; gRPC sends consistency, drops metadata.
      const opts = { consistency: StateConsistencyEnum.CONSISTENCY_STRONG, metadata: { partitionKey: "p1" } };
      assert.deepEqual(await client.state.get(store, k("obj"), opts), value);
    },

    async save_get_string_with_metadata(client) {
      await save(client, [{ key: k("str"), value: "hello world" }], { metadata: { ttlInSeconds: "600" } });
      assert.equal(await client.state.get(store, k("str")), "hello world");
    },

    async save_multiple_items(client) {
      await save(client, [
        { key: k("m1"), value: "one" },
        { key: k("m2"), value: { two: 2 } },
      ]);
      assert.equal(await client.state.get(store, k("m1")), "one");
      assert.deepEqual(await client.state.get(store, k("m2")), { two: 2 });
    },

    async save_get_number_and_boolean(client) {
      // HTTP stores JSON 42/true; gRPC stores the text "42"/"true". Both read back parsed.
      await save(client, [{ key: k("num"), value: 42 }, { key: k("bool"), value: true }]);
      assert.equal(await client.state.get(store, k("num")), 42);
      assert.equal(await client.state.get(store, k("bool")), true);
    },

    async keys_with_url_characters(client) {
      await save(client, [
        { key: k("sp ace"), value: "space" },
        { key: k("ключ"), value: "utf8" },
        { key: k("a+b"), value: "plus" },
      ]);
      assert.equal(await client.state.get(store, k("sp ace")), "space");
      assert.equal(await client.state.get(store, k("ключ")), "utf8");
      const [plus] = await client.state.getBulk(store, [k("a+b")]);
      assert.equal(plus.data, "plus", JSON.stringify(plus));
      // The HTTP SDK puts the key into the path unescaped, and daprd (so Mecha) query-unescapes
      // path parameters: "+" reads as a space, so GET .../a+b asks for "a b", which is missing.
      assert.equal(await client.state.get(store, k("a+b")), http ? "" : "plus");
    },

    async bulk_get_returns_etags(client) {
      await save(client, [
        { key: k("b1"), value: "one" },
        { key: k("b2"), value: { two: 2 } },
      ]);
      // HTTP drops parallelism (SDK bug); gRPC sends it.
      const items = await client.state.getBulk(store, [k("b2"), k("missing"), k("b1")],
        { parallelism: 2, metadata: { partitionKey: "p1" } });
      assert.equal(items.length, 3, JSON.stringify(items));
      assert.deepEqual(items.map((i) => i.key), [k("b2"), k("missing"), k("b1")]);
      assert.deepEqual(items[0].data, { two: 2 });
      assert.equal(items[2].data, "one");
      for (const i of [items[0], items[2]]) {
        assert.equal(typeof i.etag, "string", JSON.stringify(i));
        assert.ok(i.etag.length > 0, JSON.stringify(i));
      }
      if (http) {
        // HTTP hands back Mecha's JSON array unchanged: a missing key is just {"key": ...}.
        assert.deepEqual(items[1], { key: k("missing") });
      } else {
        // gRPC maps every item to {key, data, etag}; empty data parses to "".
        assert.deepEqual(items[1], { key: k("missing"), data: "", etag: "" });
      }
    },

    async save_with_correct_etag(client) {
      await save(client, [{ key: k("e1"), value: "a" }]);
      const etag = await etagOf(client, k("e1"));
      await save(client, [{ key: k("e1"), value: "b", etag, options: {
        concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE,
        consistency: StateConsistencyEnum.CONSISTENCY_STRONG,
      } }]);
      assert.equal(await client.state.get(store, k("e1")), "b");
      const next = await etagOf(client, k("e1"));
      assert.notEqual(next, etag, "etag did not change on write");
    },

    async save_with_stale_etag_fails(client) {
      await save(client, [{ key: k("e2"), value: "a" }]);
      const stale = await etagOf(client, k("e2"));
      await save(client, [{ key: k("e2"), value: "b" }]);
      const item = [{ key: k("e2"), value: "c", etag: stale }];
      const message = new RegExp(`^failed saving state in state store ${store}: possible etag mismatch`);
      if (http) {
        const res = await client.state.save(store, item);
        assert.ok(res.error, `stale save succeeded: ${inspectResult(res)}`);
        httpError(res.error, 409, "ERR_STATE_SAVE", message);
      } else {
        await grpcThrows(client.state.save(store, item), "aborted", message);
      }
      assert.equal(await client.state.get(store, k("e2")), "b");
    },

    async delete_with_etag(client) {
      await save(client, [{ key: k("d1"), value: "x" }]);
      const stale = await etagOf(client, k("d1"));
      await save(client, [{ key: k("d1"), value: "y" }]);
      const message = new RegExp(`^failed deleting state with key ${k("d1")}: possible etag mismatch`);
      if (http) {
        const res = await client.state.delete(store, k("d1"), { etag: stale });
        assert.ok(res.error, `stale delete succeeded: ${inspectResult(res)}`);
        httpError(res.error, 409, "ERR_STATE_DELETE", message);
      } else {
        await grpcThrows(client.state.delete(store, k("d1"), { etag: stale }), "aborted", message);
      }
      assert.equal(await client.state.get(store, k("d1")), "y");
      const etag = await etagOf(client, k("d1"));
      assert.deepEqual(await client.state.delete(store, k("d1"), {
        etag,
        concurrency: StateConcurrencyEnum.CONCURRENCY_FIRST_WRITE,
        consistency: StateConsistencyEnum.CONSISTENCY_STRONG,
      }), {});
      assert.equal(await client.state.get(store, k("d1")), "");
      const [gone] = await client.state.getBulk(store, [k("d1")]);
      assert.deepEqual(gone, http ? { key: k("d1") } : { key: k("d1"), data: "", etag: "" });
    },

    async delete_without_etag(client) {
      await save(client, [{ key: k("d2"), value: "x" }]);
      assert.deepEqual(await client.state.delete(store, k("d2")), {});
      assert.equal(await client.state.get(store, k("d2")), "");
      // Deleting a missing key is not an error.
      assert.deepEqual(await client.state.delete(store, k("never-written")), {});
    },

    async missing_key(client) {
      // HTTP: 204 with an empty body, which the SDK returns as "". gRPC: empty data, parsed to "".
      assert.equal(await client.state.get(store, k("never-written")), "");
    },

    async transaction_upsert_and_delete(client) {
      await save(client, [{ key: k("t2"), value: "old" }]);
      // Over gRPC the SDK does not stringify transaction values (Buffer.from(object) throws), so
      // objects only go over HTTP.
      const value = http ? { fresh: true } : "new";
      const res = await client.state.transaction(store, [
        { operation: "upsert", request: { key: k("t1"), value } },
        { operation: "delete", request: { key: k("t2") } },
      ], { partitionKey: "p1" });
      assert.equal(res, undefined);
      assert.deepEqual(await client.state.get(store, k("t1")), value);
      assert.equal(await client.state.get(store, k("t2")), "");
    },

    async transaction_with_etag(client) {
      await save(client, [{ key: k("t3"), value: "v1" }]);
      const etag = await etagOf(client, k("t3"));
      await client.state.transaction(store, [
        { operation: "upsert", request: { key: k("t3"), value: "v2", etag } },
      ]);
      assert.equal(await client.state.get(store, k("t3")), "v2");
      // The old etag is stale now; a transaction never answers 409/Aborted.
      const ops = [{ operation: "upsert", request: { key: k("t3"), value: "v3", etag } }];
      const message = /^error while executing state transaction: /;
      if (http) await httpThrows(client.state.transaction(store, ops), 500, "ERR_STATE_TRANSACTION", message);
      else await grpcThrows(client.state.transaction(store, ops), "internal", message);
      assert.equal(await client.state.get(store, k("t3")), "v2");
    },

    // The SDK's own e2e test "should be able to add metadata, etag and options" on Redis, Redis
    // Cluster, PostgreSQL, etcd (and in-memory) with the built-in defaults: consistency strong
    // and partitionKey are served, not refused.
    async strong_and_partition_key_on_defaults(client) {
      for (const s of [STORE, ...Object.keys(STRONG_STORES), ...Object.keys(SQL_STORES)]) {
        await strongAndPartitionKey(client, s);
      }
    },

    async unknown_store_fails(client) {
      const store = "no-such-store";
      const message = `state store ${store} is not found`;
      if (http) {
        await httpThrows(client.state.get(store, "k"), 400, "ERR_STATE_STORE_NOT_FOUND", message);
        await httpThrows(client.state.getBulk(store, ["k"]), 400, "ERR_STATE_STORE_NOT_FOUND", message);
        const res = await client.state.save(store, [{ key: "k", value: "v" }]);
        assert.ok(res.error, `save to an unknown store succeeded: ${inspectResult(res)}`);
        const body = httpError(res.error, 400, "ERR_STATE_STORE_NOT_FOUND", message);
        const info = body.details?.find((d) => d["@type"] === "type.googleapis.com/google.rpc.ErrorInfo");
        assert.equal(info?.reason, "DAPR_STATE_NOT_FOUND", JSON.stringify(body));
        const del = await client.state.delete(store, "k");
        httpError(del.error, 400, "ERR_STATE_STORE_NOT_FOUND", message);
      } else {
        const e = await grpcThrows(client.state.get(store, "k"), "invalid_argument", message);
        assert.ok(grpcDetailsMention(e, "DAPR_STATE_NOT_FOUND"), JSON.stringify(grpcDetailTypes(e)));
        await grpcThrows(client.state.save(store, [{ key: "k", value: "v" }]), "invalid_argument", message);
        await grpcThrows(client.state.delete(store, "k"), "invalid_argument", message);
        await grpcThrows(client.state.getBulk(store, ["k"]), "invalid_argument", message);
      }
    },

    async metadata_lists_statestore(client) {
      const md = await client.metadata.get();
      // HTTP returns Mecha's JSON as is; gRPC wraps the GetMetadata response into the same shape.
      assert.equal(md.id, APP_ID, JSON.stringify(md));
      const c = (md.components ?? []).find((x) => x.name === store);
      assert.ok(c, `no ${store} in ${JSON.stringify(md.components)}`);
      assert.equal(c.type, STORE_TYPES[store]);
      assert.equal(c.version, "v1");
      for (const cap of ["ETAG", "TRANSACTIONAL", "TTL", "ACTOR"]) {
        assert.ok(c.capabilities.includes(cap), `${cap} missing: ${JSON.stringify(c.capabilities)}`);
      }
      assert.equal(typeof md.extended?.daprRuntimeVersion, "string", JSON.stringify(md.extended));
    },

    // Values written by the HTTP run (JSON bodies) read back over gRPC, and the reverse for a
    // value the gRPC SDK JSON-stringified.
    ...(http ? {} : {
      async reads_values_written_over_http(client) {
        assert.deepEqual(await client.state.get(store, "http-m2"), { two: 2 });
        assert.equal(await client.state.get(store, "http-m1"), "one");
        const [item] = await client.state.getBulk(store, ["http-obj"]);
        assert.equal(item.data.name, "mecha", JSON.stringify(item));
        assert.ok(item.etag, JSON.stringify(item));
      },
    }),

    // Every store here answers queries: Mecha emulates them, with PostgreSQL's rules.
    async query_is_emulated(client) {
      const tag = `q-${proto}-${process.pid}-${Date.now()}`;
      const keys = [0, 1, 2].map((i) => `${tag}-${i}`);
      await client.state.save(store, keys.map((key, n) => ({ key, value: { kind: tag, n } })));
      const query = { filter: { EQ: { kind: tag } }, sort: [{ key: "n", order: "DESC" }], page: { limit: 2 } };
      const first = await client.state.query(store, query);
      assert.deepEqual(first.results.map((r) => r.key), [keys[2], keys[1]], JSON.stringify(first));
      assert.ok(first.token, JSON.stringify(first));
      const next = await client.state.query(store, { ...query, page: { limit: 2, token: first.token } });
      assert.deepEqual(next.results.map((r) => r.key), [keys[0]], JSON.stringify(next));
      // The HTTP client parses the JSON value; the gRPC client hands over the stored bytes.
      const data = http ? next.results[0].data : JSON.parse(Buffer.from(next.results[0].data).toString());
      assert.deepEqual(data, { kind: tag, n: 0 }, JSON.stringify(next));
      assert.ok(!next.token, JSON.stringify(next));
      for (const key of keys) await client.state.delete(store, key);
    },
  };
}

const sdkLines = [];
const sdkLog = Object.fromEntries(["error", "warn", "info", "verbose", "debug"].map((level) => [
  level, (message, ...rest) => sdkLines.push(`${level.toUpperCase()} ${[message, ...rest].join(" ")}`),
]));

function inspectResult(res) {
  if (res?.error instanceof Error) return `{error: ${res.error.message}}`;
  return JSON.stringify(res);
}

async function runProtocol(proto, ports) {
  const client = new DaprClient({
    daprHost: "127.0.0.1",
    daprPort: proto === "HTTP" ? portOf(ports.http) : portOf(ports.grpc),
    communicationProtocol: CommunicationProtocolEnum[proto],
    daprApiToken: TOKEN,
    // The SDK logs every failed HTTP save/delete at error level, expected ones included; keep
    // its log and show it only when something fails.
    logger: { level: LogLevel.Info, service: sdkLog },
  });
  let passed = 0;
  let failed = 0;
  try {
    await client.start(); // lazy start-up probe: GET /v1.0/metadata or the GetMetadata RPC
    passed++;
    console.log(`PASS ${proto} start`);
  } catch (e) {
    console.log(`FAIL ${proto} start\n${e?.stack ?? e}`);
    return { passed, failed: failed + 1 };
  }
  const storeIndependent = new Set(["strong_and_partition_key_on_defaults", "unknown_store_fails"]);
  for (const store of [STORE, ...Object.keys(SQL_STORES)]) {
    for (const [name, fn] of Object.entries(scenarios(proto, store))) {
      if (store !== STORE && storeIndependent.has(name)) continue;
      const t0 = Date.now();
      try {
        await fn(client);
        passed++;
        console.log(`PASS ${proto} ${name} [${store}] (${Date.now() - t0} ms)`);
      } catch (e) {
        failed++;
        console.log(`FAIL ${proto} ${name} [${store}]\n${e?.stack ?? e}`);
      }
    }
  }
  return { passed, failed, client };
}

async function main() {
  const binary = parseArgs();
  const version = checkSdkVersion();
  console.log(`@dapr/dapr ${version}, node ${process.version}`);
  const workdir = mkdtempSync(join(tmpdir(), "mecha-jscompat-"));
  let mecha;
  let passed = 0;
  let failed = 0;
  const clients = [];
  try {
    mecha = await startMecha(binary, workdir);
    console.log(`mecha: http=${mecha.http} grpc=${mecha.grpc}`);
    for (const proto of ["HTTP", "GRPC"]) {
      const r = await runProtocol(proto, mecha);
      passed += r.passed;
      failed += r.failed;
      if (r.client) clients.push(r.client);
    }
  } catch (e) {
    failed++;
    console.log(`FAIL setup\n${e?.stack ?? e}`);
  } finally {
    for (const c of clients) await c.stop().catch(() => {});
    if (mecha) {
      const gone = new Promise((r) => mecha.proc.once("exit", () => r(true)));
      if (mecha.proc.exitCode === null && mecha.proc.signalCode === null) mecha.proc.kill("SIGTERM");
      else mecha.proc.emit("exit");
      const exited = await Promise.race([
        gone,
        new Promise((r) => setTimeout(() => r(false), 15_000)),
      ]);
      if (!exited && mecha.proc.exitCode === null) mecha.proc.kill("SIGKILL");
    }
    rmSync(workdir, { recursive: true, force: true });
    dropMysqlTables();
  }
  if (failed) {
    console.log("--- SDK log ---");
    console.log(sdkLines.slice(-50).join("\n"));
  }
  if (failed && mecha) {
    console.log("--- mecha log ---");
    console.log(mecha.log.slice(-50).join("\n"));
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed || !passed ? 1 : 0);
}

main();
