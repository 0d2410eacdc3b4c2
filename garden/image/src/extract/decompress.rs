//! Layer blobs come plain, gzip- or zstd-compressed; the first bytes say
//! which, whatever the media type claims.

use std::io::{self, BufRead, BufReader, Read};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Wraps `blob` in the decompressor its magic bytes call for.
pub fn open<'a>(blob: impl Read + 'a) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, blob);
    let head = buffered.fill_buf()?;
    if head.starts_with(&GZIP_MAGIC) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(buffered)))
    } else if head.starts_with(&ZSTD_MAGIC) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(buffered)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(buffered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_gzip_and_plain() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"hello").expect("write");
        let gz = gz.finish().expect("finish");
        let mut out = String::new();
        open(&gz[..])
            .expect("open")
            .read_to_string(&mut out)
            .expect("read");
        assert_eq!(out, "hello");
        out.clear();
        open(&b"plain"[..])
            .expect("open")
            .read_to_string(&mut out)
            .expect("read");
        assert_eq!(out, "plain");
    }

    #[test]
    fn detects_zstd() {
        let z = ruzstd::encoding::compress_to_vec(
            &b"zstd layer"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut out = String::new();
        open(&z[..])
            .expect("open")
            .read_to_string(&mut out)
            .expect("read");
        assert_eq!(out, "zstd layer");
    }
}
