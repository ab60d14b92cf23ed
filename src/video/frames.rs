//! The faces pipeline over every frame of a video, on one thread or several,
//! with the frames handed back in their order.
//!
//! With several workers each takes whole frames: a 640x480 frame has too few
//! windows per scale to keep two threads busy inside one detection (most
//! scales take well under a millisecond), but consecutive frames are
//! independent. The reader stays a few frames ahead, finished frames wait in
//! a small reorder buffer until their turn, and their buffers go back to the
//! reader, so a run allocates a handful of frames whatever its length.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use image::RgbImage;
use thiserror::Error;

use super::{FrameReader, VideoError};
use crate::faces::{Face, FacesError, Pipeline};
use crate::preprocess::rgb_to_gray;
use crate::runtime::AllocError;

/// Frames in flight per worker: one being analysed, one waiting.
const FRAMES_PER_WORKER: usize = 2;

/// One analysed frame, handed to the caller in frame order.
pub struct AnalyzedFrame<'a> {
    /// The frame's number, from 0.
    pub index: u64,
    /// The frame as decoded; the caller may draw on it.
    pub frame: &'a mut RgbImage,
    /// Its faces, as [`Pipeline::analyze`] gives them.
    pub faces: Vec<Face>,
    /// The time its grayscale conversion, detection and classification took
    /// (on its worker).
    pub analysis: Duration,
}

