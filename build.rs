//! Compiles `proto/` into the gRPC server and client (tonic + prost).
//!
//! protoc comes from the `protoc-bin-vendored` crate, together with the well-known-type
//! includes (`google/protobuf/empty.proto`), so a fresh machine needs nothing outside cargo.

use std::io;
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/dapr/proto/common/v1/common.proto",
    "proto/dapr/proto/runtime/v1/state.proto",
    "proto/dapr/proto/runtime/v1/metadata.proto",
    "proto/dapr/proto/runtime/v1/dapr.proto",
];

fn main() -> io::Result<()> {
    let protoc = protoc_bin_vendored::protoc_bin_path().map_err(io::Error::other)?;
    let well_known = protoc_bin_vendored::include_path().map_err(io::Error::other)?;
    let mut config = tonic_prost_build::Config::new();
    // Pass protoc explicitly rather than through the PROTOC variable: setting process
    // environment is `unsafe` in edition 2024, and a configured path cannot be overridden
    // by a stray PROTOC on the build machine.
    config.protoc_executable(protoc);
    let protos: Vec<PathBuf> = PROTOS.iter().map(PathBuf::from).collect();
    let includes = [PathBuf::from("proto"), well_known];
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // prost plus an item-count check before decoding (src/gateway/grpc/codec.rs).
        .codec_path("crate::gateway::grpc::codec::BoundedCodec")
        .compile_with_config(config, &protos, &includes)?;
    println!("cargo:rerun-if-changed=proto");
    git_commit();
    startup_layout();
    Ok(())
}

/// Link options of the release `mecha` binary that cut its idle resident memory (issue 27,
/// BENCHMARKS.md): most of it was pages of the binary itself, because the kernel maps the
/// 64 KiB (or the whole large folio) around every page a start-up fault touches, and the
/// ~2,000 functions that run at start-up lay scattered over 16 MB of code.
///
/// * `--symbol-ordering-file=scripts/startup-order.txt`: those functions first and
///   together in `.text` (the list is written by `scripts/startup-order.sh`; names no longer
///   in the program are skipped, so a stale list only costs memory, never correctness);
/// * `-z pack-relative-relocs` (RELR): the relative relocations in a few KiB instead of
///   the 770 KiB `.rela.dyn` that the loader reads whole at every start (glibc 2.36+).
///
/// Only on x86_64 Linux (GNU), where rustc links with its own lld; `MECHA_PLAIN_LINK=1`
/// turns both off (another linker, an older glibc).
fn startup_layout() {
    println!("cargo:rerun-if-env-changed=MECHA_PLAIN_LINK");
    println!("cargo:rerun-if-changed=scripts/startup-order.txt");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let linux_x86_64 = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if !linux_x86_64 || var("PROFILE") != "release" || var("MECHA_PLAIN_LINK") == "1" {
        return;
    }
    let order = PathBuf::from(var("CARGO_MANIFEST_DIR")).join("scripts/startup-order.txt");
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// `MECHA_GIT_COMMIT` for `mecha_build_info`: the checkout's commit (12 hex digits), or
/// `unknown` outside a git checkout (a source tarball, a container build without `.git`).
/// Rebuilt when HEAD or the branch it names moves.
fn git_commit() {
    let git = |args: &[&str]| -> Option<String> {
        let out = std::process::Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=MECHA_GIT_COMMIT={commit}");
    let head = git(&["rev-parse", "--git-path", "HEAD"]);
    let branch =
        git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| git(&["rev-parse", "--git-path", &r]));
    for path in [head, branch].into_iter().flatten() {
        println!("cargo:rerun-if-changed={path}");
    }
}
