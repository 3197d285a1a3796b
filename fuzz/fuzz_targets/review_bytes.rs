//! Any bytes as the body of `POST /validate` and `POST /mutate`.
#![no_main]

#[path = "../../tests/support/fuzzing.rs"]
mod fuzzing;

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use raygate::{Engine, Policy};

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new(Policy::built_in()));

fuzz_target!(|body: &[u8]| {
    fuzzing::check_body(&ENGINE, body);
});
