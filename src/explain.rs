//! What the classifier looks at: saliency maps of a face crop's predicted
//! (or given) label, by guided back-propagation, as the paper explains its
//! model, or by Grad-CAM, drawn for a person to read.
//!
//! The maps come from the backward pass that `mini_xception!` generates for
//! training, run on the inference model (batch norms with their moving
//! statistics; see [`crate::runtime::train::Saliency`]), so they work for
//! any weights of any model file, folded or not.
//!
//! ```no_run
//! use mini_xception::explain::{Explainer, Method};
//! use mini_xception::models::{emotion::MiniXception, load_weights};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let weights = load_weights::<MiniXception>("emotion.safetensors".as_ref())?;
//! let mut explainer = Explainer::<MiniXception>::new(&weights)?;
//! let face = mini_xception::preprocess::load_gray("face.png".as_ref())?;
//! let explanation = explainer.explain(&face, Method::GuidedBackprop, None)?;
//! explanation.render().save("face.guided-backprop.png")?;
//! # Ok(())
//! # }
//! ```

use crate::models::fill_input;
use crate::preprocess::ResizeError;
use crate::runtime::loss::LabelOutOfRange;
use crate::runtime::softmax::softmax_slice;
use crate::runtime::train::{MissingTensor, TrainableModel, unfold};
use crate::runtime::{Isa, bytemuck, flat};
use crate::saliency::{Saliency, SaliencyMap};
use image::imageops::{FilterType, resize};
use image::{GrayImage, Rgb, RgbImage};

/// How a saliency map is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// The gradient of the label's score with respect to the input pixels,
    /// each ReLU passing only positive gradients of positive outputs
    /// (Springenberg et al., 2015): fine detail, pixel by pixel.
    GuidedBackprop,
    /// The last module's output, each channel weighed by its mean gradient,
    /// positive part (Selvaraju et al., 2017): coarse regions.
    GradCam,
}

impl Method {
    /// Its name on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Method::GuidedBackprop => "guided-backprop",
            Method::GradCam => "grad-cam",
        }
    }
}

/// Why a face could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Resize(#[from] ResizeError),
    #[error(transparent)]
    Label(#[from] LabelOutOfRange),
}

/// One face's saliency map and what the model made of the face.
#[derive(Clone, Debug)]
pub struct Explanation {
    /// How the map was made.
    pub method: Method,
    /// The face as the model saw it: resized to its input, grayscale.
    pub face: GrayImage,
    /// The label explained.
    pub label: &'static str,
    /// The model's probabilities for the face, in label order.
    pub probabilities: Vec<f32>,
    /// The raw map: the input gradient (guided back-propagation) or the
    /// class activation map at the last module's resolution (Grad-CAM).
    pub map: SaliencyMap,
}

/// Saliency maps for one model and its weights.
pub struct Explainer<M: TrainableModel> {
    saliency: Saliency<M>,
    input: Box<M::Input>,
}

impl<M: TrainableModel> Explainer<M> {
    /// An explainer for the model with these (folded) weights.
    pub fn new(weights: &M::Weights) -> Result<Self, MissingTensor> {
        Ok(Self {
            saliency: Saliency::new(unfold::<M>(weights)?, Isa::detect()),
            input: bytemuck::zeroed_box(),
        })
    }

