//! The faults that change bytes: a bit in a live process's memory, bits or the tail of the
//! checkpoint file.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use kestrel_link::noise::Rng;

/// A writable private mapping of a process.
struct Region {
    start: u64,
    end: u64,
    name: String,
}

fn writable_regions(pid: u32) -> Result<Vec<Region>, String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).map_err(|e| format!("/proc/{pid}/maps: {e}"))?;
    Ok(maps
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (range, perms) = (fields.next()?, fields.next()?);
            let name = fields.nth(3).unwrap_or("[anonymous]").to_owned();
            let (start, end) = range.split_once('-')?;
            let region =
                Region { start: u64::from_str_radix(start, 16).ok()?, end: u64::from_str_radix(end, 16).ok()?, name };
            // the kernel's own pages cannot be written through /proc/PID/mem
            let kernel = region.name.starts_with("[v");
            (perms.starts_with("rw") && !kernel).then_some(region)
        })
        .collect())
}

/// The address of byte `offset` of `spans` (start, bytes) taken end to end, and which span holds it.
fn address_of_byte(spans: &[(u64, u64)], mut offset: u64) -> Option<(usize, u64)> {
    for (i, &(start, bytes)) in spans.iter().enumerate() {
        if offset < bytes {
            return Some((i, start + offset));
        }
        offset -= bytes;
    }
    None
}

/// Flips one random bit of the running process's writable memory, chosen uniformly over its bytes;
/// says where.
pub fn memory_seu(pid: u32, rng: &mut Rng) -> Result<String, String> {
    let regions = writable_regions(pid)?;
    let total: u64 = regions.iter().map(|r| r.end - r.start).sum();
    if total == 0 {
        return Err(format!("process {pid} has no writable memory"));
    }
    let spans: Vec<(u64, u64)> = regions.iter().map(|r| (r.start, r.end - r.start)).collect();
    let (part, address) = address_of_byte(&spans, rng.below(total)).ok_or("no region holds the chosen byte")?;
    let region = &regions[part];
    let bit = rng.below(8) as u8;
    let path = format!("/proc/{pid}/mem");
    let mut memory = std::fs::File::options().read(true).write(true).open(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut byte = [0u8; 1];
    memory
        .seek(SeekFrom::Start(address))
        .and_then(|_| memory.read_exact(&mut byte))
        .map_err(|e| format!("{path} at {address:#x}: {e}"))?;
    byte[0] ^= 1 << bit;
    memory
        .seek(SeekFrom::Start(address))
        .and_then(|_| memory.write_all(&byte))
        .map_err(|e| format!("{path} at {address:#x}: {e}"))?;
    Ok(format!("bit {bit} at {address:#x} in {}", region.name))
}

/// Flips the top bit of `bits` random bytes of the region `name` that flight's fault map
/// (`KESTREL_FAULT_MAP`) names, if the live process still has it; says where. A region of several
/// parts (the weights: one per tensor) is hit uniformly over all their bytes.
pub fn targeted_seu(pid: u32, map: &Path, name: &str, bits: u32, rng: &mut Rng) -> Result<String, String> {
    let text = std::fs::read_to_string(map).map_err(|e| format!("no fault map: {e}"))?;
    let parts: Vec<(u64, u64)> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let region = fields.next()?;
            let address = u64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
            let bytes: u64 = fields.next()?.parse().ok()?;
            (region == name && bytes > 0).then_some((address, bytes))
        })
        .collect();
    if parts.is_empty() {
        return Err(format!("the fault map names no `{name}`"));
    }
    let writable = writable_regions(pid)?;
    if let Some((address, _)) =
        parts.iter().find(|(address, bytes)| !writable.iter().any(|r| r.start <= *address && address + bytes <= r.end))
    {
        return Err(format!("`{name}` at {address:#x} is not in process {pid}'s memory (a stale map)"));
    }
    let total: u64 = parts.iter().map(|(_, bytes)| bytes).sum();
    let path = format!("/proc/{pid}/mem");
    let mut memory = std::fs::File::options().read(true).write(true).open(&path).map_err(|e| format!("{path}: {e}"))?;
    for _ in 0..bits {
        let (_, at) = address_of_byte(&parts, rng.below(total)).ok_or("no part holds the chosen byte")?;
        let mut byte = [0u8; 1];
        memory
            .seek(SeekFrom::Start(at))
            .and_then(|_| memory.read_exact(&mut byte))
            .and_then(|()| memory.seek(SeekFrom::Start(at)))
            .and_then(|_| memory.write_all(&[byte[0] ^ 0x80]))
            .map_err(|e| format!("{path} at {at:#x}: {e}"))?;
    }
    Ok(format!("{bits} top bits flipped in `{name}` ({total} bytes in {} parts)", parts.len()))
}

