//! PVH boot for QEMU guests: the uncompressed kernel (`vmlinux`) taken out of
//! the distribution's `bzImage`, which QEMU enters directly at the kernel's PVH
//! entry point (`XEN_ELFNOTE_PHYS32_ENTRY`, present when the kernel is built
//! with `CONFIG_PVH`, as Debian's are). This skips the real-mode set-up code and
//! the in-guest decompression of the kernel, which under TCG cost about 0.6 s of
//! every boot here (a busybox guest booted in 1.87–2.06 s from `vmlinux` against
//! 2.48–2.66 s from the `bzImage`, both with qboot, 2026-11-22).
//!
//! The payload of a `bzImage` is located by its boot protocol header
//! (`payload_offset`, `payload_length`, protocol 2.08 and later). LZ4 payloads
//! (the "legacy" LZ4 format the kernel build uses, Debian's cloud kernels) are
//! decompressed here; other compressions, or a kernel without the PVH note,
//! fall back to booting the `bzImage` as it is, which [`vmlinux`] says why.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::elf::{u16_at, u32_at};

/// The legacy LZ4 format's magic number (little endian on disk).
const LZ4_LEGACY_MAGIC: u32 = 0x184C_2102;
/// A legacy LZ4 block decompresses to at most 8 MiB.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;
/// `XEN_ELFNOTE_PHYS32_ENTRY`: the 32-bit PVH entry point.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// The uncompressed, PVH-bootable kernel for `bzimage`, from virtmark's cache
/// (extracted the first time). `Ok(Err(reason))` when this kernel cannot be
/// booted that way.
pub fn vmlinux(bzimage: &Path) -> Result<Result<PathBuf, String>> {
    let key = super::cache::Key::new(1).file(bzimage)?;
    let mut refused = None;
    let made = super::cache::entry("vmlinux", "elf", key, |dst| {
        let data =
            std::fs::read(bzimage).with_context(|| format!("reading {}", bzimage.display()))?;
        let elf = extract(&data).and_then(|elf| {
            if has_pvh_entry(&elf) {
                Ok(elf)
            } else {
                Err("the kernel has no PVH entry point (CONFIG_PVH)".to_string())
            }
        });
        match elf {
            Ok(elf) => {
                std::fs::write(dst, &elf).with_context(|| format!("writing {}", dst.display()))
            }
            Err(reason) => {
                refused = Some(reason);
                anyhow::bail!("no PVH kernel")
            }
        }
    });
    match (made, refused) {
        (_, Some(reason)) => Ok(Err(reason)),
        (Ok(path), None) => Ok(Ok(path)),
        (Err(e), None) => Err(e),
    }
}

/// The kernel ELF image inside a `bzImage`, or why it cannot be had.
pub fn extract(bz: &[u8]) -> Result<Vec<u8>, String> {
    if bz.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return Err("not a bzImage (no HdrS boot header)".into());
    }
    let version = u16_at(bz, 0x206).unwrap_or(0);
    if version < 0x208 {
        return Err(format!(
            "boot protocol {}.{:02} has no payload fields (2.08 needed)",
            version >> 8,
            version & 0xff
        ));
    }
    let setup_sects = match bz.get(0x1f1) {
        Some(0) | None => 4,
        Some(&n) => n as usize,
    };
    let pm = (setup_sects + 1) * 512;
    let (Some(off), Some(len)) = (u32_at(bz, 0x248), u32_at(bz, 0x24c)) else {
        return Err("truncated boot header".into());
    };
    let start = pm + off as usize;
    let payload = bz
        .get(start..start + len as usize)
        .ok_or("the payload lies outside the file")?;
    match u32_at(payload, 0) {
        Some(LZ4_LEGACY_MAGIC) => lz4_legacy(payload),
        _ => Err(format!(
            "the kernel payload is not LZ4-compressed (magic {:02x?})",
            &payload[..payload.len().min(4)]
        )),
    }
}

