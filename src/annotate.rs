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
/// at a glance, also on a large photo seen shrunk to a screen, and stays
/// about as wide as its box.
pub fn annotate(
    image: &mut RgbImage,
    faces: &[Face],
    emotion_labels: &[&str],
    gender_labels: Option<&[&str]>,
) {
    for face in faces {
        let color = emotion_color(face.label);
        let b = face.face_box;
        // `neutral 65%` is 88 font pixels wide: one font pixel per 80 pixels
        // of box keeps the label near the box's width; one per 700 pixels of
        // photo keeps it legible when a screen shows the photo shrunk.
        let scale = (b.width / 80)
            .max(image.width().max(image.height()) / 700)
            .clamp(1, 8);
        for inset in 0..2 * scale {
            if b.width > 2 * inset && b.height > 2 * inset {
                let rect = Rect::at((b.x + inset) as i32, (b.y + inset) as i32)
                    .of_size(b.width - 2 * inset, b.height - 2 * inset);
                draw_hollow_rect_mut(image, rect, color);
            }
        }
        // The label need not be the most likely one: a video shows the
        // smoothed label, with this frame's probability of it.
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
        // One short line each for emotion and gender, stacked above the box,
        // so that labels of neighbouring faces rarely run into each other.
        let line_height = 8 * scale + 2 * scale;
        let mut y = b.y.saturating_sub(line_height * lines.len() as u32);
        for line in &lines {
            let width = 8 * scale * line.chars().count() as u32 + 2 * scale;
            draw_filled_rect_mut(
                image,
                Rect::at(b.x as i32, y as i32).of_size(width, line_height),
                color,
            );
            draw_text(image, line, b.x + scale, y + scale, scale, Rgb([0, 0, 0]));
            y += line_height;
        }
    }
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
    }
}
