//! Boxes and labels drawn on a photo, in one colour per emotion, with the
//! 8x8 bitmap font of the `font8x8` crate scaled up, so no system font is needed.

use crate::faces::Face;
use font8x8::UnicodeFonts;
use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_rect_mut};
use imageproc::rect::Rect;

/// The colour of an emotion: the original demo's colours for angry, sad,
/// happy and surprise, and distinct ones for the rest.
pub fn emotion_color(label: &str) -> Rgb<u8> {
    match label {
        "angry" => Rgb([230, 40, 40]),
        "disgust" => Rgb([110, 170, 40]),
        "fear" => Rgb([160, 70, 200]),
        "happy" => Rgb([250, 210, 20]),
        "sad" => Rgb([40, 90, 230]),
        "surprise" => Rgb([20, 200, 220]),
        _ => Rgb([40, 200, 90]),
    }
}

/// Draws every face's box with its emotion label and that label's probability
/// (`happy 93%`) and, when known, its gender (`man 80%`) above it.
/// `emotion_labels` names the entries of [`Face::emotion`] in order.
/// Lines and letters grow with the face and with the photo, so a label reads
/// at a glance, also on a large photo seen shrunk to a screen, and fits the
/// width of its box where the photo allows.
pub fn annotate(
    image: &mut RgbImage,
    faces: &[Face],
    emotion_labels: &[&str],
    gender_labels: Option<&[&str]>,
) {
    for face in faces {
        let color = emotion_color(face.label);
        let b = face.face_box;
        let lines = label_lines(face, emotion_labels, gender_labels);
        let scale = text_scale(&lines, b.width, image.width().max(image.height()));
        for inset in 0..2 * scale {
            if b.width > 2 * inset && b.height > 2 * inset {
                let rect = Rect::at((b.x + inset) as i32, (b.y + inset) as i32)
                    .of_size(b.width - 2 * inset, b.height - 2 * inset);
                draw_hollow_rect_mut(image, rect, color);
            }
        }
        // Stacked above the box, or over its top at the top of the photo, and
        // moved left where the box is too near the right edge to show it all.
        let line_height = 8 * scale + 2 * scale;
        let mut y = b.y.saturating_sub(line_height * lines.len() as u32);
        for line in &lines {
            let width = text_width(line, scale);
            let x = b.x.min(image.width().saturating_sub(width));
            draw_filled_rect_mut(
                image,
                Rect::at(x as i32, y as i32).of_size(width, line_height),
                color,
            );
            draw_text(image, line, x + scale, y + scale, scale, Rgb([0, 0, 0]));
            y += line_height;
        }
    }
}

/// `happy 93%` and, when known, `man 80%`. The emotion label need not be the
/// most likely one: a video shows the smoothed label, with this frame's
/// probability of it.
fn label_lines(
    face: &Face,
    emotion_labels: &[&str],
    gender_labels: Option<&[&str]>,
) -> Vec<String> {
    let probability = emotion_labels
        .iter()
        .position(|&l| l == face.label)
        .and_then(|index| face.emotion.get(index));
    let mut lines = vec![match probability {
        Some(p) => format!("{} {:.0}%", face.label, 100.0 * p),
        None => face.label.to_string(),
    }];
    if let (Some(probabilities), Some(labels)) = (&face.gender, gender_labels) {
        let best = crate::runtime::argmax(probabilities);
        lines.push(format!(
            "{} {:.0}%",
            labels[best],
            100.0 * probabilities[best]
        ));
    }
    lines
}

/// Screen pixels per font pixel: as large as lets the widest line fit the
/// box, so that labels of neighbouring faces do not run into each other, but
/// at least one per 700 pixels of photo, so a label stays legible when a
/// screen shows a large photo shrunk.
fn text_scale(lines: &[String], box_width: u32, photo_side: u32) -> u32 {
    let widest = lines
        .iter()
        .map(|line| text_width(line, 1))
        .max()
        .unwrap_or(1);
    (box_width / widest.max(1))
        .max(photo_side / 700)
        .clamp(1, 8)
}

/// The width of a line's background: 8 font pixels a letter and one of margin
/// on each side.
fn text_width(line: &str, scale: u32) -> u32 {
    (8 * line.chars().count() as u32 + 2) * scale
}

/// Writes `text` with its top left at `(x, y)`, each font pixel `scale` pixels wide.
fn draw_text(image: &mut RgbImage, text: &str, x: u32, y: u32, scale: u32, color: Rgb<u8>) {
    for (index, ch) in text.chars().enumerate() {
        let Some(rows) = font8x8::BASIC_FONTS.get(ch) else {
            continue;
        };
        let left = x + index as u32 * 8 * scale;
        for (row, bits) in rows.iter().enumerate() {
            for column in 0..8 {
                if bits & (1 << column) != 0 {
                    let rect = Rect::at(
                        (left + column * scale) as i32,
                        (y + row as u32 * scale) as i32,
                    )
                    .of_size(scale, scale);
                    draw_filled_rect_mut(image, rect, color);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::FaceBox;

    #[test]
    fn draws_the_box_and_label_in_the_emotion_colour_and_stays_inside() {
        let mut image = RgbImage::from_pixel(200, 150, Rgb([255, 255, 255]));
        let face = Face {
            face_box: FaceBox {
                x: 50,
                y: 40,
                width: 60,
                height: 60,
            },
            emotion: vec![0.0, 0.0, 0.0, 0.9, 0.1, 0.0, 0.0],
            label: "happy",
            gender: None,
        };
        // A face at the very edge must not draw outside the image.
        let edge = Face {
            face_box: FaceBox {
                x: 190,
                y: 0,
                width: 10,
                height: 10,
            },
            ..face.clone()
        };
        let labels = &crate::models::emotion::MiniXception::LABELS;
        annotate(&mut image, &[face, edge], labels, None);
        let happy = emotion_color("happy");
        assert_eq!(image.get_pixel(50, 70), &happy, "left edge of the box");
        assert_eq!(
            image.get_pixel(80, 70),
            &Rgb([255, 255, 255]),
            "inside the box stays untouched"
        );
        // The label sits above the box: its background, and black letter pixels on it.
        let label_row: Vec<&Rgb<u8>> = (50..120).map(|x| image.get_pixel(x, 35)).collect();
        assert!(label_row.contains(&&happy) && label_row.contains(&&Rgb([0, 0, 0])));
        // The edge face's `happy 90%` is 74 pixels wide at scale 1, so it is
        // moved left to end at the image's right edge: x 126 to 199.
        assert_eq!(
            image.get_pixel(126, 1),
            &happy,
            "left end of the moved label"
        );
        assert_eq!(
            image.get_pixel(199, 1),
            &happy,
            "right end, inside the image"
        );
        assert_eq!(image.get_pixel(125, 1), &Rgb([255, 255, 255]));
    }

    #[test]
    fn labels_fit_their_box_but_stay_legible_on_large_photos() {
        let lines = ["surprise 84%".to_string(), "woman 53%".to_string()];
        // 98 font pixels wide: a 255-pixel box fits scale 2, not 3.
        assert_eq!(text_scale(&lines, 255, 770), 2);
        assert_eq!(text_width(&lines[0], 2), 196);
        // A small face on a 2048-pixel photo still gets scale 2.
        assert_eq!(text_scale(&lines, 60, 2048), 2);
        // And the scale stops at 8 for a face filling a huge photo.
        assert_eq!(text_scale(&lines, 4000, 4000), 8);
    }
}
