//! The import ABI, mirrored from vfs/wasqlite_abi.h. A unit test parses the
//! header and fails if the two disagree.

/// Version of the contract; the guest exports it as `wasqlite_abi_version`.
pub(crate) const ABI_VERSION: i32 = 7;

/// The module every guest import lives in.
pub(crate) const IMPORT_MODULE: &str = "wasqlite";

/// The VFS methods forwarded to the host, at their index in
/// `WASQLITE_VFS_METHODS`.
pub(crate) const VFS_METHODS: [&str; 20] = [
    "xOpen",
    "xDelete",
    "xAccess",
    "xFullPathname",
    "xRandomness",
    "xSleep",
    "xCurrentTimeInt64",
    "xGetLastError",
    "xClose",
    "xRead",
    "xWrite",
    "xTruncate",
    "xSync",
    "xFileSize",
    "xLock",
    "xUnlock",
    "xCheckReservedLock",
    "xFileControl",
    "xSectorSize",
    "xDeviceCharacteristics",
];

/// Value type tags of the row and parameter encodings.
pub(crate) mod tag {
    pub(crate) const INTEGER: u8 = 1;
    pub(crate) const REAL: u8 = 2;
    pub(crate) const TEXT: u8 = 3;
    pub(crate) const BLOB: u8 = 4;
    pub(crate) const NULL: u8 = 5;
}

/// Returned by `wasqlite_bind` for a parameter buffer that does not decode.
pub(crate) const BAD_PARAMS: i32 = 0x10000;

/// The length that stands for NULL in the column and description encodings.
pub(crate) const NO_TEXT: u32 = 0xFFFF_FFFF;

/// The most result columns a statement can have: SQLite's ceiling on
/// SQLITE_MAX_COLUMN, whatever the guest was built or opened with. A larger
/// count from the guest is a broken guest, refused before it sizes anything.
pub(crate) const MAX_COLUMNS: usize = 32767;

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = include_str!("../../vfs/wasqlite_abi.h");

    fn define(name: &str) -> &'static str {
        let line = HEADER
            .lines()
            .find(|l| l.starts_with(&format!("#define {name} ")))
            .unwrap_or_else(|| panic!("{name} missing from the header"));
        line.split_whitespace().nth(2).unwrap()
    }

    #[test]
    fn method_table_matches_the_header() {
        let from_header: Vec<(usize, &str)> = HEADER
            .lines()
            .filter_map(|l| l.trim().strip_prefix("X("))
            .map(|rest| {
                let (index, name) = rest.split_once(')').unwrap().0.split_once(',').unwrap();
                (index.trim().parse().unwrap(), name.trim())
            })
            .collect();
        let ours: Vec<(usize, &str)> = VFS_METHODS.iter().copied().enumerate().collect();
        assert_eq!(from_header, ours);
    }

    #[test]
    fn constants_match_the_header() {
        assert_eq!(define("WASQLITE_ABI_VERSION").parse::<i32>().unwrap(), ABI_VERSION);
        assert_eq!(define("WASQLITE_INTEGER").parse::<u8>().unwrap(), tag::INTEGER);
        assert_eq!(define("WASQLITE_REAL").parse::<u8>().unwrap(), tag::REAL);
        assert_eq!(define("WASQLITE_TEXT").parse::<u8>().unwrap(), tag::TEXT);
        assert_eq!(define("WASQLITE_BLOB").parse::<u8>().unwrap(), tag::BLOB);
        assert_eq!(define("WASQLITE_NULL").parse::<u8>().unwrap(), tag::NULL);
        assert_eq!(i32::from_str_radix(define("WASQLITE_BAD_PARAMS").trim_start_matches("0x"), 16).unwrap(), BAD_PARAMS);
        assert_eq!(u32::from_str_radix(define("WASQLITE_NO_TEXT").trim_start_matches("0x"), 16).unwrap(), NO_TEXT);
    }
}
