//! Packs the binary's relative relocations (`-z pack-relative-relocs`, ELF `DT_RELR`) where
//! the linker and the C library support them.
//!
//! Why: the binary is position-independent (ASLR), so at start-up the loader applies 46,000
//! relative relocations, read from a 1.1 MB `.rela.dyn` table whose pages then stay mapped for
//! the life of the process (idle RSS, issue 18). Packed, the same relocations take a few
//! kilobytes. Needs GNU ld ≥ 2.38 (or lld ≥ 15) and glibc ≥ 2.36 at run time, so the flag is
//! used only when a probe program linked with it also runs on the build machine; elsewhere
//! (older toolchains, cross builds) the binary is linked as before.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target != host || !target.contains("linux-gnu") {
        return;
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    if probe_runs(Path::new(&out)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
        // tests/binary.rs then checks that the binary really came out packed.
        println!("cargo:rustc-env=INCIDENT_BOT_PACKED_RELOCS=1");
    }
}

/// Links a C program with packed relocations (any linker warning is an error) and runs it:
/// true only when both worked.
fn probe_runs(out: &Path) -> bool {
    let source = out.join("relr_probe.c");
    let binary = out.join("relr_probe");
    // One pointer in writable data: a relative relocation the loader must apply.
    let program = "static int x; int *p = &x; int main(void) { return p == &x ? 0 : 1; }\n";
    if std::fs::write(&source, program).is_err() {
        return false;
    }
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_string());
    let linked = Command::new(linker)
        .args([
            "-pie",
            "-fPIE",
            "-Wl,--fatal-warnings",
            "-Wl,-z,pack-relative-relocs",
            "-o",
        ])
        .arg(&binary)
        .arg(&source)
        .output()
        .is_ok_and(|o| o.status.success());
    linked && Command::new(&binary).status().is_ok_and(|s| s.success())
}
