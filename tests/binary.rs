//! The built binary itself: its relative relocations are packed (`DT_RELR`) wherever the
//! toolchain supports it (`build.rs`; the idle-memory figures in the README depend on it).

/// The dynamic-section tags of a 64-bit little-endian ELF file.
fn dynamic_tags(elf: &[u8]) -> Vec<u64> {
    let u16_at = |o: usize| u16::from_le_bytes(elf[o..o + 2].try_into().unwrap()) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!((elf[4], elf[5]), (2, 1), "not a 64-bit little-endian ELF file");
    let (phoff, phentsize, phnum) = (u64_at(0x20) as usize, u16_at(0x36), u16_at(0x38));
    const PT_DYNAMIC: u32 = 2;
    let dynamic = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .find(|&ph| u32_at(ph) == PT_DYNAMIC)
        .expect("the binary has a dynamic section (it is position-independent)");
    let (offset, size) = (u64_at(dynamic + 0x08) as usize, u64_at(dynamic + 0x20) as usize);
    (offset..offset + size)
        .step_by(16)
        .map(u64_at)
        .take_while(|&tag| tag != 0)
        .collect()
}

#[test]
fn the_binary_packs_its_relative_relocations_where_the_toolchain_can() {
    if option_env!("INCIDENT_BOT_PACKED_RELOCS").is_none() {
        // build.rs found no linker or C library that supports DT_RELR: nothing to check.
        return;
    }
    let elf = std::fs::read(env!("CARGO_BIN_EXE_incident-bot")).unwrap();
    const DT_RELR: u64 = 36;
    assert!(
        dynamic_tags(&elf).contains(&DT_RELR),
        "the toolchain supports -z pack-relative-relocs but the binary has no DT_RELR entry"
    );
}
