//! The original video demo's label smoothing, per face.
//!
//! `src/video_emotion_color_demo.py` shows, instead of each frame's label, the
//! mode of the last 10 labels (`statistics.mode`, which returns the label seen
//! first among equally frequent ones). The demo keeps one window for all
//! faces; with several faces that mixes their labels, so here every face gets
//! its own window, following it from frame to frame by the overlap of its box.

use crate::detect::FaceBox;
use std::collections::VecDeque;

/// How many of a face's last labels vote (the demo's `frame_window`).
pub const SMOOTHING_WINDOW: usize = 10;

/// The smallest intersection over union with which a box continues a face of
/// an earlier frame. Faces move little between frames; neighbouring faces
/// rarely overlap this much.
pub const TRACK_MIN_IOU: f64 = 0.3;

/// A face followed over frames.
#[derive(Clone, Debug)]
struct Track {
    id: u64,
    last_box: FaceBox,
    labels: VecDeque<usize>,
    frames_missed: usize,
}

impl Track {
    /// The most frequent label; among equally frequent ones, the one that
    /// entered the window first (Python's `statistics.mode`).
    fn mode(&self) -> usize {
        let mut best = (0, usize::MAX);
        for &label in &self.labels {
            let count = self.labels.iter().filter(|&&l| l == label).count();
            if count > best.0 {
                best = (count, label);
            }
        }
        best.1
    }
}

/// A face's smoothed label in one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Smoothed {
    /// The face's number, the same in every frame it is followed through.
    pub track: u64,
    /// The mode of its last labels, this frame's included.
    pub label: usize,
}

/// Follows faces from frame to frame and smooths each one's label.
#[derive(Clone, Debug, Default)]
pub struct LabelSmoother {
    tracks: Vec<Track>,
    next_id: u64,
}

