//! Writes the benchmark inputs for the load and offline scripts: one AdmissionReview per
//! input (`<name>.review.json`) and the object alone (`<name>.json`).
//!
//! `cargo run --release --example bench_inputs -- OUT_DIR`

#[path = "../benches/peers/mod.rs"]
mod peers;

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    std::fs::create_dir_all(&dir)?;
    for input in peers::bench_inputs() {
        std::fs::write(
            dir.join(format!("{}.review.json", input.name)),
            &input.review,
        )?;
        let object = serde_json::to_vec_pretty(&input.object).map_err(std::io::Error::other)?;
        std::fs::write(dir.join(format!("{}.json", input.name)), object)?;
        eprintln!(
            "{}: {} bytes of AdmissionReview",
            input.name,
            input.review.len()
        );
    }
    Ok(())
}
