//! Draws a picture of three cartoon faces for the README's example of
//! `mini-xception faces --out`.
//!
//! The project may commit only what it makes, so the README cannot show one
//! of the reference photos; OpenCV's frontal-face cascade finds these drawn
//! faces too, so the tool can annotate a picture the project owns.
//!
//! ```text
//! cargo run --release -p mini-xception --example cartoon_faces -- docs/cartoon_faces.png
//! cargo run --release -- faces --out docs docs/cartoon_faces.png
//! ```

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_ellipse_mut, draw_polygon_mut};
use imageproc::point::Point;
use std::f32::consts::PI;
use std::path::PathBuf;
use std::process::ExitCode;

const BACKGROUND: Rgb<u8> = Rgb([70, 90, 120]);
const SKIN: Rgb<u8> = Rgb([224, 180, 150]);
const SHADOW: Rgb<u8> = Rgb([200, 150, 125]);
const HAIR: Rgb<u8> = Rgb([60, 40, 30]);
const EYE_WHITE: Rgb<u8> = Rgb([250, 250, 250]);
const IRIS: Rgb<u8> = Rgb([40, 30, 20]);
const LIPS: Rgb<u8> = Rgb([150, 50, 50]);
const MOUTH_INSIDE: Rgb<u8> = Rgb([90, 20, 20]);

/// The mouth is what tells the expressions apart.
#[derive(Clone, Copy)]
enum Mouth {
    Smile,
    Open,
    Straight,
}

/// A face of `size` pixels from brow to chin, centred on `(x, y)`.
struct Face {
    x: f32,
    y: f32,
    size: f32,
    mouth: Mouth,
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: cartoon_faces OUT.png");
        return ExitCode::FAILURE;
    };
    let faces = [
        Face {
            x: 150.0,
            y: 215.0,
            size: 190.0,
            mouth: Mouth::Smile,
        },
        Face {
            x: 385.0,
            y: 215.0,
            size: 190.0,
            mouth: Mouth::Open,
        },
        Face {
            x: 620.0,
            y: 215.0,
            size: 190.0,
            mouth: Mouth::Straight,
        },
    ];
    let mut picture = RgbImage::from_pixel(770, 430, BACKGROUND);
    for face in &faces {
        draw_face(&mut picture, face);
    }
    // Soft edges, as a camera would give, rather than aliased shapes.
    let picture = imageproc::filter::gaussian_blur_f32(&picture, 1.5);
    match picture.save(&out) {
        Ok(()) => {
            eprintln!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("cartoon_faces: {}: {error}", out.display());
            ExitCode::FAILURE
        }
    }
}

fn draw_face(picture: &mut RgbImage, face: &Face) {
    let Face { x, y, size: s, .. } = *face;
    ellipse(picture, (x, y + 0.025 * s), (0.5 * s, 0.675 * s), SKIN);
    // The hair is the top half of an ellipse over the forehead.
    let hair: Vec<(f32, f32)> = (0..=32)
        .map(|i| PI + PI * i as f32 / 32.0)
        .map(|angle| {
            (
                x + 0.52 * s * angle.cos(),
                y - 0.31 * s + 0.41 * s * angle.sin(),
            )
        })
        .collect();
    polygon(picture, &hair, HAIR);
    for side in [-1.0, 1.0] {
        let eye = (x + side * 0.2 * s, y - 0.08 * s);
        band(
            picture,
            &[
                (eye.0 - 0.13 * s, eye.1 - 0.12 * s),
                (eye.0 + 0.13 * s, eye.1 - 0.12 * s),
            ],
            0.04 * s,
            HAIR,
        );
        ellipse(picture, eye, (0.1 * s, 0.045 * s), EYE_WHITE);
        ellipse(picture, eye, (0.045 * s, 0.045 * s), IRIS);
    }
    polygon(
        picture,
        &[
            (x, y - 0.02 * s),
            (x - 0.06 * s, y + 0.2 * s),
            (x + 0.06 * s, y + 0.2 * s),
        ],
        SHADOW,
    );
    let mouth_y = y + 0.38 * s;
    match face.mouth {
        Mouth::Smile => {
            let smile: Vec<(f32, f32)> = (0..=16)
                .map(|i| 0.1 * PI + 0.8 * PI * i as f32 / 16.0)
                .map(|angle| {
                    (
                        x + 0.2 * s * angle.cos(),
                        mouth_y - 0.05 * s + 0.1 * s * angle.sin(),
                    )
                })
                .collect();
            band(picture, &smile, 0.04 * s, LIPS);
        }
        Mouth::Open => ellipse(
            picture,
            (x, mouth_y + 0.01 * s),
            (0.08 * s, 0.09 * s),
            MOUTH_INSIDE,
        ),
        Mouth::Straight => band(
            picture,
            &[(x - 0.15 * s, mouth_y), (x + 0.15 * s, mouth_y)],
            0.04 * s,
            LIPS,
        ),
    }
}

fn ellipse(picture: &mut RgbImage, (x, y): (f32, f32), (rx, ry): (f32, f32), color: Rgb<u8>) {
    let round = |v: f32| v.round() as i32;
    draw_filled_ellipse_mut(picture, (round(x), round(y)), round(rx), round(ry), color);
}

fn polygon(picture: &mut RgbImage, corners: &[(f32, f32)], color: Rgb<u8>) {
    let mut points: Vec<Point<i32>> = corners
        .iter()
        .map(|&(x, y)| Point::new(x.round() as i32, y.round() as i32))
        .collect();
    // imageproc wants an open polygon: no repeated points, first != last.
    points.dedup();
    if points.len() > 1 && points.first() == points.last() {
        points.pop();
    }
    if points.len() >= 3 {
        draw_polygon_mut(picture, &points, color);
    }
}

/// A stroke of `width` pixels along a polyline, as one polygon: the line
/// shifted up by half the width, then back along it shifted down.
fn band(picture: &mut RgbImage, line: &[(f32, f32)], width: f32, color: Rgb<u8>) {
    let half = width / 2.0;
    let outline: Vec<(f32, f32)> = line
        .iter()
        .map(|&(x, y)| (x, y - half))
        .chain(line.iter().rev().map(|&(x, y)| (x, y + half)))
        .collect();
    polygon(picture, &outline, color);
}
