//! Large copies: O_DIRECT writes that bypass the page cache, the copy-hash pipeline
//! backups and restores run through, and the kernel copy of small private files.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::PRIVATE_FILE_MODE;
use crate::error::{Error, IoContext, NamingFullDisk, Result};
use crate::files;

/// Creates `path` (which must not exist) with mode 0600 for one large sequential
/// write that bypasses the page cache (O_DIRECT) where the file system allows it.
/// Filling the cache with a copy nobody reads back only to flush it on fsync costs
/// more than the write itself, and pushes out pages the live databases need.
pub fn create_for_copy(path: &Path) -> Result<File> {
    let open = |flags: i32| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .custom_flags(flags)
            .open(path)
    };
    let file = match open(nix::libc::O_DIRECT) {
        // Some file systems (older tmpfs) refuse O_DIRECT outright.
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => open(0),
        other => other,
    }
    .io_context(|| format!("creating {}", path.display()))
    .naming_full_disk(path)?;
    // The umask may have narrowed the mode, never widened it; set it exactly.
    file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))
        .io_context(|| format!("setting the mode of {}", path.display()))?;
    Ok(file)
}

/// Reads until `buffer` is full or the input ends, so that only the last chunk is
/// short. A read O_DIRECT refuses turns O_DIRECT off for the file, as for writes.
pub fn read_full(input: &File, buffer: &mut [u8]) -> std::io::Result<usize> {
    use std::io::Read;
    let mut filled = 0;
    while filled < buffer.len() {
        match (&mut &*input).read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) && stop_direct(input)? => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Writes all of `bytes` at `offset`. A write O_DIRECT refuses (a buffer, length or
/// offset the device cannot take directly, such as a short last chunk) turns O_DIRECT
/// off for the file and is written through the page cache instead.
pub fn write_all_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    match file.write_all_at(bytes, offset) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) && stop_direct(file)? => {
            file.write_all_at(bytes, offset)
        }
        other => other,
    }
}

/// Clears O_DIRECT on `file`; false when it was not set.
fn stop_direct(file: &File) -> std::io::Result<bool> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_retain(fcntl(file, FcntlArg::F_GETFL)?);
    if !flags.contains(OFlag::O_DIRECT) {
        return Ok(false);
    }
    fcntl(file, FcntlArg::F_SETFL(flags - OFlag::O_DIRECT))?;
    Ok(true)
}

/// Copies the rest of the open file `source` (named `from` in errors) to `to`, which
/// must not exist, with mode 0600, synced. The kernel copies the bytes.
pub fn copy_private(source: &mut File, from: &Path, to: &Path) -> Result<()> {
    let mut copy = || -> std::io::Result<()> {
        let mut target = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(to)?;
        target.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
        std::io::copy(source, &mut target)?;
        target.sync_all()
    };
    copy()
        .map_err(|e| crate::error::Error::io(format!("copying {} to {}", from.display(), to.display()), e))
        .naming_full_disk(to)
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    thread_local! {
        // Reused by a worker across the files it hashes: fresh memory costs page faults.
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let mut input = fs::File::open(path).io_context(|| format!("reading {}", path.display()))?;
    BUFFER.with_borrow_mut(|buffer| {
        let mut hasher = Sha256::new();
        loop {
            buffer.clear();
            // read_to_end fills spare capacity, so the buffer is never zeroed.
            Read::by_ref(&mut input)
                .take(Chunk::LEN as u64)
                .read_to_end(buffer)
                .io_context(|| format!("reading {}", path.display()))?;
            if buffer.is_empty() {
                break;
            }
            hasher.update(&buffer[..]);
        }
        Ok(hex(&hasher.finalize()))
    })
}

/// Copies the rest of `input` into `output` (best made by [`files::create_for_copy`])
/// and returns the SHA-256 of the bytes written; `fix_header` may edit the first chunk
/// before it is hashed and written. A large file is read, hashed and written by three
/// threads at once, so that it costs about one pass of the slowest of them. The output
/// is not synced.
pub fn copy_hashed(
    input: &fs::File,
    input_name: &Path,
    output: &fs::File,
    output_name: &Path,
    fix_header: impl FnOnce(&mut [u8]),
) -> Result<String> {
    let size = input.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    if size < PARALLEL_FROM_BYTES {
        return copy_hashed_here(input, input_name, output, output_name, fix_header);
    }
    use std::sync::mpsc;
    // Three stages, each on its own thread and chunk: this one reads, one hashes, one
    // writes; four chunks go round.
    let (to_hash, hash_queue) = mpsc::sync_channel::<(Chunk, usize)>(2);
    let (to_write, write_queue) = mpsc::sync_channel::<(Chunk, usize)>(2);
    let (give_back, empties) = mpsc::channel::<Chunk>();
    for _ in 0..4 {
        let _ = give_back.send(Chunk::new(Chunk::LEN));
    }
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for (chunk, n) in hash_queue {
                hasher.update(&chunk.bytes()[..n]);
                // A closed queue means the writer failed; its error is reported below.
                if to_write.send((chunk, n)).is_err() {
                    break;
                }
            }
            hex(&hasher.finalize())
        });
        let writer = scope.spawn(move || -> std::io::Result<()> {
            let mut offset = 0u64;
            for (chunk, n) in write_queue {
                files::write_all_at(output, &chunk.bytes()[..n], offset)?;
                offset += n as u64;
                // The reader may have stopped on an error; the chunk is not needed then.
                let _ = give_back.send(chunk);
            }
            Ok(())
        });
        let mut fix_header = Some(fix_header);
        let read = (|| -> Result<()> {
            while let Ok(mut chunk) = empties.recv() {
                let buffer = chunk.bytes_mut();
                let n = files::read_full(input, buffer)
                    .io_context(|| format!("reading {}", input_name.display()))?;
                if n == 0 {
                    break;
                }
                if let Some(fix) = fix_header.take() {
                    fix(&mut buffer[..n]);
                }
                if to_hash.send((chunk, n)).is_err() {
                    break;
                }
            }
            Ok(())
        })();
        drop(to_hash);
        let sum = hasher.join();
        let written = writer
            .join()
            .map_err(|_| Error::unexpected("the copy writer panicked"))?;
        read?;
        written
            .io_context(|| format!("writing {}", output_name.display()))
            .naming_full_disk(output_name)?;
        sum.map_err(|_| Error::unexpected("the copy hasher panicked"))
    })
}

