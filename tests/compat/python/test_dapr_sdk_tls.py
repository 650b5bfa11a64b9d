"""Compatibility test: the official Python SDK (dapr 1.19.0) against the mecha binary over TLS.
Started by run.sh; exits non-zero on any failure.

Certificates are made here with the openssl command: a CA and two server certificates for
127.0.0.1/localhost. Mecha gets the first through --tls-cert-file/--tls-key-file; the SDK
connects exactly as a user would, with

    DAPR_GRPC_ENDPOINT=127.0.0.1:<port>?tls=true   (gRPC over TLS)
    DAPR_HTTP_ENDPOINT=https://127.0.0.1:<port>    (the SDK's start-up health probe)

trusting the CA through GRPC_DEFAULT_SSL_ROOTS_FILE_PATH (grpc) and SSL_CERT_FILE (urllib).
Then the certificate files are replaced: a client that is already connected keeps working,
and new connections get the renewed certificate without restarting Mecha.
"""

import argparse
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback

STORE = "statestore"
TOKEN = "py-tls-token"

COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: statestore
spec:
  type: state.in-memory
  version: v1
"""

CONFIG = f"""\
apps:
  - id: py-tls
    token: {TOKEN}
server:
  tls:
    checkInterval: 100ms
"""

LISTENING = re.compile(r"mecha listening.*?http=(\S+).*?grpc=(\S+)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=mecha-py-tls-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_server_cert(d, name):
    """Writes <name>.pem and <name>.key, signed by the CA, for 127.0.0.1 and localhost."""
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
            "-extfile", f"{name}.ext", cwd=d)


def start_mecha(binary, workdir):
    components = os.path.join(workdir, "components")
    os.makedirs(components)
    with open(os.path.join(components, "statestore.yaml"), "w") as f:
        f.write(COMPONENT)
    config = os.path.join(workdir, "mecha.yaml")
    with open(config, "w") as f:
        f.write(CONFIG)
    env = dict(os.environ, NO_COLOR="1")
    proc = subprocess.Popen(
        [binary, "--resources-path", components, "--config", config,
         "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0",
         "--tls-cert-file", os.path.join(workdir, "served.pem"),
         "--tls-key-file", os.path.join(workdir, "served.key"),
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
                found["line"] = line
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(60) or "grpc" not in found:
        proc.kill()
        raise RuntimeError("mecha did not report its ports:\n" + "\n".join(log))
    return proc, found, log


def served_cert(addr):
    """The certificate (DER) a new TLS connection to addr gets."""
    host, port = addr.rsplit(":", 1)
    return ssl.PEM_cert_to_DER_cert(ssl.get_server_certificate((host, int(port))))


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mecha", required=True, help="path to the mecha binary")
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="mecha-pytls-")
    make_ca(workdir)
    make_server_cert(workdir, "first")
    make_server_cert(workdir, "second")
    shutil.copy(os.path.join(workdir, "first.pem"), os.path.join(workdir, "served.pem"))
    shutil.copy(os.path.join(workdir, "first.key"), os.path.join(workdir, "served.key"))
    proc, found, log = start_mecha(args.mecha, workdir)
    http_addr, grpc_addr = found["http"], found["grpc"]
    print(f"mecha: http={http_addr} grpc={grpc_addr} (TLS)", flush=True)
    ca = os.path.join(workdir, "ca.pem")
    # Set before importing dapr: 1.19 reads settings lazily, <= 1.18 once at import.
    os.environ["DAPR_HTTP_ENDPOINT"] = f"https://{http_addr}"
    os.environ["DAPR_GRPC_ENDPOINT"] = f"{grpc_addr}?tls=true"
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = ca
    os.environ["SSL_CERT_FILE"] = ca
    os.environ["DAPR_HEALTH_TIMEOUT"] = "20"
    os.environ["DAPR_API_TOKEN"] = TOKEN
    failed = 0
    passed = 0
    try:
        assert "tls=on" in found["line"].replace('"', ""), found["line"]
        passed, failed = run_tests(workdir, http_addr, grpc_addr)
    except Exception:
        traceback.print_exc()
        failed += 1
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
    if failed:
        print("--- mecha log ---")
        print("\n".join(log[-50:]))
    else:
        print("\n".join(l for l in log if "TLS" in l or "listening" in l))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


def run_tests(workdir, http_addr, grpc_addr):
    from dapr.clients import DaprClient

    def t_save_get_over_tls():
        assert served_cert(grpc_addr) == pem_der(os.path.join(workdir, "first.pem"))
        with DaprClient() as d:
            d.save_state(STORE, "tls-k1", "tls-v1")
            r = d.get_state(STORE, "tls-k1")
            assert r.data == b"tls-v1", r.data
            assert r.etag, "no etag"

    def t_renewed_certificate_without_restart():
        second = pem_der(os.path.join(workdir, "second.pem"))
        with DaprClient() as d:
            d.save_state(STORE, "tls-k2", "before")
            # Replace the files (the certificate first, as a plain copy would).
            shutil.copy(os.path.join(workdir, "second.pem"), os.path.join(workdir, "served.pem"))
            shutil.copy(os.path.join(workdir, "second.key"), os.path.join(workdir, "served.key"))
            deadline = time.monotonic() + 10
            while served_cert(grpc_addr) != second:
                assert time.monotonic() < deadline, "the renewed certificate was never served"
                d.save_state(STORE, "tls-k2", "during")  # the open connection keeps working
                time.sleep(0.05)
            assert served_cert(http_addr) == second
            d.save_state(STORE, "tls-k2", "after")
            assert d.get_state(STORE, "tls-k2").data == b"after"
        # A new client (new connections, new health probe) on the renewed certificate.
        with DaprClient() as d:
            assert d.get_state(STORE, "tls-k2").data == b"after"

    tests = [t_save_get_over_tls, t_renewed_certificate_without_restart]
    passed = failed = 0
    for t in tests:
        try:
            t()
            print(f"ok   {t.__name__}", flush=True)
            passed += 1
        except Exception:
            print(f"FAIL {t.__name__}", flush=True)
            traceback.print_exc()
            failed += 1
    return passed, failed


if __name__ == "__main__":
    sys.exit(main())
