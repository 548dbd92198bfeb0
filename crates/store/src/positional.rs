//! Reads and writes at a file offset, on Unix and on Windows.
//!
//! The access log rewrites fixed slots in place; Unix has `pread`/`pwrite`
//! (`FileExt::*_at`), Windows `seek_read`/`seek_write`, which may transfer
//! fewer bytes than asked and move the file cursor (nothing here uses it).

use std::fs::File;
use std::io;

/// Writes all of `buf` at `offset`.
pub fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::write_all_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut done, mut offset) = (0, offset);
        while done < buf.len() {
            match std::os::windows::fs::FileExt::seek_write(file, &buf[done..], offset)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => (done, offset) = (done + n, offset + n as u64),
            }
        }
        Ok(())
    }
}

/// Fills `buf` from `offset`; an early end of file is `UnexpectedEof`.
pub fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(windows)]
    {
        let (mut done, mut offset) = (0, offset);
        while done < buf.len() {
            match std::os::windows::fs::FileExt::seek_read(file, &mut buf[done..], offset)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => (done, offset) = (done + n, offset + n as u64),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        write_all_at(&file, b"abcdef", 0).unwrap();
        write_all_at(&file, b"XY", 2).unwrap();
        let mut buf = [0u8; 4];
        read_exact_at(&file, &mut buf, 1).unwrap();
        assert_eq!(&buf, b"bXYe");
        assert_eq!(read_exact_at(&file, &mut buf, 4).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