/// Why the frames could not all be analysed.
#[derive(Debug, Error)]
pub enum AnalyzeError {
    /// Reading the video failed.
    #[error(transparent)]
    Video(#[from] VideoError),
    /// The pipeline failed on a frame.
    #[error("frame {index}: {source}")]
    Faces {
        /// The frame's number, from 0.
        index: u64,
        /// What failed.
        source: FacesError,
    },
    /// The memory ran out for a worker's scratch space.
    #[error(transparent)]
    OutOfMemory(#[from] AllocError),
    /// A worker thread could not be started.
    #[error("cannot start a worker thread: {0}")]
    Thread(String),
}

/// Runs `pipeline` over every frame of `reader` on `workers` threads (one
/// runs on the calling thread), and hands each frame with its faces to
/// `output`, in frame order. Each worker has its own copy of the pipeline
/// (the weights are shared), and its detection runs on that worker alone.
///
/// The faces do not depend on the number of workers. An error from the
/// video, the pipeline or `output` stops the run; frames after it are not
/// handed out.
pub fn analyze_frames<E: From<AnalyzeError>>(
    reader: &mut FrameReader,
    pipeline: &mut Pipeline,
    workers: usize,
    mut output: impl FnMut(AnalyzedFrame<'_>) -> Result<(), E>,
) -> Result<(), E> {
    if workers <= 1 {
        let mut frame = reader.frame_buffer();
        let mut index = 0;
        while reader.read_into(&mut frame).map_err(AnalyzeError::from)? {
            let (faces, analysis) = analyze(pipeline, &frame, index)?;
            output(AnalyzedFrame {
                index,
                frame: &mut frame,
                faces,
                analysis,
            })?;
            index += 1;
        }
        return Ok(());
    }
    let pipelines = (0..workers)
        .map(|_| pipeline.try_clone())
        .collect::<Result<Vec<_>, _>>()
        .map_err(AnalyzeError::from)?;
    // Each worker's detection runs on a pool of its own single thread: the
    // detector splits large scales over the pool it is called from, and on
    // the shared global pool the workers would each start more threads than
    // there are cores.
    let pools = (0..workers)
        .map(|_| rayon::ThreadPoolBuilder::new().num_threads(1).build())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AnalyzeError::Thread(e.to_string()))?;
    let (job_sender, jobs) = mpsc::sync_channel::<(u64, RgbImage)>(workers);
    let jobs = Mutex::new(jobs);
    let (result_sender, results) = mpsc::channel();
    std::thread::scope(|scope| {
        for (mut pipeline, pool) in pipelines.into_iter().zip(pools) {
            let (jobs, results) = (&jobs, result_sender.clone());
            scope.spawn(move || {
                loop {
                    // The lock is held only while waiting for the next frame;
                    // a poisoned lock (a worker that panicked) ends the worker.
                    let job = match jobs.lock() {
                        Ok(receiver) => receiver.recv(),
                        Err(_) => return,
                    };
                    // The channel closes when the run ends, early or not.
                    let Ok((index, frame)) = job else {
                        return;
                    };
                    let analysed = pool.install(|| analyze(&mut pipeline, &frame, index));
                    if results.send((index, frame, analysed)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(result_sender);
        // Both ends are moved in here, so that returning, on an error too,
        // closes them: the workers then stop after the frame they are on.
        let (job_sender, results) = (job_sender, results);
        let mut in_order = InOrder::new(workers * FRAMES_PER_WORKER);
        let mut read_all = false;
        loop {
            while !read_all && in_order.has_room() {
                let mut frame = in_order.spare().unwrap_or_else(|| reader.frame_buffer());
                if reader.read_into(&mut frame).map_err(AnalyzeError::from)? {
                    let index = in_order.sent();
                    if job_sender.send((index, frame)).is_err() {
                        return Err(AnalyzeError::Thread("the workers stopped".into()).into());
                    }
                } else {
                    read_all = true;
                }
            }
            if in_order.in_flight == 0 {
                return Ok(());
            }
            let Ok((index, frame, analysed)) = results.recv() else {
                return Err(AnalyzeError::Thread("the workers stopped".into()).into());
            };
            in_order.finished(index, frame, analysed?);
            while let Some((index, mut frame, (faces, analysis))) = in_order.next() {
                let handed = output(AnalyzedFrame {
                    index,
                    frame: &mut frame,
                    faces,
                    analysis,
                });
                in_order.recycle(frame);
                handed?;
            }
        }
    })
}

/// One frame through the pipeline, timed.
fn analyze(
    pipeline: &mut Pipeline,
    frame: &RgbImage,
    index: u64,
) -> Result<(Vec<Face>, Duration), AnalyzeError> {
    let start = Instant::now();
    let gray = rgb_to_gray(frame);
    let faces = pipeline
        .analyze(&gray)
        .map_err(|source| AnalyzeError::Faces { index, source })?;
    Ok((faces, start.elapsed()))
}

/// The bookkeeping of frames in flight: how many, which come next, and the
/// buffers of frames already handed out.
struct InOrder<T> {
    capacity: usize,
    in_flight: usize,
    sent: u64,
    next: u64,
    waiting: BTreeMap<u64, (RgbImage, T)>,
    spares: Vec<RgbImage>,
}

impl<T> InOrder<T> {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            in_flight: 0,
            sent: 0,
            next: 0,
            waiting: BTreeMap::new(),
            spares: Vec::new(),
        }
    }

    fn has_room(&self) -> bool {
        self.in_flight < self.capacity
    }

    /// A buffer of a frame already handed out, if any.
    fn spare(&mut self) -> Option<RgbImage> {
        self.spares.pop()
    }

    /// Counts a frame sent to the workers and returns its number.
    fn sent(&mut self) -> u64 {
        self.in_flight += 1;
        self.sent += 1;
        self.sent - 1
    }

    fn finished(&mut self, index: u64, frame: RgbImage, result: T) {
        self.waiting.insert(index, (frame, result));
    }

    /// The next frame in order, once it has finished.
    fn next(&mut self) -> Option<(u64, RgbImage, T)> {
        let (frame, result) = self.waiting.remove(&self.next)?;
        self.in_flight -= 1;
        self.next += 1;
        Some((self.next - 1, frame, result))
    }

    fn recycle(&mut self, frame: RgbImage) {
        self.spares.push(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_and_buffers_are_reused() {
        let mut in_order = InOrder::new(3);
        let indices: Vec<u64> = (0..3).map(|_| in_order.sent()).collect();
        assert_eq!(indices, [0, 1, 2]);
        assert!(!in_order.has_room());
        // Frame 2 finishes first: nothing can go out before frame 0.
        in_order.finished(2, RgbImage::new(2, 1), "two");
        assert!(in_order.next().is_none());
        in_order.finished(0, RgbImage::new(1, 1), "zero");
        let (index, frame, result) = in_order.next().unwrap();
        assert_eq!((index, result), (0, "zero"));
        in_order.recycle(frame);
        assert!(in_order.next().is_none(), "frame 1 is still out");
        assert!(in_order.has_room());
        in_order.finished(1, RgbImage::new(1, 1), "one");
        let out: Vec<_> = std::iter::from_fn(|| in_order.next())
            .map(|(index, _, result)| (index, result))
            .collect();
        assert_eq!(out, [(1, "one"), (2, "two")]);
        assert_eq!(in_order.in_flight, 0);
        assert_eq!(in_order.spare().map(|frame| frame.width()), Some(1));
        assert!(in_order.spare().is_none());
    }
}