impl LabelSmoother {
    /// No faces seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one frame's faces (box and label index) and gives, in the same
    /// order, each face's track and smoothed label.
    ///
    /// A face continues the earlier face whose last box overlaps it most
    /// (intersection over union at least [`TRACK_MIN_IOU`]); pairs are taken
    /// greedily by overlap. Other faces start a new track. A track not seen
    /// for [`SMOOTHING_WINDOW`] frames is forgotten.
    pub fn update(&mut self, faces: &[(FaceBox, usize)]) -> Vec<Smoothed> {
        let mut pairs: Vec<(f64, usize, usize)> = Vec::new();
        for (face_index, (face_box, _)) in faces.iter().enumerate() {
            for (track_index, track) in self.tracks.iter().enumerate() {
                let overlap = iou(face_box, &track.last_box);
                if overlap >= TRACK_MIN_IOU {
                    pairs.push((overlap, face_index, track_index));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of_face: Vec<Option<usize>> = vec![None; faces.len()];
        let mut track_taken = vec![false; self.tracks.len()];
        for (_, face_index, track_index) in pairs {
            if track_of_face[face_index].is_none() && !track_taken[track_index] {
                track_of_face[face_index] = Some(track_index);
                track_taken[track_index] = true;
            }
        }
        for (track, taken) in self.tracks.iter_mut().zip(&track_taken) {
            if !taken {
                track.frames_missed += 1;
            }
        }
        let mut smoothed = Vec::with_capacity(faces.len());
        for (&(face_box, label), track_index) in faces.iter().zip(track_of_face) {
            let track_index = track_index.unwrap_or_else(|| {
                self.tracks.push(Track {
                    id: self.next_id,
                    last_box: face_box,
                    labels: VecDeque::with_capacity(SMOOTHING_WINDOW + 1),
                    frames_missed: 0,
                });
                self.next_id += 1;
                self.tracks.len() - 1
            });
            let track = &mut self.tracks[track_index];
            track.last_box = face_box;
            track.frames_missed = 0;
            track.labels.push_back(label);
            if track.labels.len() > SMOOTHING_WINDOW {
                track.labels.pop_front();
            }
            smoothed.push(Smoothed {
                track: track.id,
                label: track.mode(),
            });
        }
        self.tracks
            .retain(|track| track.frames_missed < SMOOTHING_WINDOW);
        smoothed
    }
}

/// Intersection over union of two boxes.
pub(crate) fn iou(a: &FaceBox, b: &FaceBox) -> f64 {
    let left = a.x.max(b.x);
    let top = a.y.max(b.y);
    let right = (a.x + a.width).min(b.x + b.width);
    let bottom = (a.y + a.height).min(b.y + b.height);
    let intersection =
        f64::from(right.saturating_sub(left)) * f64::from(bottom.saturating_sub(top));
    let union = f64::from(a.width) * f64::from(a.height) + f64::from(b.width) * f64::from(b.height)
        - intersection;
    if union > 0.0 {
        intersection / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: u32, y: u32) -> FaceBox {
        FaceBox {
            x,
            y,
            width: 100,
            height: 100,
        }
    }

    #[test]
    fn a_label_changes_only_when_it_outvotes_the_window() {
        let mut smoother = LabelSmoother::new();
        let mut shown = Vec::new();
        // Three frames of label 3, then label 4 for good: 4 shows once it
        // has four votes against three, and its box moves a little each frame.
        let labels = [3, 3, 3, 4, 4, 4, 4, 4];
        for (frame, &label) in labels.iter().enumerate() {
            let out = smoother.update(&[(face(10 + 5 * frame as u32, 20), label)]);
            assert_eq!(out.len(), 1);
            assert_eq!(
                out[0].track, 0,
                "frame {frame}: the face must keep its track"
            );
            shown.push(out[0].label);
        }
        // At frame 5 the window holds 3,3,3,4,4,4: a tie, won by the label
        // that entered first, as Python's statistics.mode does.
        assert_eq!(shown, [3, 3, 3, 3, 3, 3, 4, 4]);
    }

    #[test]
    fn only_the_last_ten_labels_vote() {
        let mut smoother = LabelSmoother::new();
        for _ in 0..10 {
            smoother.update(&[(face(0, 0), 1)]);
        }
        let mut shown = Vec::new();
        for _ in 0..10 {
            shown.push(smoother.update(&[(face(0, 0), 2)])[0].label);
        }
        // 2 outvotes 1 at its sixth frame (6 of the last 10), not later.
        assert_eq!(shown, [1, 1, 1, 1, 1, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn faces_keep_their_own_windows() {
        let mut smoother = LabelSmoother::new();
        for frame in 0..5u32 {
            // Given in a different order each frame: tracking is by box.
            let left = (face(10 + frame, 10), 0);
            let right = (face(400 - frame, 12), 5);
            let out = if frame % 2 == 0 {
                smoother.update(&[left, right])
            } else {
                let out = smoother.update(&[right, left]);
                vec![out[1], out[0]]
            };
            assert_eq!(out[0], Smoothed { track: 0, label: 0 });
            assert_eq!(out[1], Smoothed { track: 1, label: 5 });
        }
    }

    #[test]
    fn a_face_that_left_for_a_whole_window_starts_afresh() {
        let mut smoother = LabelSmoother::new();
        smoother.update(&[(face(0, 0), 1)]);
        for _ in 0..SMOOTHING_WINDOW - 1 {
            smoother.update(&[]);
        }
        // Back within the window: same track, old votes still count.
        assert_eq!(
            smoother.update(&[(face(0, 0), 2)])[0],
            Smoothed { track: 0, label: 1 }
        );
        for _ in 0..SMOOTHING_WINDOW {
            smoother.update(&[]);
        }
        assert_eq!(
            smoother.update(&[(face(0, 0), 2)])[0],
            Smoothed { track: 1, label: 2 }
        );
    }

    #[test]
    fn a_box_that_jumped_away_is_a_new_face() {
        let mut smoother = LabelSmoother::new();
        smoother.update(&[(face(0, 0), 1)]);
        // 60 pixels right: IoU 40*100 / (2*100*100 - 40*100) = 0.25 < 0.3.
        assert_eq!(smoother.update(&[(face(60, 0), 1)])[0].track, 1);
        // 40 pixels right of that: IoU 60/140 = 0.43, the same face.
        assert_eq!(smoother.update(&[(face(100, 0), 1)])[0].track, 1);
    }

    #[test]
    fn iou_of_known_boxes() {
        assert_eq!(iou(&face(0, 0), &face(0, 0)), 1.0);
        assert_eq!(iou(&face(0, 0), &face(100, 0)), 0.0);
        assert_eq!(iou(&face(0, 0), &face(50, 0)), 5000.0 / 15000.0);
    }
}