    /// The saliency map of `label` (the predicted label when `None`) for a
    /// grayscale face crop of any size, resized to the model's input as the
    /// classifier does.
    pub fn explain(
        &mut self,
        face: &GrayImage,
        method: Method,
        label: Option<usize>,
    ) -> Result<Explanation, ExplainError> {
        fill_input::<M>(face, &mut self.input)?;
        let map = self.map(method, label)?;
        let [height, width, _] = M::INPUT_SHAPE;
        let seen = GrayImage::from_fn(width as u32, height as u32, |x, y| {
            let value = flat(&*self.input)[y as usize * width + x as usize];
            // The inverse of the input normalisation, `(p / 255 - 0.5) * 2`.
            image::Luma([((value / 2.0 + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8])
        });
        let probabilities = softmax_slice(&map.logits);
        Ok(Explanation {
            method,
            face: seen,
            label: M::CLASS_LABELS.get(map.label).copied().unwrap_or("?"),
            probabilities,
            map,
        })
    }

    /// The raw map of an input already normalised for the model.
    pub fn map_input(
        &mut self,
        input: &M::Input,
        method: Method,
        label: Option<usize>,
    ) -> Result<SaliencyMap, LabelOutOfRange> {
        *self.input = *input;
        self.map(method, label)
    }

    fn map(
        &mut self,
        method: Method,
        label: Option<usize>,
    ) -> Result<SaliencyMap, LabelOutOfRange> {
        match method {
            Method::GuidedBackprop => self.saliency.guided_backprop(&self.input, label),
            Method::GradCam => self.saliency.grad_cam(&self.input, label),
        }
    }
}

/// Each side of a panel of [`Explanation::render`], in pixels.
const PANEL: u32 = 192;

impl Explanation {
    /// The map as one value in `[0, 1]` per pixel of the face, 1 where it
    /// matters most. For guided back-propagation the gradient's magnitude
    /// (summed over channels) over its 99th percentile, clamped at 1: a
    /// gradient's magnitudes have a long tail, and over the largest value a
    /// few pixels would leave the rest black. For Grad-CAM the map resized to
    /// the face (bilinear, as OpenCV's `INTER_LINEAR`) over its largest
    /// value. A map of zeros stays zero.
    pub fn intensity(&self) -> Vec<f32> {
        let [height, width, channels] = self.map.shape;
        let magnitude: Vec<f32> = self
            .map
            .values
            .chunks_exact(channels.max(1))
            .map(|pixel| pixel.iter().map(|v| v.abs()).sum())
            .collect();
        let (face_width, face_height) = self.face.dimensions();
        let at_face_size = if (width as u32, height as u32) == (face_width, face_height) {
            magnitude
        } else {
            upsample(&magnitude, [height, width], [face_height, face_width])
        };
        let mut sorted = at_face_size.clone();
        sorted.sort_by(f32::total_cmp);
        let largest = sorted.last().copied().unwrap_or(0.0);
        let percentile = sorted.get(sorted.len() * 99 / 100).copied().unwrap_or(0.0);
        let scale = match self.method {
            Method::GuidedBackprop if percentile > 0.0 => percentile,
            _ => largest,
        };
        if scale > 0.0 {
            at_face_size.iter().map(|v| (v / scale).min(1.0)).collect()
        } else {
            at_face_size
        }
    }

    /// Three panels side by side: the face as the model saw it, the map in
    /// a colour map (inferno: black, purple, orange, yellow as it grows), and
    /// the map over the face, coloured where it matters and the face
    /// showing through elsewhere.
    pub fn render(&self) -> RgbImage {
        let (width, height) = self.face.dimensions();
        let intensity = self.intensity();
        let colour = |v: f32| {
            let c = colorous::INFERNO.eval_continuous(v.clamp(0.0, 1.0) as f64);
            [c.r, c.g, c.b]
        };
        let face = RgbImage::from_fn(width, height, |x, y| {
            let g = self.face.get_pixel(x, y).0[0];
            Rgb([g, g, g])
        });
        let map = RgbImage::from_fn(width, height, |x, y| {
            Rgb(colour(intensity[(y * width + x) as usize]))
        });
        let overlay = RgbImage::from_fn(width, height, |x, y| {
            let v = intensity[(y * width + x) as usize];
            let g = f32::from(self.face.get_pixel(x, y).0[0]);
            let c = colour(v);
            // Mostly colour where the map is high, the face alone where it is zero.
            let alpha = 0.85 * v;
            Rgb(c.map(|c| (alpha * f32::from(c) + (1.0 - alpha) * g).round() as u8))
        });
        let mut out = RgbImage::new(3 * PANEL, PANEL);
        for (i, panel) in [face, map, overlay].iter().enumerate() {
            let scaled = resize(panel, PANEL, PANEL, FilterType::Triangle);
            image::imageops::replace(&mut out, &scaled, i as i64 * PANEL as i64, 0);
        }
        out
    }
}

/// `values`, a `from` (rows, columns) map, resized to `to` bilinearly with
/// OpenCV's `INTER_LINEAR` sampling (pixel centres aligned).
fn upsample(values: &[f32], from: [usize; 2], to: [u32; 2]) -> Vec<f32> {
    // Not through an 8-bit image resize: that would round the map.
    let [rows, columns] = from;
    let (out_rows, out_columns) = (to[0] as usize, to[1] as usize);
    if rows == 0 || columns == 0 {
        return vec![0.0; out_rows * out_columns];
    }
    let sample = |position: usize, size_in: usize, size_out: usize| {
        let scale = size_in as f32 / size_out as f32;
        let x = ((position as f32 + 0.5) * scale - 0.5).max(0.0);
        let low = (x.floor() as usize).min(size_in - 1);
        let high = (low + 1).min(size_in - 1);
        (low, high, x - low as f32)
    };
    let mut out = Vec::with_capacity(out_rows * out_columns);
    for y in 0..out_rows {
        let (y0, y1, fy) = sample(y, rows, out_rows);
        for x in 0..out_columns {
            let (x0, x1, fx) = sample(x, columns, out_columns);
            let at = |r: usize, c: usize| values[r * columns + c];
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An explanation of a uniform gray face whose map is zero but for one
    /// spot.
    fn spot_explanation() -> Explanation {
        let mut values = vec![0.0f32; 16 * 16];
        values[5 * 16 + 9] = -3.0;
        Explanation {
            method: Method::GuidedBackprop,
            face: GrayImage::from_pixel(16, 16, image::Luma([100])),
            label: "happy",
            probabilities: vec![1.0],
            map: SaliencyMap {
                label: 0,
                logits: vec![0.0],
                shape: [16, 16, 1],
                values,
            },
        }
    }

    #[test]
    fn the_intensity_is_the_magnitude_over_its_largest() {
        let intensity = spot_explanation().intensity();
        assert_eq!(intensity[5 * 16 + 9], 1.0);
        assert_eq!(intensity.iter().filter(|&&v| v != 0.0).count(), 1);
    }

    #[test]
    fn guided_intensity_saturates_at_the_99th_percentile() {
        let mut explanation = spot_explanation();
        // 1 to 256: the 99th percentile is the value at index 253, 254.
        explanation.map.values = (1..=256).map(|v| v as f32).collect();
        let intensity = explanation.intensity();
        assert_eq!(intensity[0], 1.0 / 254.0);
        assert_eq!(intensity[253], 1.0);
        assert_eq!(intensity[255], 1.0);
        explanation.method = Method::GradCam;
        assert_eq!(explanation.intensity()[253], 254.0 / 256.0);
    }

    #[test]
    fn the_map_panel_is_brightest_at_the_spot_and_the_overlay_shows_the_face_elsewhere() {
        let picture = spot_explanation().render();
        assert_eq!(picture.dimensions(), (3 * PANEL, PANEL));
        let scale = PANEL / 16;
        let brightness = |p: &Rgb<u8>| p.0.iter().map(|&c| u32::from(c)).sum::<u32>();
        // The brightest pixel of the map panel lies on the spot's cell.
        let (mut best, mut at) = (0, (0, 0));
        for y in 0..PANEL {
            for x in PANEL..2 * PANEL {
                let b = brightness(picture.get_pixel(x, y));
                if b > best {
                    (best, at) = (b, ((x - PANEL) / scale, y / scale));
                }
            }
        }
        assert_eq!(at, (9, 5));
        // Far from the spot: the face panel and the overlay show the face.
        assert_eq!(picture.get_pixel(2, 2).0, [100, 100, 100]);
        assert_eq!(
            picture.get_pixel(2 * PANEL + 2, PANEL - 3).0,
            [100, 100, 100]
        );
        // On it, the overlay is coloured.
        let spot = picture.get_pixel(2 * PANEL + 9 * scale + scale / 2, 5 * scale + scale / 2);
        assert_ne!(spot.0, [100, 100, 100]);
    }

    #[test]
    fn upsampling_keeps_the_corners_and_interpolates_between_centres() {
        // 2x2 to 4x4: OpenCV's INTER_LINEAR gives the corners' values at the
        // corners and 3:1 blends in between.
        let values = [0.0, 4.0, 8.0, 12.0];
        let out = upsample(&values, [2, 2], [4, 4]);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[3], 4.0);
        assert_eq!(out[12], 8.0);
        assert_eq!(out[15], 12.0);
        assert_eq!(out[1], 1.0);
        // Row 1, column 1: a quarter of the way from the first centre in both.
        assert_eq!(
            out[5],
            0.75 * (0.75 * 0.0 + 0.25 * 4.0) + 0.25 * (0.75 * 8.0 + 0.25 * 12.0)
        );
    }
}
