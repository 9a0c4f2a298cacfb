//! Just enough of the ELF format (64-bit, little endian) to read program
//! headers: whether an executable names an interpreter (is dynamically linked),
//! and the notes of a kernel image.

/// `PT_INTERP`: the program interpreter of a dynamically linked executable.
pub const PT_INTERP: u32 = 3;
/// `PT_NOTE`: a segment of notes.
pub const PT_NOTE: u32 = 4;

/// A program header: its type, and where its bytes lie in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// `p_type`.
    pub kind: u32,
    /// `p_offset`.
    pub offset: u64,
    /// `p_filesz`.
    pub size: u64,
}

pub(crate) fn u16_at(d: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        d.get(o..o.checked_add(2)?)?.try_into().ok()?,
    ))
}

pub(crate) fn u32_at(d: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        d.get(o..o.checked_add(4)?)?.try_into().ok()?,
    ))
}

pub(crate) fn u64_at(d: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        d.get(o..o.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// The program headers of the ELF64 little-endian image starting `data` (which
/// must hold at least the headers), or `None` when it is not one or is cut short.
pub fn segments(data: &[u8]) -> Option<Vec<Segment>> {
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if data.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return None;
    }
    let (phoff, phentsize, phnum) = (
        u64_at(data, 0x20)?,
        u16_at(data, 0x36)?,
        u16_at(data, 0x38)?,
    );
    (0..phnum as usize)
        .map(|i| {
            let ph = usize::try_from(phoff).ok()? + i * phentsize as usize;
            Some(Segment {
                kind: u32_at(data, ph)?,
                offset: u64_at(data, ph + 8)?,
                size: u64_at(data, ph + 32)?,
            })
        })
        .collect()
}

/// The notes `(name, type)` of every `PT_NOTE` segment of a whole ELF image.
pub fn notes(elf: &[u8]) -> Vec<(&[u8], u32)> {
    let mut out = Vec::new();
    for s in segments(elf).unwrap_or_default() {
        if s.kind != PT_NOTE {
            continue;
        }
        let (Ok(mut p), Ok(end)) = (
            usize::try_from(s.offset),
            usize::try_from(s.offset + s.size),
        ) else {
            continue;
        };
        while p + 12 <= end {
            let (Some(namesz), Some(descsz), Some(ty)) =
                (u32_at(elf, p), u32_at(elf, p + 4), u32_at(elf, p + 8))
            else {
                break;
            };
            let name = elf.get(p + 12..p + 12 + namesz as usize).unwrap_or(&[]);
            out.push((name, ty));
            let align = |n: u32| (n as usize).div_ceil(4) * 4;
            p += 12 + align(namesz) + align(descsz);
        }
    }
    out
}
