//! One test in a process of its own, for tests that read process-wide state (the metrics
//! recorder, the global tracing subscriber) which the other tests of their binary would
//! share: the test runs itself again, alone, in a fresh process of the same test binary.

use std::process::Command;

/// Set in the fresh process to the path of the test it runs.
const ALONE: &str = "MECHA_TEST_ALONE";

/// `test` is the test's path within its binary (`module::function`). In the test binary's
/// ordinary run: runs that test alone in a fresh process of this binary, asserts that it ran
/// and passed, and returns `true` (the caller returns: its body ran over there). In that
/// fresh process: returns `false`, and the caller runs its body.
pub fn ran_elsewhere(test: &str) -> bool {
    if std::env::var(ALONE).is_ok_and(|t| t == test) {
        return false;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args([test, "--exact", "--test-threads=1"])
        .env(ALONE, test)
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{test}, alone in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}
