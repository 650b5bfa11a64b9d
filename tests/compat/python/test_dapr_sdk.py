"""Compatibility test: the official Python SDK (dapr 1.19.0, DaprClient over gRPC) against
the mecha binary, unchanged. Started by run.sh; exits non-zero on any failure.

Mecha runs on free ports (port 0, read back from its "mecha listening" log line) with one
in-memory store, one NATS JetStream KV store (NATS_URL, default nats://127.0.0.1:4222; bucket
mecha-pycompat, created by Mecha, and every key written here is deleted again) and one
configured app, so every call also carries the SDK's dapr-api-token (DAPR_API_TOKEN) and the
HTTP health probe runs without one.

The per-store tests (save/get, ETags, bulk, transactions, deletes, missing keys, query (emulated
by Mecha),
metadata, strong consistency) also run against a SQLite store (a file in the run's temporary
directory) and a MySQL store (MYSQL_URL, default the local MariaDB root:@tcp(127.0.0.1:3306)/test;
tables named after the run, so parallel runs never share one, and dropped at the end with the
mariadb/mysql command when it is installed).
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback

STORE = "statestore"
JS_STORE = "jsstore"
STRICT_STORE = "strictstore"
APP_ID = "py-compat"
TOKEN = "py-compat-token"

COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
"""

STRICT_COMPONENT = COMPONENT.replace("name: statestore", f"name: {STRICT_STORE}")

JS_COMPONENT = f"""\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {JS_STORE}
spec:
  type: state.jetstream
  version: v1
  metadata:
  - name: natsURL
    value: {os.environ.get("NATS_URL", "nats://127.0.0.1:4222")}
  - name: bucket
    value: mecha-pycompat
"""

def _component(name, type_, metadata):
    items = "".join(f'  - name: {k}\n    value: "{v}"\n' for k, v in metadata.items())
    return (f"apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\n"
            f"spec:\n  type: {type_}\n  version: v1\n  metadata:\n{items}")


# Stores that serve strong consistency, as daprd users configure them; no `stores:` entry.
_ETCD = os.environ.get(
    "ETCD_ENDPOINTS", "http://127.0.0.1:23791,http://127.0.0.1:23792,http://127.0.0.1:23793")
