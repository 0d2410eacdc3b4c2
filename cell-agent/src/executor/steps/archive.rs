//! Downloaded archives as the tar stream garden's StreamIn takes: a gzipped
//! tar is unzipped, a zip is rewritten as tar, a plain tar passes as is.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};

/// Why an archive could not be turned into tar.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Not gzip, zip or tar.
    #[error("not a tgz, zip or tar archive")]
    UnknownFormat,
    /// Reading or writing failed (a corrupt archive, a full disk).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The zip archive is unusable.
    #[error("bad zip archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// A zip entry names a path outside the destination.
    #[error("zip entry {0:?} leaves the destination directory")]
    UnsafePath(String),
}

enum Format {
    Gzip,
    Zip,
    Tar,
}

fn sniff(file: &mut File) -> Result<Format, ArchiveError> {
    let mut head = [0u8; 512];
    let mut filled = 0;
    while filled < head.len() {
        let n = file.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    file.seek(SeekFrom::Start(0))?;
    if head[..filled].starts_with(&[0x1f, 0x8b]) {
        Ok(Format::Gzip)
    } else if head[..filled].starts_with(b"PK\x03\x04") || head[..filled].starts_with(b"PK\x05\x06")
    {
        Ok(Format::Zip)
    } else if filled == 512 && &head[257..262] == b"ustar" {
        Ok(Format::Tar)
    } else {
        Err(ArchiveError::UnknownFormat)
    }
}

/// Writes `archive` as a tar stream to `out`. Blocking.
pub(super) fn to_tar(mut archive: File, out: &mut File) -> Result<(), ArchiveError> {
    match sniff(&mut archive)? {
        Format::Gzip => {
            let mut gz = flate2::read::GzDecoder::new(BufReader::new(archive));
            std::io::copy(&mut gz, out)?;
        }
        Format::Tar => {
            std::io::copy(&mut archive, out)?;
        }
        Format::Zip => zip_to_tar(archive, out)?,
    }
    out.flush()?;
    out.seek(SeekFrom::Start(0))?;
    Ok(())
}

fn zip_to_tar(archive: File, out: &mut File) -> Result<(), ArchiveError> {
    let mut zip = zip::ZipArchive::new(BufReader::new(archive))?;
    let mut tar = tar::Builder::new(out);
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i)?;
        let name = entry.name()?.into_owned();
        let path = entry
            .enclosed_name()
            .ok_or_else(|| ArchiveError::UnsafePath(name.clone()))?;
        let mode = entry.unix_mode();
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        if entry.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(mode.map(|m| m & 0o7777).unwrap_or(0o755));
            header.set_size(0);
            tar.append_data(&mut header, &path, std::io::empty())?;
        } else if entry.is_symlink() {
            let mut target = String::new();
            entry.read_to_string(&mut target)?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            tar.append_link(&mut header, &path, target)?;
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode.map(|m| m & 0o7777).unwrap_or(0o644));
            header.set_size(entry.size());
            tar.append_data(&mut header, &path, &mut entry)?;
        }
    }
    tar.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn entries(mut tar_file: File) -> Vec<(String, String)> {
        let mut text = Vec::new();
        tar_file.read_to_end(&mut text).expect("read");
        let mut archive = tar::Archive::new(text.as_slice());
        let mut out = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let path = entry.path().expect("path").display().to_string();
            let mut body = String::new();
            entry.read_to_string(&mut body).expect("body");
            out.push((path, body));
        }
        out
    }

    #[test]
    fn zip_and_tgz_become_tar() {
        let dir = tempfile::tempdir().expect("tempdir");
        let zip_path = dir.path().join("a.zip");
        let mut zip = zip::ZipWriter::new(File::create(&zip_path).expect("create"));
        let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
        zip.add_directory("bin/", options).expect("dir");
        zip.start_file("bin/run", options).expect("file");
        zip.write_all(b"#!/bin/sh\n").expect("write");
        zip.finish().expect("finish");
        let mut out = tempfile::tempfile().expect("out");
        to_tar(File::open(&zip_path).expect("open"), &mut out).expect("convert");
        assert_eq!(
            entries(out),
            [
                ("bin".into(), String::new()),
                ("bin/run".into(), "#!/bin/sh\n".into())
            ]
        );

        let tgz_path = dir.path().join("a.tgz");
        let gz = flate2::write::GzEncoder::new(
            File::create(&tgz_path).expect("create"),
            flate2::Compression::fast(),
        );
        let mut builder = tar::Builder::new(gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(2);
        header.set_mode(0o644);
        builder
            .append_data(&mut header, "hello", &b"hi"[..])
            .expect("append");
        builder.into_inner().expect("tar").finish().expect("gz");
        let mut out = tempfile::tempfile().expect("out");
        to_tar(File::open(&tgz_path).expect("open"), &mut out).expect("convert");
        assert_eq!(entries(out), [("hello".into(), "hi".into())]);

        let junk = dir.path().join("junk");
        std::fs::write(&junk, b"not an archive").expect("write");
        let mut out = tempfile::tempfile().expect("out");
        let err = to_tar(File::open(&junk).expect("open"), &mut out).expect_err("junk");
        assert_eq!(err.to_string(), "not a tgz, zip or tar archive");
    }
}
