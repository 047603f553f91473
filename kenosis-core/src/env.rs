//! Every environment variable Kenosis reads goes through [`var`], so that a build script can
//! tell Cargo to rerun when any of them changes.

use std::sync::atomic::{AtomicBool, Ordering};

static CARGO_DIRECTIVES: AtomicBool = AtomicBool::new(false);

/// Makes [`var`] print `cargo:rerun-if-env-changed=NAME` for each variable it reads
/// (kenosis-build turns this on).
pub fn emit_cargo_directives(on: bool) {
    CARGO_DIRECTIVES.store(on, Ordering::Relaxed);
}

/// Reads an environment variable; unset and non-UTF-8 values are `None`.
pub fn var(name: &str) -> Option<String> {
    if CARGO_DIRECTIVES.load(Ordering::Relaxed) {
        println!("cargo:rerun-if-env-changed={name}");
    }
    std::env::var(name).ok()
}

/// True when the variable is set to something other than empty, `0` or `false`.
pub fn flag(name: &str) -> bool {
    var(name).is_some_and(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
}