STRONG_STORES = {
    "py-redis": _component("py-redis", "state.redis", {
        "redisHost": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").replace("redis://", "")}),
    "py-redis-cluster": _component("py-redis-cluster", "state.redis", {
        "redisHost": os.environ.get(
            "REDIS_CLUSTER_NODES", ",".join(f"127.0.0.1:2700{i}" for i in range(1, 7))),
        "redisType": "cluster"}),
    "py-pg": _component("py-pg", "state.postgresql", {
        "connectionString": os.environ.get(
            "DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/test"),
        "tableName": "mecha_py_compat"}),
    "py-etcd": _component("py-etcd", "state.etcd", {"endpoints": _ETCD.replace("http://", "")}),
}

# The SQL stores, as daprd's docs configure them; every per-store test runs on each.
_RUN_ID = f"{os.getpid()}_{int(time.time())}"
MYSQL_URL = os.environ.get("MYSQL_URL", "root:@tcp(127.0.0.1:3306)/test")
MYSQL_SCHEMA = "test"
MYSQL_TABLES = (f"mecha_py_{_RUN_ID}", f"mecha_py_{_RUN_ID}_meta")
SQL_STORES = {
    # connectionString is filled in by start_mecha: a file in the run's directory.
    "py-sqlite": lambda workdir: _component("py-sqlite", "state.sqlite", {
        "connectionString": os.path.join(workdir, "state.db"),
        "tableName": "state", "metadataTableName": "metadata", "timeout": "20s"}),
    "py-mysql": lambda _workdir: _component("py-mysql", "state.mysql", {
        "connectionString": MYSQL_URL, "schemaName": MYSQL_SCHEMA,
        "tableName": MYSQL_TABLES[0], "metadataTableName": MYSQL_TABLES[1],
        "timeoutInSeconds": "20"}),
}
SQL_TYPES = {"py-sqlite": "state.sqlite", "py-mysql": "state.mysql"}


def drop_mysql_tables():
    """Best effort: drops this run's MySQL tables with the mariadb or mysql command."""
    cli = shutil.which("mariadb") or shutil.which("mysql")
    m = re.match(r"^(?:([^:@]*)(?::([^@]*))?@)?(?:tcp\(([^:)]*)(?::(\d+))?\))?/", MYSQL_URL)
    if not cli or not m:
        print(f"note: MySQL tables {', '.join(MYSQL_TABLES)} left in schema {MYSQL_SCHEMA}")
        return
    user, password, host, port = m.groups()
    args = [cli, "-u", user or "root", "-h", host or "127.0.0.1", "-P", port or "3306",
            "-e", "DROP TABLE IF EXISTS " + ", ".join(f"`{MYSQL_SCHEMA}`.`{t}`" for t in MYSQL_TABLES)]
    env = dict(os.environ, MYSQL_PWD=password or "")
    subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

# The SDK examples send partitionKey, which no Mecha store has: the built-in (compatible)
# default ignores it, as daprd does, with a mecha-receipt on each such response. No
# `stores:` entry is needed for that.
CONFIG = f"""\
apps:
  - id: {APP_ID}
    token: {TOKEN}
stores:
  {STRICT_STORE}:
    lint: reject
"""

LISTENING = re.compile(r"mecha listening.*?http=(\S+).*?grpc=(\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def start_mecha(binary, workdir):
    """Starts mecha on free ports; returns (process, http_addr, grpc_addr, log lines)."""
    components = os.path.join(workdir, "components")
    os.makedirs(components)
    with open(os.path.join(components, "statestore.yaml"), "w") as f:
        f.write(COMPONENT)
    with open(os.path.join(components, "strictstore.yaml"), "w") as f:
        f.write(STRICT_COMPONENT)
    with open(os.path.join(components, "jsstore.yaml"), "w") as f:
        f.write(JS_COMPONENT)
    for name, text in STRONG_STORES.items():
        with open(os.path.join(components, f"{name}.yaml"), "w") as f:
            f.write(text)
    for name, text in SQL_STORES.items():
        with open(os.path.join(components, f"{name}.yaml"), "w") as f:
            f.write(text(workdir))
    config = os.path.join(workdir, "mecha.yaml")
    with open(config, "w") as f:
        f.write(CONFIG)
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.Popen(
        [binary, "--resources-path", components, "--config", config,
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
         "--log-level", "info"],
        cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    log = []
    found = {}
    ready = threading.Event()

    def pump():
        for line in proc.stdout:
            line = ANSI.sub("", line.rstrip("\n"))
            log.append(line)
            m = LISTENING.search(line)
            if m and not ready.is_set():
                found["http"], found["grpc"] = m.group(1), m.group(2)
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(60) or "grpc" not in found:
        proc.kill()
        raise RuntimeError("mecha did not report its ports:\n" + "\n".join(log))
    return proc, found["http"], found["grpc"], log


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mecha", required=True, help="path to the mecha binary")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="mecha-pycompat-")
    proc, http_addr, grpc_addr, log = start_mecha(args.mecha, workdir)
    print(f"mecha: http={http_addr} grpc={grpc_addr}", flush=True)
    # Set before importing dapr: 1.19 reads settings lazily, <= 1.18 once at import.
    os.environ["DAPR_HTTP_ENDPOINT"] = f"http://{http_addr}"
    os.environ["DAPR_GRPC_ENDPOINT"] = grpc_addr
    os.environ["DAPR_HEALTH_TIMEOUT"] = "20"
    os.environ["DAPR_API_TOKEN"] = TOKEN
    try:
        passed, failed = run_tests()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
        drop_mysql_tables()
    if failed:
        print("--- mecha log ---")
        print("\n".join(log[-50:]))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


def run_tests():
    import dapr
    from dapr.clients import DaprClient
    from dapr.clients.exceptions import DaprGrpcError
    from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
    from dapr.clients.grpc._state import Concurrency, Consistency, StateItem, StateOptions

    def expect_error(code, reason, fn, *a, **kw):
        try:
            fn(*a, **kw)
        except DaprGrpcError as e:
            assert e.code().name == code, f"expected {code}, got {e.code().name}: {e.details()}"
            if reason is not None:
                assert e.error_code() == reason, f"expected reason {reason}, got {e.error_code()}"
            return e
        raise AssertionError(f"expected {code}, but the call succeeded")

    def t_save_get(d, store):
        d.save_state(store, "k1", "v1", state_metadata={"ttlInSeconds": "600"})
        r = d.get_state(store, "k1")
        assert r.data == b"v1", r.data
        assert r.etag, "no etag"

    def t_etag_success_and_stale(d, store):
        d.save_state(store, "e1", "a")
        cur = d.get_state(store, "e1")
        opts = StateOptions(concurrency=Concurrency.first_write, consistency=Consistency.strong)
        d.save_state(store, "e1", "b", etag=cur.etag, options=opts)
        assert d.get_state(store, "e1").data == b"b"
        e = expect_error("ABORTED", "ERR_STATE_SAVE", d.save_state, store, "e1", "c", etag=cur.etag)
        assert "etag mismatch" in e.details(), e.details()

    def t_bulk_save_and_get(d, store):
        opts = StateOptions(concurrency=Concurrency.last_write).get_proto()  # SDK bug workaround
        d.save_bulk_state(store, [
            StateItem("b1", "one"),
            StateItem("b2", b"two", options=opts, metadata={"ttlInSeconds": "600"}),
        ])
        items = d.get_bulk_state(store, ["b2", "missing", "b1"], parallelism=4).items
        got = [(i.key, i.data, bool(i.etag), i.error) for i in items]
        assert got == [("b2", b"two", True, ""), ("missing", b"", False, ""), ("b1", b"one", True, "")], got

    def t_transaction(d, store):
        d.save_state(store, "t2", "old")
        d.execute_state_transaction(store, [
            TransactionalStateOperation(key="t1", data="new"),
            TransactionalStateOperation(key="t2", operation_type=TransactionOperationType.delete),
        ], transactional_metadata={"partitionKey": "p1"})
        assert d.get_state(store, "t1").data == b"new"
        assert d.get_state(store, "t2").data == b""

    def t_delete_with_etag(d, store):
        d.save_state(store, "d1", "x")
        stale = d.get_state(store, "d1").etag
        d.save_state(store, "d1", "y")
        expect_error("ABORTED", "ERR_STATE_DELETE", d.delete_state, store, "d1", etag=stale)
        d.delete_state(store, "d1", etag=d.get_state(store, "d1").etag)
        assert d.get_state(store, "d1").data == b""

    def t_missing_key(d, store):
        r = d.get_state(store, "never-written")
        assert r.data == b"" and r.etag == "", (r.data, r.etag)

    def t_unknown_store(d):
        expect_error("INVALID_ARGUMENT", "DAPR_STATE_NOT_FOUND", d.get_state, "no-such-store", "k")
        expect_error("INVALID_ARGUMENT", "DAPR_STATE_NOT_FOUND", d.save_state, "no-such-store", "k", "v")

    def t_illegal_key(d):
        e = expect_error("INVALID_ARGUMENT", "DAPR_STATE_ILLEGAL_KEY", d.save_state, STORE, "a||b", "v")
        details = e.status_details()
        assert details.bad_request and details.resource_info, details.as_dict()

    def t_query(d, store):
        # Every store here answers queries: Mecha emulates them (PostgreSQL's rules).
        import json
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tag = f"q-{os.getpid()}-{time.time_ns()}"
            keys = [f"{tag}-{i}" for i in range(3)]
            for i, k in enumerate(keys):
                d.save_state(store, k, json.dumps({"kind": tag, "n": i}))
            q = {"filter": {"EQ": {"kind": tag}}, "sort": [{"key": "n", "order": "DESC"}],
                 "page": {"limit": 2}}
            r = d.query_state(store, json.dumps(q))
            assert [i.key for i in r.results] == [keys[2], keys[1]], r.results
            assert r.token, "a next-page token"
            q["page"]["token"] = r.token
            r = d.query_state(store, json.dumps(q))
            assert [i.key for i in r.results] == [keys[0]], r.results
            assert json.loads(r.results[0].value) == {"kind": tag, "n": 0}, r.results[0].value
            assert r.results[0].etag, r.results
            assert not r.token, r.token
            for k in keys:
                d.delete_state(store, k)

    def t_metadata(d, store):
        md = d.get_metadata()
        assert md.application_id == APP_ID, md.application_id
        comps = {c.name: c for c in md.registered_components}
        c = comps[store]
        want_type = SQL_TYPES.get(store, "state.in-memory")
        assert (c.type, c.version) == (want_type, "v1"), (c.type, c.version)
        caps = set(c.capabilities)
        for want in ("ETAG", "TRANSACTIONAL", "TTL", "ACTOR"):
            assert want in caps, caps
        # Query: emulated on the in-memory and SQL stores.
        assert "QUERY_API" in caps, caps
        assert "daprRuntimeVersion" in md.extended_metadata, md.extended_metadata

    def t_no_token_is_unauthenticated(_d):
        # A raw stub without the token: the door answers UNAUTHENTICATED.
        import grpc
        from dapr.proto.runtime.v1 import dapr_pb2_grpc
        try:  # state messages moved to state_pb2 with the v1.17 protos
            from dapr.proto.runtime.v1 import state_pb2 as api
        except ImportError:
            from dapr.proto.runtime.v1 import dapr_pb2 as api
        with grpc.insecure_channel(os.environ["DAPR_GRPC_ENDPOINT"]) as ch:
            stub = dapr_pb2_grpc.DaprStub(ch)
            try:
                stub.GetState(api.GetStateRequest(store_name=STORE, key="k1"))
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e.code()
                return
            raise AssertionError("expected UNAUTHENTICATED")

    run = f"{os.getpid()}-{int(time.time())}"

    def sdk_example_ops(k):
        # What dapr/python-sdk examples/state_store/state_store.py sends: daprd's outbox
        # projection (val2 is published, val1 stored); Mecha has no outbox.
        return [
            TransactionalStateOperation(key=k, data="val1", metadata={"outbox.projection": "false"}),
            TransactionalStateOperation(key=k, data="val2", metadata={"outbox.projection": "true"}),
        ]

    def t_sdk_example_metadata_rejected(d):
        # lint: reject — the call fails with every finding listed, and nothing is written.
        k = f"lint-{run}"
        e = expect_error("INVALID_ARGUMENT", "MECHA_METADATA_LINT",
                         d.execute_state_transaction, STRICT_STORE, sdk_example_ops(k))
        for at in ("operation[0]", "operation[1]"):
            assert f"unsupported-feature 'outbox.projection' in {at}" in e.details(), e.details()
        assert d.get_state(STRICT_STORE, k).data == b""
        e = expect_error("INVALID_ARGUMENT", "MECHA_METADATA_LINT", d.save_state,
                         STRICT_STORE, k, "v", state_metadata={"metakey": "metavalue"})
        assert "unknown-key 'metakey' in item[0]" in e.details(), e.details()
        assert d.get_state(STRICT_STORE, k).data == b""
        e = expect_error("INVALID_ARGUMENT", None, d.save_state, STRICT_STORE, k, "v",
                         state_metadata={"ttlInSecond": "60"})
        assert "did you mean 'ttlInSeconds'?" in e.details(), e.details()

    def t_sdk_example_metadata_warned(_d):
        # lint: warn (the default) — the call proceeds and the findings come back in the
        # mecha-lint response metadata (read with a raw stub: DaprClient does not expose it).
        import grpc
        from dapr.proto.runtime.v1 import dapr_pb2_grpc
        from dapr.proto.common.v1 import common_pb2
        try:
            from dapr.proto.runtime.v1 import state_pb2 as api
        except ImportError:
            from dapr.proto.runtime.v1 import dapr_pb2 as api
        k = f"lint-warn-{run}"
        auth = (("dapr-api-token", TOKEN),)
        ops = [api.TransactionalStateOperation(operationType="upsert", request=common_pb2.StateItem(
            key=k, value=v.encode(), metadata={"outbox.projection": p}))
            for v, p in (("val1", "false"), ("val2", "true"))]
        with grpc.insecure_channel(os.environ["DAPR_GRPC_ENDPOINT"]) as ch:
            stub = dapr_pb2_grpc.DaprStub(ch)
            _, call = stub.ExecuteStateTransaction.with_call(
                api.ExecuteStateTransactionRequest(storeName=STORE, operations=ops), metadata=auth)
            lint = dict(call.initial_metadata()).get("mecha-lint")
            assert lint == ("unsupported-feature;key=outbox.projection;at=operation[0], "
                            "unsupported-feature;key=outbox.projection;at=operation[1]"), lint
            _, call = stub.SaveState.with_call(api.SaveStateRequest(store_name=STORE, states=[
                common_pb2.StateItem(key=k, value=b"v", metadata={"metakey": "metavalue"})]),
                metadata=auth)
            lint = dict(call.initial_metadata()).get("mecha-lint")
            assert lint == "unknown-key;key=metakey;at=item[0]", lint
            stub.DeleteState(api.DeleteStateRequest(store_name=STORE, key=k), metadata=auth)

    def t_jetstream(d):
        # JetStream KV: revision ETags with compare-and-set, create-only first-write, bulk by
        # fan-out, transactions refused; ETAG native and TTL emulated by Mecha are listed.
        k, fresh = f"js-{run} a", f"js-{run}-fresh"
        try:
            d.save_state(JS_STORE, k, b"\x00v1")
            cur = d.get_state(JS_STORE, k)
            assert cur.data == b"\x00v1" and cur.etag.isdigit(), (cur.data, cur.etag)
            d.save_state(JS_STORE, k, "v2", etag=cur.etag)
            expect_error("ABORTED", "ERR_STATE_SAVE", d.save_state, JS_STORE, k, "v3", etag=cur.etag)
            fw = StateOptions(concurrency=Concurrency.first_write)
            expect_error("ABORTED", "ERR_STATE_SAVE", d.save_state, JS_STORE, k, "v3", options=fw)
            d.save_state(JS_STORE, fresh, "f", options=fw)
            items = d.get_bulk_state(JS_STORE, [k, "never", fresh], parallelism=2).items
            got = [(i.key, i.data) for i in items]
            assert got == [(k, b"v2"), ("never", b""), (fresh, b"f")], got
            expect_error("UNIMPLEMENTED", None, d.execute_state_transaction, JS_STORE, [
                TransactionalStateOperation(key=k, data="tx"),
            ])
            assert d.get_state(JS_STORE, k).data == b"v2"
            expect_error("ABORTED", "ERR_STATE_DELETE", d.delete_state, JS_STORE, k, etag=cur.etag)
            d.delete_state(JS_STORE, k, etag=d.get_state(JS_STORE, k).etag)
            r = d.get_state(JS_STORE, k)
            assert r.data == b"" and r.etag == "", (r.data, r.etag)
            comps = {c.name: c for c in d.get_metadata().registered_components}
            c = comps[JS_STORE]
            assert (c.type, c.version) == ("state.jetstream", "v1"), (c.type, c.version)
            caps = set(c.capabilities)
            assert {"ETAG", "TTL"} <= caps and not caps & {"TRANSACTIONAL", "ACTOR"}, caps
        finally:
            for key in (k, fresh):
                d.delete_state(JS_STORE, key)

    def t_strong_and_partition_key_on_defaults(d):
        # Dapr's examples on every store that serves strong consistency, with no policy:
        # consistency strong on save, get, delete and transaction, partitionKey ignored.
        strong = StateOptions(consistency=Consistency.strong)
        for store in [STORE, *STRONG_STORES, *SQL_STORES]:
            k = f"strong-{run}"
            d.save_state(store, k, "v1", options=strong, state_metadata={"partitionKey": "p1"})
            r = d.get_state(store, k, state_metadata={"partitionKey": "p1"})
            assert r.data == b"v1", (store, r.data)
            d.execute_state_transaction(store, [
                TransactionalStateOperation(key=k, data="v2", etag=r.etag),
            ], transactional_metadata={"partitionKey": "p1"})
            assert d.get_state(store, k).data == b"v2", store
            d.delete_state(store, k, options=strong)
            assert d.get_state(store, k).data == b"", store

    # Run on the in-memory store and on every SQL store.
    per_store = [
        t_save_get, t_etag_success_and_stale, t_bulk_save_and_get, t_transaction,
        t_delete_with_etag, t_missing_key, t_query, t_metadata,
    ]

    def on(t, store):
        def run_on(d):
            t(d, store)
        run_on.__name__ = f"{t.__name__}[{store}]"
        return run_on

    tests = [
        t_strong_and_partition_key_on_defaults,
        *[on(t, store) for t in per_store for store in [STORE, *SQL_STORES]],
        t_unknown_store, t_illegal_key,
        t_no_token_is_unauthenticated, t_jetstream,
        t_sdk_example_metadata_rejected, t_sdk_example_metadata_warned,
    ]
    print(f"dapr SDK {dapr.__name__} from {os.path.dirname(dapr.__file__)}", flush=True)
    passed = failed = 0
    with DaprClient() as d:
        for t in tests:
            try:
                t(d)
                passed += 1
                print(f"PASS {t.__name__}", flush=True)
            except Exception:
                failed += 1
                print(f"FAIL {t.__name__}", flush=True)
                traceback.print_exc()
    return passed, failed


if __name__ == "__main__":
    sys.exit(main())
