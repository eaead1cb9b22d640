//! Reading a file that input named (a key part file a desired file points at, the fleet
//! behind `sim:`, a plan file): only a regular file, and at most a bound of bytes. A desired
//! file under review can name `/dev/zero` or a FIFO; `validate` in CI must then fail at once,
//! not read until the machine runs out of memory, or wait forever for a writer.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The file's text, if it is a regular file of at most `bytes_max` bytes of UTF-8. The error
/// says which of these it is not, in words that quote nothing of the file.
pub fn read_to_string(path: &Path, bytes_max: u64) -> io::Result<String> {
    String::from_utf8(read(path, bytes_max)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// The file's bytes, if it is a regular file of at most `bytes_max` bytes.
pub fn read(path: &Path, bytes_max: u64) -> io::Result<Vec<u8>> {
    // Checked before opening: opening a FIFO for reading blocks until someone writes.
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a device, a pipe or a folder)",
        ));
    }
    let mut bytes = Vec::new();
    File::open(path)?
        .take(bytes_max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > bytes_max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("longer than the limit of {bytes_max} bytes"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_small_file_and_refuses_devices_and_long_files() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("f.txt");
        std::fs::write(&path, "hello").unwrap();
        assert_eq!(read_to_string(&path, 5).unwrap(), "hello");
        let long = read_to_string(&path, 4).unwrap_err();
        assert!(long.to_string().contains("limit of 4 bytes"), "{long}");
        let device = read_to_string(Path::new("/dev/zero"), 1 << 20).unwrap_err();
        assert!(
            device.to_string().contains("not a regular file"),
            "{device}"
        );
        let folder_error = read_to_string(folder.path(), 1 << 20).unwrap_err();
        assert!(folder_error.to_string().contains("not a regular file"));
        std::fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(
            read_to_string(&path, 5)
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }
}
