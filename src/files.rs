//! Reading whole files with a size limit, checked before anything is
//! allocated: a file of several gigabytes named where a cascade or a weight
//! file belongs is refused, not read into memory.

use std::io::Read;
use std::path::Path;

/// The largest weight file read (Keras or native): 1 GiB, four times the
/// weights of the largest network the compiler accepts.
pub const MAX_WEIGHTS_BYTES: u64 = 1 << 30;
/// The largest training checkpoint read: the parameters, the statistics
/// and Adam's two moments of the largest network the compiler accepts.
pub const MAX_CHECKPOINT_BYTES: u64 = 4 << 30;
/// The largest image file read.
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// The hex sha256 of `bytes`: how downloaded files and distillation teachers
/// are recognised.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The whole of `path`, or an error of kind `InvalidData` when it holds more
/// than `limit` bytes (`what` names the kind of file in the message).
pub fn read_limited(path: &Path, limit: u64, what: &str) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let too_large = |size: u64| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the file holds {size} bytes, past the limit of {limit} for {what}"),
        )
    };
    let declared = file.metadata()?.len();
    if declared > limit {
        return Err(too_large(declared));
    }
    // The size can change between the check and the read, and some files
    // (pipes, /proc) report none: never read past the limit.
    let mut bytes = Vec::with_capacity(declared as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_past_the_limit_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.xml");
        // Sparse: 8 GiB declared, nothing written.
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(8 << 30).unwrap();
        let error = read_limited(&path, crate::detect::MAX_CASCADE_BYTES, "a cascade").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(
            error.to_string(),
            "the file holds 8589934592 bytes, past the limit of 67108864 for a cascade"
        );
        // Through each reader: the file and the limit are named.
        let cascade = crate::detect::Cascade::from_xml_file(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            cascade.contains("huge.xml") && cascade.contains("limit of 67108864"),
            "{cascade}"
        );
        let keras = crate::keras::KerasFile::open(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            keras.contains("huge.xml") && keras.contains("limit of 1073741824 for weights"),
            "{keras}"
        );
        let image = crate::preprocess::load_image(&path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            image.contains("huge.xml") && image.contains("limit of 1073741824 for an image"),
            "{image}"
        );
        std::fs::write(&path, b"small").unwrap();
        assert_eq!(read_limited(&path, 5, "x").unwrap(), b"small");
        assert!(read_limited(&path, 4, "x").is_err());
    }
}