/// Decompress a legacy-format LZ4 stream: the magic, then blocks each preceded
/// by their compressed size, decompressed independently; the kernel build
/// appends the uncompressed size (4 bytes), which is checked when present.
pub fn lz4_legacy(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut pos = 4;
    while let Some(size) = u32_at(s, pos) {
        if size == LZ4_LEGACY_MAGIC {
            pos += 4;
            continue;
        }
        let end = pos + 4 + size as usize;
        if end > s.len() {
            // The appended uncompressed size, not a block.
            if s.len() - pos == 4 && size as usize != out.len() {
                return Err(format!(
                    "LZ4 payload: {} bytes out, {size} announced",
                    out.len()
                ));
            }
            break;
        }
        let at = out.len();
        out.resize(at + LZ4_LEGACY_BLOCK, 0);
        let n = lz4_flex::block::decompress_into(&s[pos + 4..end], &mut out[at..])
            .map_err(|e| format!("LZ4 payload, block at byte {pos}: {e}"))?;
        out.truncate(at + n);
        pos = end;
    }
    if out.is_empty() {
        return Err("LZ4 payload: no data".into());
    }
    Ok(out)
}

/// Whether the ELF64 image carries a `Xen` note `XEN_ELFNOTE_PHYS32_ENTRY` in a
/// `PT_NOTE` segment.
pub fn has_pvh_entry(elf: &[u8]) -> bool {
    super::elf::notes(elf)
        .iter()
        .any(|&(name, ty)| name == b"Xen\0" && ty == XEN_ELFNOTE_PHYS32_ENTRY)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 header with one PT_NOTE segment holding `notes`.
    fn elf_with_notes(notes: &[(&[u8], u32)]) -> Vec<u8> {
        let mut note = Vec::new();
        for (name, ty) in notes {
            note.extend((name.len() as u32).to_le_bytes());
            note.extend(4u32.to_le_bytes());
            note.extend(ty.to_le_bytes());
            note.extend(*name);
            note.resize(note.len().div_ceil(4) * 4, 0);
            note.extend(0x100_0000u32.to_le_bytes());
        }
        let mut e = vec![0u8; 64 + 56];
        e[..6].copy_from_slice(b"\x7fELF\x02\x01");
        e[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        e[64..68].copy_from_slice(&4u32.to_le_bytes());
        e[64 + 8..64 + 16].copy_from_slice(&120u64.to_le_bytes());
        e[64 + 32..64 + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        e.extend(note);
        e
    }

    /// A bzImage-shaped file whose payload is `elf` in legacy LZ4, in two blocks.
    fn bzimage(elf: &[u8]) -> Vec<u8> {
        let mut payload = LZ4_LEGACY_MAGIC.to_le_bytes().to_vec();
        let (a, b) = elf.split_at(elf.len() / 2);
        for part in [a, b] {
            let c = lz4_flex::block::compress(part);
            payload.extend((c.len() as u32).to_le_bytes());
            payload.extend(c);
        }
        payload.extend((elf.len() as u32).to_le_bytes());
        let mut bz = vec![0u8; 5 * 512];
        bz[0x1f1] = 4;
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        bz[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        bz[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        bz[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        bz.extend([0u8; 16]);
        bz.extend(payload);
        bz
    }

    #[test]
    fn the_kernel_comes_out_of_a_lz4_bzimage_whole() {
        let elf = elf_with_notes(&[(b"GNU\0", 3), (b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY)]);
        assert_eq!(extract(&bzimage(&elf)).unwrap(), elf);
        assert!(has_pvh_entry(&elf));
    }

    #[test]
    fn a_kernel_without_the_note_or_lz4_is_refused_with_a_reason() {
        assert!(!has_pvh_entry(&elf_with_notes(&[(b"Xen\0", 6)])));
        assert!(!has_pvh_entry(&elf_with_notes(&[(b"GNU\0", 18)])));
        let mut bz = bzimage(b"0123456789");
        // A gzip payload instead.
        bz[5 * 512 + 16..5 * 512 + 20].copy_from_slice(&[0x1f, 0x8b, 8, 0]);
        assert!(extract(&bz).unwrap_err().contains("not LZ4"));
        assert!(extract(b"MZ not a kernel").unwrap_err().contains("HdrS"));
    }

    #[test]
    fn a_wrong_announced_size_is_an_error() {
        let elf = elf_with_notes(&[(b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY)]);
        let mut bz = bzimage(&elf);
        let n = bz.len();
        bz[n - 4..].copy_from_slice(&1u32.to_le_bytes());
        assert!(extract(&bz).unwrap_err().contains("announced"));
    }
}
