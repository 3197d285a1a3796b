//! Any bytes as a manifest for `raygate check` and `raygate fix`, and as a `--policy` file.
#![no_main]

#[path = "../../tests/support/fuzzing.rs"]
mod fuzzing;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use raygate::{Engine, Policy};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new(Policy::built_in()));

fuzz_target!(|text: &[u8]| {
    fuzzing::check_manifest(&ENGINE, text);
});
