//! Link the `flowrun` binary as a position-dependent executable.
//!
//! A position-independent one carries ~17,000 relative relocations that the
//! dynamic loader applies at every start: it reads a 400 KiB table and
//! writes the 320 KiB of `.data.rel.ro` (vtables, panic locations, static
//! string tables), which turns those pages into private memory in every
//! flowrun process — the runner and its guard both, for their whole life.
//! Linked at a fixed address, the table is gone and those pages stay
//! clean, shared page-cache pages (ARCHITECTURE.md, code map).

fn main() {
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bin=flowrun=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