/// Flips `bits` random bits of `file`; says how many bytes it has.
pub fn flip_file_bits(file: &Path, bits: u32, rng: &mut Rng) -> Result<String, String> {
    let mut bytes = std::fs::read(file).map_err(|e| format!("`{}`: {e}", file.display()))?;
    if bytes.is_empty() {
        return Err(format!("`{}` is empty", file.display()));
    }
    for _ in 0..bits {
        let at = rng.below(bytes.len() as u64) as usize;
        bytes[at] ^= 1 << rng.below(8);
    }
    std::fs::write(file, &bytes).map_err(|e| format!("`{}`: {e}", file.display()))?;
    Ok(format!("{bits} bits flipped in {} bytes", bytes.len()))
}

/// Cuts `file` to a random shorter length; says where.
pub fn truncate_file(file: &Path, rng: &mut Rng) -> Result<String, String> {
    let length = std::fs::metadata(file).map_err(|e| format!("`{}`: {e}", file.display()))?.len();
    let cut = rng.below(length.max(1));
    std::fs::File::options()
        .write(true)
        .open(file)
        .and_then(|f| f.set_len(cut))
        .map_err(|e| format!("`{}`: {e}", file.display()))?;
    Ok(format!("cut from {length} to {cut} bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_at(pid: u32, address: u64) -> u8 {
        let mut memory = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
        let mut byte = [0u8; 1];
        memory.seek(SeekFrom::Start(address)).and_then(|_| memory.read_exact(&mut byte)).expect("read");
        byte[0]
    }

    #[test]
    fn a_seu_flips_exactly_one_bit_of_a_live_process() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep");
        // until the dynamic loader is done, the mappings still change
        let maps = || std::fs::read_to_string(format!("/proc/{}/maps", child.id())).expect("maps");
        let mut previous = maps();
        loop {
            std::thread::sleep(std::time::Duration::from_millis(50));
            let now = maps();
            if now == previous {
                break;
            }
            previous = now;
        }
        let regions = writable_regions(child.id()).expect("maps");
        assert!(!regions.is_empty(), "a process has writable memory");
        assert!(regions.iter().all(|r| r.end > r.start && !r.name.starts_with("[v")));
        // the same seed picks the same bit again: the second upset undoes the first
        let said = memory_seu(child.id(), &mut Rng::new(7)).expect("flipped");
        let (bit, address) = said.strip_prefix("bit ").and_then(|s| s.split_once(" at 0x")).expect("where");
        let (bit, address): (u8, u64) =
            (bit.parse().expect("bit"), u64::from_str_radix(address.split(' ').next().expect("hex"), 16).expect("hex"));
        let upset = byte_at(child.id(), address);
        assert_eq!(memory_seu(child.id(), &mut Rng::new(7)).expect("flipped back"), said);
        assert_eq!(upset ^ byte_at(child.id(), address), 1 << bit);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn a_byte_offset_over_several_spans_lands_in_the_right_one() {
        let spans = [(0x1000, 16), (0x8000, 4), (0x2000, 100)];
        assert_eq!(address_of_byte(&spans, 0), Some((0, 0x1000)));
        assert_eq!(address_of_byte(&spans, 15), Some((0, 0x100f)));
        assert_eq!(address_of_byte(&spans, 16), Some((1, 0x8000)));
        assert_eq!(address_of_byte(&spans, 20), Some((2, 0x2000)));
        assert_eq!(address_of_byte(&spans, 119), Some((2, 0x2063)));
        assert_eq!(address_of_byte(&spans, 120), None);
    }

    #[test]
    fn file_faults_change_what_they_say() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("db");
        std::fs::write(&file, vec![0u8; 1000]).expect("write");
        flip_file_bits(&file, 5, &mut Rng::new(1)).expect("flip");
        let ones: u32 = std::fs::read(&file).expect("read").iter().map(|b| b.count_ones()).sum();
        assert!((1..=5).contains(&ones), "{ones} bits set");
        let said = truncate_file(&file, &mut Rng::new(2)).expect("cut");
        let length = std::fs::metadata(&file).expect("meta").len();
        assert!(length < 1000 && said.ends_with(&format!("to {length} bytes")), "{said}");
    }
}
