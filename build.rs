//! Link the `flowrun` binary with packed relative relocations (`DT_RELR`)
//! where the toolchain can.
//!
//! A position-independent flowrun carries about 17,000 relative
//! relocations. As a `.rela.dyn` table (24 bytes each, about 400 KiB) the
//! dynamic loader reads it whole at every start, and those pages stay
//! resident in every flowrun process: the runner and its guard, for their
//! whole life. Packed (`-z pack-relative-relocs`, glibc 2.36 and binutils
//! 2.38 or later) the table is a few KiB. The binary stays
//! position-independent. The linker is asked first, with a one-line
//! program; a toolchain that refuses the option links as before.

use std::io::Write;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu && linker_takes(FLAG) {
        println!("cargo:rustc-link-arg-bin=flowrun={FLAG}");
    }
}

/// Whether the C compiler driver (which links Rust binaries on Linux)
/// links a trivial program with `flag`.
fn linker_takes(flag: &str) -> bool {
    let Ok(out) = std::env::var("OUT_DIR") else {
        return false;
    };
    let exe = std::path::Path::new(&out).join("relr-probe");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let Ok(mut child) = Command::new(cc)
        .args(["-x", "c", "-", "-o"])
        .arg(&exe)
        .args(["-pie", "-fPIE", flag])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"int main(void) { return 0; }\n");
    }
    let linked = child.wait().is_ok_and(|s| s.success());
    // The probe must also run: a glibc older than 2.36 cannot load it.
    linked && Command::new(&exe).status().is_ok_and(|s| s.success())
}
