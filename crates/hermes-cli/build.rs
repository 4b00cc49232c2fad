//! The binary starts at `hermes_entry` (hermes-init's `pid1`), which blocks
//! the init's stop signals before the C library's start-up runs.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if os == "linux" && arch == "x86_64" {
        println!("cargo:rustc-link-arg-bins=-Wl,-e,hermes_entry");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
