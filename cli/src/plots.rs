//! The pictures of a training run, drawn with plotters: `curves.png` (loss
//! and accuracy per epoch, training and validation) and `confusion.png` (the
//! validation confusion matrix of the best weights).
//!
//! Text needs a TrueType font, which plotters reads through `ab_glyph` from
//! bytes it is given: the first of a few common system fonts that exists
//! (DejaVu Sans, Liberation Sans, Noto Sans) is read once. On a machine with
//! none of them the pictures are drawn without text, and [`font_available`]
//! says so; the numbers are in `history.csv` either way.

use image::RgbImage;
use mini_xception::train::checkpoint::EpochRecord;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::Path;
use std::sync::OnceLock;

/// The family name under which the system font is registered.
const FAMILY: &str = "sans-serif";

/// Where Debian, Fedora, Arch and macOS keep a plain sans-serif font.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
];

/// A picture that could not be drawn or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw {file}: {reason}")]
pub struct PlotError {
    /// The picture's path.
    pub file: String,
    /// What went wrong.
    pub reason: String,
}

/// Whether a system font was found, so that the pictures have text.
pub fn font_available() -> bool {
    *FONT.get_or_init(|| {
        FONT_PATHS.iter().any(|path| {
            // Read once and kept for the process: plotters wants the bytes
            // for as long as it draws.
            std::fs::read(path).ok().is_some_and(|bytes| {
                register_font(FAMILY, FontStyle::Normal, Vec::leak(bytes)).is_ok()
            })
        })
    })
}

static FONT: OnceLock<bool> = OnceLock::new();

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 420;
const TRAIN: RGBColor = RGBColor(31, 119, 180);
const VALIDATION: RGBColor = RGBColor(214, 39, 40);

/// Draws `history` to `path` (PNG): the loss on the left, the accuracy on the
/// right, one line for training and one for validation in each.
pub fn draw_curves(history: &[EpochRecord], path: &Path) -> Result<(), PlotError> {
    curves(history, path, font_available())
}

/// [`draw_curves`], with text (captions, tick labels, legend) or without.
fn curves(history: &[EpochRecord], path: &Path, text: bool) -> Result<(), PlotError> {
    let error = |reason: String| PlotError {
        file: path.display().to_string(),
        reason,
    };
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        let (left, right) = root.split_horizontally(WIDTH / 2);
        let epochs = history.len().max(1) as f64;
        let losses = history
            .iter()
            .flat_map(|r| [r.train_loss, r.validation_loss])
            .filter(|v| v.is_finite());
        let top = losses.fold(0.0f64, f64::max).max(1e-3) * 1.05;
        let panels = [
            (
                left,
                "loss",
                top,
                (|r: &EpochRecord| r.train_loss) as fn(&EpochRecord) -> f64,
                (|r: &EpochRecord| r.validation_loss) as fn(&EpochRecord) -> f64,
            ),
            (
                right,
                "accuracy",
                1.0,
                |r: &EpochRecord| r.train_accuracy,
                |r: &EpochRecord| r.validation_accuracy,
            ),
        ];
        for (area, name, top, train, validation) in panels {
            let mut builder = ChartBuilder::on(&area);
            builder.margin(12);
            if text {
                builder
                    .caption(name, (FAMILY, 20))
                    .x_label_area_size(36)
                    .y_label_area_size(52);
            }
            let mut chart = builder
                .build_cartesian_2d(0.5f64..epochs + 0.5, 0.0f64..top)
                .map_err(|e| error(e.to_string()))?;
            let mut mesh = chart.configure_mesh();
            if text {
                mesh.x_desc("epoch").label_style((FAMILY, 14));
            } else {
                // Tick labels need the font.
                mesh.disable_axes();
            }
            mesh.draw().map_err(|e| error(e.to_string()))?;
            for (values, colour, label) in [
                (train, TRAIN, "training"),
                (validation, VALIDATION, "validation"),
            ] {
                let points: Vec<(f64, f64)> = history
                    .iter()
                    .map(|r| (r.epoch as f64, values(r)))
                    .filter(|(_, v)| v.is_finite())
                    .collect();
                let series = chart
                    .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                    .map_err(|e| error(e.to_string()))?;
                if text {
                    series.label(label).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                }
                chart
                    .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                    .map_err(|e| error(e.to_string()))?;
            }
            if text {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .label_font((FAMILY, 14))
                    .position(SeriesLabelPosition::UpperRight)
                    .draw()
                    .map_err(|e| error(e.to_string()))?;
            }
        }
        root.present().map_err(|e| error(e.to_string()))?;
    }
    save(buffer, WIDTH, HEIGHT, path).map_err(error)
}

