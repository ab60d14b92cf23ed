//! FER2013 in the Kaggle CSV layout (`emotion,pixels,Usage`), plain or gzipped.
//!
//! Each row is a 48x48 grayscale face, its label (0 angry .. 6 neutral) and its
//! split (`Training`, `PublicTest` or `PrivateTest`). A malformed row is an
//! error that names the file and its line.

use flate2::read::MultiGzDecoder;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Side of the square images.
pub const SIDE: usize = 48;

/// One image of the data set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The line of the file, 1-based, header included.
    pub line: u64,
    /// The class index, 0..7.
    pub emotion: usize,
    /// 48x48 pixels, row-major.
    pub pixels: Vec<u8>,
    /// The split this row belongs to.
    pub usage: String,
}

/// A file that cannot be read as FER2013.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {reason}")]
    Row {
        file: String,
        line: u64,
        reason: String,
    },
}

/// Reads every row of `path` whose `Usage` is `split` (all rows when `None`).
/// A `.gz` file is decompressed on the fly.
pub fn read(path: &Path, split: Option<&str>) -> Result<Vec<Row>, DatasetError> {
    let file_name = path.display().to_string();
    let io = |source| DatasetError::Io {
        file: file_name.clone(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    parse(reader, &file_name, split)
}

/// Parses CSV text from `reader`; `file` names it in errors.
pub fn parse(reader: impl Read, file: &str, split: Option<&str>) -> Result<Vec<Row>, DatasetError> {
    let row_error = |line: u64, reason: String| DatasetError::Row {
        file: file.to_string(),
        line,
        reason,
    };
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| row_error(1, e.to_string()))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .ok_or_else(|| {
                row_error(
                    1,
                    format!(
                        "no `{name}` column; a FER2013 CSV has the header `emotion,pixels,Usage`"
                    ),
                )
            })
    };
    let (emotion_column, pixels_column, usage_column) =
        (column("emotion")?, column("pixels")?, column("Usage")?);

    let mut rows = Vec::new();
    for record in csv.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            row_error(line, e.to_string())
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |index: usize| record.get(index).unwrap_or("").trim();
        let usage = field(usage_column);
        if split.is_some_and(|wanted| wanted != usage) {
            continue;
        }
        let emotion: usize = field(emotion_column)
            .parse()
            .ok()
            .filter(|&e| e < 7)
            .ok_or_else(|| {
                row_error(
                    line,
                    format!(
                        "emotion `{}` is not a class from 0 to 6",
                        field(emotion_column)
                    ),
                )
            })?;
        let pixels = field(pixels_column)
            .split_ascii_whitespace()
            .map(|p| p.parse::<u8>())
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| {
                row_error(
                    line,
                    format!("pixels: {e} (expected numbers from 0 to 255)"),
                )
            })?;
        if pixels.len() != SIDE * SIDE {
            return Err(row_error(
                line,
                format!("{} pixels, expected {}", pixels.len(), SIDE * SIDE),
            ));
        }
        rows.push(Row {
            line,
            emotion,
            pixels,
            usage: usage.to_string(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pixels(value: &str) -> String {
        vec![value; SIDE * SIDE].join(" ")
    }

    #[test]
    fn reads_the_rows_of_one_split() {
        let text = format!(
            "emotion,pixels,Usage\n3,{},Training\n6,{},PublicTest\n",
            pixels("7"),
            pixels("255")
        );
        let rows = parse(text.as_bytes(), "f.csv", Some("PublicTest")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].line, rows[0].emotion, rows[0].pixels[100]),
            (3, 6, 255)
        );
        assert_eq!(parse(text.as_bytes(), "f.csv", None).unwrap().len(), 2);
    }

    #[test]
    fn malformed_rows_name_their_line() {
        let short = format!(
            "emotion,pixels,Usage\n3,{},Training\n1,1 2 3,Training\n",
            pixels("0")
        );
        let error = parse(short.as_bytes(), "f.csv", None)
            .unwrap_err()
            .to_string();
        assert_eq!(error, "f.csv:3: 3 pixels, expected 2304");
        let bad_label = format!("emotion,pixels,Usage\n9,{},Training\n", pixels("0"));
        let error = parse(bad_label.as_bytes(), "f.csv", None)
            .unwrap_err()
            .to_string();
        assert_eq!(error, "f.csv:2: emotion `9` is not a class from 0 to 6");
        let bad_pixel = format!(
            "emotion,pixels,Usage\n1,{} 300,Training\n",
            vec!["0"; SIDE * SIDE - 1].join(" ")
        );
        let error = parse(bad_pixel.as_bytes(), "f.csv", None)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("f.csv:2: pixels: number too large"),
            "{error}"
        );
        let error = parse("a,b\n1,2\n".as_bytes(), "f.csv", None)
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("f.csv:1: no `emotion` column"), "{error}");
    }
}