/// [`copy_hashed`] on this thread alone, through one buffer the thread keeps.
fn copy_hashed_here(
    input: &fs::File,
    input_name: &Path,
    output: &fs::File,
    output_name: &Path,
    fix_header: impl FnOnce(&mut [u8]),
) -> Result<String> {
    thread_local! {
        static CHUNK: std::cell::RefCell<Option<Chunk>> = const { std::cell::RefCell::new(None) };
    }
    CHUNK.with_borrow_mut(|chunk| {
        let buffer = chunk.get_or_insert_with(|| Chunk::new(Chunk::LEN)).bytes_mut();
        let mut hasher = Sha256::new();
        let mut fix_header = Some(fix_header);
        let mut offset = 0u64;
        loop {
            let n =
                files::read_full(input, buffer).io_context(|| format!("reading {}", input_name.display()))?;
            if n == 0 {
                break;
            }
            if let Some(fix) = fix_header.take() {
                fix(&mut buffer[..n]);
            }
            hasher.update(&buffer[..n]);
            files::write_all_at(output, &buffer[..n], offset)
                .io_context(|| format!("writing {}", output_name.display()))
                .naming_full_disk(output_name)?;
            offset += n as u64;
        }
        Ok(hex(&hasher.finalize()))
    })
}

/// A buffer of up to 4 MiB aligned as O_DIRECT needs (4 KiB covers every common
/// device).
struct Chunk {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl Chunk {
    const LEN: usize = 4 * 1024 * 1024;
    const ALIGN: usize = 4096;

    fn new(len: usize) -> Self {
        let raw = vec![0u8; len + Self::ALIGN];
        let start = raw.as_ptr().align_offset(Self::ALIGN);
        Self { raw, start, len }
    }
    fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// Files at least this large are copied, hashed and checked on separate threads at
/// once; smaller ones one step after another, since a fleet of them already keeps
/// every core busy and threads per file would only add switching.
pub const PARALLEL_FROM_BYTES: u64 = 16 * 1024 * 1024;

/// Runs `first` on another thread while `second` runs on this one when `parallel`,
/// else one after the other; returns both results.
pub fn beside<A: Send, B>(
    parallel: bool,
    first: impl FnOnce() -> Result<A> + Send,
    second: impl FnOnce() -> B,
) -> (Result<A>, B) {
    if !parallel {
        let a = first();
        return (a, second());
    }
    std::thread::scope(|scope| {
        let a = scope.spawn(first);
        let b = second();
        let a = a
            .join()
            .unwrap_or_else(|_| Err(Error::unexpected("a worker thread panicked")));
        (a, b)
    })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_sha256_hex() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"abc").unwrap();
        assert_eq!(
            sha256_file(&file).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn copies_of_any_length_are_exact_and_hashed_as_written() {
        let dir = tempfile::tempdir().unwrap();
        // Nothing, a short unaligned tail (which O_DIRECT refuses), whole chunks, and a
        // file large enough for the three-thread pipeline.
        for len in [
            0usize,
            3,
            4096,
            Chunk::LEN + 12_345,
            PARALLEL_FROM_BYTES as usize + 12_345,
        ] {
            let source = dir.path().join(format!("in-{len}"));
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            fs::write(&source, &bytes).unwrap();
            let dest = dir.path().join(format!("out-{len}"));
            let output = files::create_for_copy(&dest).unwrap();
            let input = fs::File::open(&source).unwrap();
            let sum = copy_hashed(&input, &source, &output, &dest, |header| {
                if let Some(first) = header.first_mut() {
                    *first ^= 0xff;
                }
            })
            .unwrap();
            drop(output);
            let mut expected = bytes.clone();
            if let Some(first) = expected.first_mut() {
                *first ^= 0xff;
            }
            assert!(fs::read(&dest).unwrap() == expected, "length {len}");
            assert_eq!(sum, sha256_file(&dest).unwrap(), "length {len}");
        }
    }
}