/// Draws `confusion` (`confusion[true][predicted]`, counts) to `path` (PNG):
/// each cell shaded by the share of its true class that it holds, with the
/// count written in it.
pub fn draw_confusion(
    confusion: &[Vec<usize>],
    labels: &[&str],
    path: &Path,
) -> Result<(), PlotError> {
    confusion_matrix(confusion, labels, path, font_available())
}

/// [`draw_confusion`], with text (labels and counts) or without.
fn confusion_matrix(
    confusion: &[Vec<usize>],
    labels: &[&str],
    path: &Path,
    text: bool,
) -> Result<(), PlotError> {
    let error = |reason: String| PlotError {
        file: path.display().to_string(),
        reason,
    };
    let classes = confusion.len();
    let (width, height) = (640u32, 600u32);
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        let mut builder = ChartBuilder::on(&root);
        builder.margin(16);
        if text {
            builder
                .caption(
                    "confusion (rows: true label, columns: predicted)",
                    (FAMILY, 18),
                )
                .x_label_area_size(40)
                .y_label_area_size(90);
        }
        let mut chart = builder
            .build_cartesian_2d(0..classes, 0..classes)
            .map_err(|e| error(e.to_string()))?;
        // The axes without tick labels: each class's name goes at the middle
        // of its row and column below.
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_y_mesh()
            .disable_axes()
            .draw()
            .map_err(|e| error(e.to_string()))?;
        if text {
            let style = TextStyle::from((FAMILY, 13).into_font()).color(&BLACK);
            for class in 0..classes {
                let name = labels.get(class).copied().unwrap_or("?");
                // Row 0 at the top, as a table reads.
                let (x, _) = chart.backend_coord(&(class, 0));
                let (_, bottom) = chart.backend_coord(&(0, 0));
                let (cell_right, row_top) = chart.backend_coord(&(class + 1, classes - class));
                let (_, row_bottom) = chart.backend_coord(&(0, classes - 1 - class));
                let (left, _) = chart.backend_coord(&(0, 0));
                root.draw(&Text::new(
                    name.to_string(),
                    ((x + cell_right) / 2 - 3 * name.len() as i32, bottom + 8),
                    style.clone(),
                ))
                .map_err(|e| error(e.to_string()))?;
                root.draw(&Text::new(
                    name.to_string(),
                    (
                        left - 8 - 7 * name.len() as i32,
                        (row_top + row_bottom) / 2 - 7,
                    ),
                    style.clone(),
                ))
                .map_err(|e| error(e.to_string()))?;
            }
        }
        let cells = confusion.iter().enumerate().flat_map(|(truth, row)| {
            let total = row.iter().sum::<usize>().max(1) as f64;
            row.iter()
                .enumerate()
                .map(move |(predicted, &count)| (truth, predicted, count, count as f64 / total))
        });
        for (truth, predicted, count, share) in cells {
            let y = classes - 1 - truth;
            let shade = (255.0 * (1.0 - share)).round() as u8;
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(predicted, y), (predicted + 1, y + 1)],
                    RGBColor(shade, shade, 255).filled(),
                )))
                .map_err(|e| error(e.to_string()))?;
            if text {
                let colour = if share > 0.5 { WHITE } else { BLACK };
                let style = TextStyle::from((FAMILY, 15).into_font()).color(&colour);
                let (x0, y0) = chart.backend_coord(&(predicted, y + 1));
                let (x1, y1) = chart.backend_coord(&(predicted + 1, y));
                root.draw(&Text::new(
                    count.to_string(),
                    ((x0 + x1) / 2 - 12, (y0 + y1) / 2 - 8),
                    style,
                ))
                .map_err(|e| error(e.to_string()))?;
            }
        }
        root.present().map_err(|e| error(e.to_string()))?;
    }
    save(buffer, width, height, path).map_err(error)
}

