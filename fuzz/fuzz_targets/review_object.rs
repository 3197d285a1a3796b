//! Structure-aware: the input is a JSON object (the corpus starts from KubeRay's samples),
//! mutated as JSON (types swapped, keys the rules read added and removed, subtrees copied,
//! arrays grown, nodes nested) as well as byte by byte, then reviewed as CREATE and UPDATE.
#![no_main]

#[path = "../../tests/support/fuzzing.rs"]
mod fuzzing;

use std::sync::LazyLock;

use libfuzzer_sys::{fuzz_mutator, fuzz_target, fuzzer_mutate};
use raygate::{Engine, Policy};
use serde_json::Value;

static ENGINE: LazyLock<Engine> = LazyLock::new(|| Engine::new(Policy::built_in()));

fuzz_target!(|data: &[u8]| {
    if let Ok(object @ Value::Object(_)) = serde_json::from_slice::<Value>(data) {
        fuzzing::check_object(&ENGINE, &object);
    }
});

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    let mut rng = fuzzing::Rng::new(u64::from(seed));
    // Now and then a byte-level change: broken syntax, odd escapes, odd numbers.
    if rng.below(5) == 0 {
        return fuzzer_mutate(data, size, max_size);
    }
    let Ok(mut value) = serde_json::from_slice::<Value>(&data[..size]) else {
        return fuzzer_mutate(data, size, max_size);
    };
    fuzzing::mutate(&mut value, &mut rng);
    let Ok(bytes) = serde_json::to_vec(&value) else {
        return fuzzer_mutate(data, size, max_size);
    };
    if bytes.len() > max_size {
        return fuzzer_mutate(data, size, max_size);
    }
    data[..bytes.len()].copy_from_slice(&bytes);
    bytes.len()
});
