//! Checked access to guest linear memory. Every pointer and length that
//! comes from the guest goes through here: a bad one yields `None`, which
//! the caller turns into an error code for the guest, never a host panic.

/// `len` bytes at guest address `ptr`, if they are all inside `mem`.
pub(crate) fn slice(mem: &[u8], ptr: i32, len: i32) -> Option<&[u8]> {
    let (start, len) = (usize::try_from(ptr).ok()?, usize::try_from(len).ok()?);
    mem.get(start..start.checked_add(len)?)
}

/// Mutable form of [`slice`].
pub(crate) fn slice_mut(mem: &mut [u8], ptr: i32, len: i32) -> Option<&mut [u8]> {
    let (start, len) = (usize::try_from(ptr).ok()?, usize::try_from(len).ok()?);
    mem.get_mut(start..start.checked_add(len)?)
}

/// Writes a little-endian i32 at `ptr`.
pub(crate) fn write_i32(mem: &mut [u8], ptr: i32, value: i32) -> Option<()> {
    slice_mut(mem, ptr, 4)?.copy_from_slice(&value.to_le_bytes());
    Some(())
}

/// Writes a little-endian i64 at `ptr`.
pub(crate) fn write_i64(mem: &mut [u8], ptr: i32, value: i64) -> Option<()> {
    slice_mut(mem, ptr, 8)?.copy_from_slice(&value.to_le_bytes());
    Some(())
}

/// Reads a little-endian i32 at `ptr`.
pub(crate) fn read_i32(mem: &[u8], ptr: i32) -> Option<i32> {
    Some(i32::from_le_bytes(slice(mem, ptr, 4)?.try_into().ok()?))
}

/// Reads a little-endian i64 at `ptr`.
pub(crate) fn read_i64(mem: &[u8], ptr: i32) -> Option<i64> {
    Some(i64::from_le_bytes(slice(mem, ptr, 8)?.try_into().ok()?))
}

/// Reads the NUL-terminated string at `ptr`, looking at most `max` bytes.
pub(crate) fn c_str(mem: &[u8], ptr: i32, max: usize) -> Option<&[u8]> {
    let start = usize::try_from(ptr).ok()?;
    let tail = mem.get(start..)?;
    let window = &tail[..tail.len().min(max)];
    let end = window.iter().position(|b| *b == 0)?;
    Some(&window[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_and_negative_are_refused() {
        let mut mem = vec![0u8; 16];
        assert!(slice(&mem, 12, 4).is_some());
        assert!(slice(&mem, 13, 4).is_none());
        assert!(slice(&mem, -1, 1).is_none());
        assert!(slice(&mem, 0, -1).is_none());
        assert!(slice(&mem, i32::MAX, i32::MAX).is_none());
        assert!(write_i64(&mut mem, 9, 1).is_none());
        assert!(write_i32(&mut mem, 12, 7).is_some());
        assert_eq!(read_i32(&mem, 12), Some(7));
    }

    #[test]
    fn c_str_needs_a_terminator_within_bounds() {
        let mem = b"abc\0def".to_vec();
        assert_eq!(c_str(&mem, 0, 100), Some(&b"abc"[..]));
        assert_eq!(c_str(&mem, 4, 100), None);
        assert_eq!(c_str(&mem, 0, 2), None);
    }
}