/// Writes an RGB buffer as PNG, through a temporary file beside it renamed
/// into place, so that a reader never sees half a picture.
fn save(buffer: Vec<u8>, width: u32, height: u32, path: &Path) -> Result<(), String> {
    let image = RgbImage::from_raw(width, height, buffer)
        .ok_or_else(|| "the picture's buffer has the wrong size".to_string())?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = Path::new(&temporary);
    image
        .save_with_format(temporary, image::ImageFormat::Png)
        .and_then(|()| std::fs::rename(temporary, path).map_err(image::ImageError::IoError))
        .map_err(|e| {
            let _ = std::fs::remove_file(temporary);
            e.to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize, loss: f64, accuracy: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            learning_rate: 1e-3,
            train_loss: loss,
            train_accuracy: accuracy,
            validation_loss: loss * 1.1,
            validation_accuracy: accuracy * 0.9,
            seconds: 1.0,
        }
    }

    /// Five epochs of falling loss and rising accuracy.
    fn history() -> Vec<EpochRecord> {
        (1..=5)
            .map(|e| record(e, 2.0 / e as f64, 0.2 + 0.08 * e as f64))
            .collect()
    }

    /// Three classes; the second is always right, the first 80% of the time.
    fn confusion() -> Vec<Vec<usize>> {
        vec![vec![8, 1, 1], vec![0, 10, 0], vec![5, 0, 5]]
    }

    /// The picture of [`confusion`] at `path` shades its cells by share.
    fn assert_shaded(path: &Path) {
        let image = image::open(path).unwrap().to_rgb8();
        // Cell (1, 1) holds its whole row: the full colour (0, 0, 255).
        assert!(count(&image, RGBColor(0, 0, 255)) > 1000);
        // Cell (0, 0) holds 0.8 of its row: (51, 51, 255).
        assert!(count(&image, RGBColor(51, 51, 255)) > 1000);
    }

    fn count(image: &RgbImage, colour: RGBColor) -> usize {
        image
            .pixels()
            .filter(|p| p.0 == [colour.0, colour.1, colour.2])
            .count()
    }

    #[test]
    fn curves_draw_both_lines_in_both_panels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let history = history();
        draw_curves(&history, &path).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        // Each colour's lines reach into both halves of the picture.
        for colour in [TRAIN, VALIDATION] {
            let (left, right) = image
                .enumerate_pixels()
                .filter(|(_, _, p)| p.0 == [colour.0, colour.1, colour.2])
                .fold((0, 0), |(l, r), (x, _, _)| {
                    if x < WIDTH / 2 {
                        (l + 1, r)
                    } else {
                        (l, r + 1)
                    }
                });
            assert!(
                left > 100 && right > 100,
                "{colour:?}: {left} and {right} pixels"
            );
        }
        // A run without epochs still gives a picture: axes and the legend's
        // swatches, far fewer coloured pixels than lines.
        draw_curves(&[], &path).unwrap();
        let empty = image::open(&path).unwrap().to_rgb8();
        assert_eq!(empty.dimensions(), (WIDTH, HEIGHT));
        assert!(count(&empty, TRAIN) < 200, "{}", count(&empty, TRAIN));
    }

    #[test]
    fn confusion_shades_the_diagonal_most() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.png");
        draw_confusion(&confusion(), &["a", "b", "c"], &path).unwrap();
        assert_shaded(&path);
    }

    #[test]
    fn without_a_font_the_pictures_keep_their_lines_and_shades() {
        // A machine without any of FONT_PATHS: no text, the rest drawn.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curves.png");
        let history = history();
        curves(&history, &path, false).unwrap();
        let image = image::open(&path).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (WIDTH, HEIGHT));
        assert!(count(&image, TRAIN) > 200 && count(&image, VALIDATION) > 200);
        // Text, axes and the legend's frame are drawn in black; without a
        // font only the mesh's grey lines and the coloured series are left.
        assert_eq!(count(&image, BLACK), 0);
        if font_available() {
            curves(&history, &path, true).unwrap();
            assert!(count(&image::open(&path).unwrap().to_rgb8(), BLACK) > 100);
        }

        let path = dir.path().join("confusion.png");
        confusion_matrix(&confusion(), &["a", "b", "c"], &path, false).unwrap();
        assert_shaded(&path);
    }

    #[test]
    fn an_unwritable_path_is_an_error_naming_it() {
        let error = draw_curves(
            &[record(1, 1.0, 0.5)],
            Path::new("/nonexistent/dir/curves.png"),
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/dir/curves.png"),
            "{error}"
        );
    }
}
