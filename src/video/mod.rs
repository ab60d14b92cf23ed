//! Video in and out through the `ffmpeg` command-line tool, and the demo's
//! label smoothing.
//!
//! Frames travel as raw RGB bytes through pipes: [`FrameReader`] runs
//! `ffmpeg -i INPUT -f rawvideo -pix_fmt rgb24 pipe:1` and [`FrameWriter`]
//! the reverse, so any format the installed `ffmpeg` knows works and no codec
//! library is linked. [`probe`] asks `ffprobe` (from the same package) for the
//! frame size and rate first. On Debian and Ubuntu both come with
//! `apt-get install ffmpeg`.

mod frames;
mod smooth;

pub use frames::{AnalyzeError, AnalyzedFrame, analyze_frames};
pub use smooth::{LabelSmoother, SMOOTHING_WINDOW, Smoothed, TRACK_MIN_IOU};

use image::RgbImage;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use thiserror::Error;

/// What can go wrong reading or writing a video.
#[derive(Debug, Error)]
pub enum VideoError {
    /// `ffmpeg` or `ffprobe` could not be started.
    #[error(
        "cannot run `{program}`: {source} (video needs the ffmpeg command-line tools; on Debian or Ubuntu: apt-get install ffmpeg)"
    )]
    Missing {
        /// The program asked for.
        program: &'static str,
        /// What the operating system reported.
        source: io::Error,
    },
    /// `ffprobe` found no video stream, or `ffmpeg` failed on the file.
    #[error("{}: {message}", .path.display())]
    Tool {
        /// The video file.
        path: PathBuf,
        /// What went wrong, with the tool's own message.
        message: String,
    },
    /// The pipe to or from `ffmpeg` broke.
    #[error("{}: {context}: {source}", .path.display())]
    Pipe {
        /// The video file.
        path: PathBuf,
        /// Which pipe.
        context: &'static str,
        /// What the operating system reported.
        source: io::Error,
    },
}

/// Frame size and rate of a video's first video stream.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoInfo {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second: the stream's average rate, else its base rate,
    /// else 25 when the container gives neither.
    pub fps: f64,
}

/// The size and rate of `path`'s first video stream, from `ffprobe`.
pub fn probe(path: &Path) -> Result<VideoInfo, VideoError> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,avg_frame_rate,r_frame_rate",
        ])
        .args(["-of", "json"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| VideoError::Missing {
            program: "ffprobe",
            source,
        })?;
    let tool_error = |message: String| VideoError::Tool {
        path: path.to_path_buf(),
        message,
    };
    if !output.status.success() {
        return Err(tool_error(format!(
            "ffprobe cannot read it: {}",
            last_lines(&output.stderr)
        )));
    }
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        streams: Vec<Stream>,
    }
    #[derive(serde::Deserialize)]
    struct Stream {
        width: Option<u32>,
        height: Option<u32>,
        avg_frame_rate: Option<String>,
        r_frame_rate: Option<String>,
    }
    let probe: Probe = serde_json::from_slice(&output.stdout)
        .map_err(|e| tool_error(format!("unexpected ffprobe output: {e}")))?;
    let Some(stream) = probe.streams.first() else {
        return Err(tool_error("no video stream".into()));
    };
    let (Some(width), Some(height)) = (stream.width, stream.height) else {
        return Err(tool_error("the video stream has no frame size".into()));
    };
    if width == 0 || height == 0 {
        return Err(tool_error(format!("empty frame size {width}x{height}")));
    }
    let fps = [&stream.avg_frame_rate, &stream.r_frame_rate]
        .into_iter()
        .flatten()
        .find_map(|rate| parse_rate(rate))
        .unwrap_or(25.0);
    Ok(VideoInfo { width, height, fps })
}

/// `"30000/1001"` or `"25"` as a positive number of frames per second.
fn parse_rate(rate: &str) -> Option<f64> {
    let value = match rate.split_once('/') {
        Some((numerator, denominator)) => {
            numerator.trim().parse::<f64>().ok()? / denominator.trim().parse::<f64>().ok()?
        }
        None => rate.trim().parse().ok()?,
    };
    (value.is_finite() && value > 0.0).then_some(value)
}

/// The last few lines a tool wrote to stderr, for an error message.
fn last_lines(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(3)..].join("; ");
    if tail.is_empty() {
        "no message".into()
    } else {
        tail
    }
}

/// A running `ffmpeg` whose stderr is collected on a thread, so a chatty
/// tool can never block on a full pipe.
struct Tool {
    child: Child,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Tool {
    fn spawn(args: &[&OsStr], stdin: Stdio, stdout: Stdio) -> Result<Tool, VideoError> {
        let mut child = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error"])
            .args(args)
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| VideoError::Missing {
                program: "ffmpeg",
                source,
            })?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                // A read error only shortens the message.
                let _ = pipe.read_to_end(&mut text);
                text
            })
        });
        Ok(Tool { child, stderr })
    }

    /// Waits for the tool; an error carries its last stderr lines.
    fn finish(&mut self, path: &Path, what: &str) -> Result<(), VideoError> {
        let status = self.child.wait().map_err(|source| VideoError::Pipe {
            path: path.to_path_buf(),
            context: "waiting for ffmpeg",
            source,
        })?;
        let stderr = self
            .stderr
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            Err(VideoError::Tool {
                path: path.to_path_buf(),
                message: format!("ffmpeg failed {what}: {}", last_lines(&stderr)),
            })
        }
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        // An unfinished tool (an error on our side) is stopped, not left behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The frames of a video, decoded by `ffmpeg`, one RGB image at a time.
pub struct FrameReader {
    path: PathBuf,
    info: VideoInfo,
    tool: Tool,
    stdout: ChildStdout,
    frames_read: u64,
}

impl FrameReader {
    /// Starts decoding `path` (after [`probe`]).
    pub fn open(path: &Path) -> Result<FrameReader, VideoError> {
        let info = probe(path)?;
        let args: [&OsStr; 11] = [
            "-nostdin".as_ref(),
            "-i".as_ref(),
            path.as_os_str(),
            "-map".as_ref(),
            "0:v:0".as_ref(),
            "-f".as_ref(),
            "rawvideo".as_ref(),
            "-pix_fmt".as_ref(),
            "rgb24".as_ref(),
            "-an".as_ref(),
            "pipe:1".as_ref(),
        ];
        let mut tool = Tool::spawn(&args, Stdio::null(), Stdio::piped())?;
        let stdout = tool.child.stdout.take().ok_or_else(|| VideoError::Tool {
            path: path.to_path_buf(),
            message: "ffmpeg gave no output pipe".into(),
        })?;
        Ok(FrameReader {
            path: path.to_path_buf(),
            info,
            tool,
            stdout,
            frames_read: 0,
        })
    }

    /// The video's frame size and rate.
    pub fn info(&self) -> VideoInfo {
        self.info
    }

    /// An image of the frame size, for [`FrameReader::read_into`].
    pub fn frame_buffer(&self) -> RgbImage {
        RgbImage::new(self.info.width, self.info.height)
    }

    /// Decodes the next frame into `frame` (of the frame size); `Ok(false)`
    /// at the end of the video, once `ffmpeg` has finished cleanly.
    pub fn read_into(&mut self, frame: &mut RgbImage) -> Result<bool, VideoError> {
        if frame.dimensions() != (self.info.width, self.info.height) {
            return Err(VideoError::Tool {
                path: self.path.clone(),
                message: format!(
                    "frame buffer is {}x{}, the video's frames are {}x{}",
                    frame.width(),
                    frame.height(),
                    self.info.width,
                    self.info.height
                ),
            });
        }
        let bytes: &mut [u8] = frame;
        let mut filled = 0;
        while filled < bytes.len() {
            match self.stdout.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(VideoError::Pipe {
                        path: self.path.clone(),
                        context: "reading frames from ffmpeg",
                        source,
                    });
                }
            }
        }
        if filled == bytes.len() {
            self.frames_read += 1;
            return Ok(true);
        }
        self.tool.finish(&self.path, "decoding")?;
        if filled == 0 {
            Ok(false)
        } else {
            Err(VideoError::Tool {
                path: self.path.clone(),
                message: format!(
                    "frame {} ends after {filled} of {} bytes",
                    self.frames_read,
                    bytes.len()
                ),
            })
        }
    }
}

/// A video being encoded by `ffmpeg` from RGB frames.
pub struct FrameWriter {
    path: PathBuf,
    size: (u32, u32),
    tool: Tool,
    stdin: Option<ChildStdin>,
}

impl FrameWriter {
    /// Starts `ffmpeg` writing `path` (overwritten if it exists), in the
    /// format its extension names. MP4 and MOV files get `yuv420p` pixels
    /// when the size allows, which every player can show.
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        fps: f64,
    ) -> Result<FrameWriter, VideoError> {
        let size = format!("{width}x{height}");
        let rate = format!("{fps}");
        let mut args: Vec<&OsStr> = vec![
            "-nostdin".as_ref(),
            "-y".as_ref(),
            "-f".as_ref(),
            "rawvideo".as_ref(),
            "-pix_fmt".as_ref(),
            "rgb24".as_ref(),
            "-s".as_ref(),
            size.as_ref(),
            "-framerate".as_ref(),
            rate.as_ref(),
            "-i".as_ref(),
            "pipe:0".as_ref(),
        ];
        let extension = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if matches!(extension.as_str(), "mp4" | "m4v" | "mov")
            && width.is_multiple_of(2)
            && height.is_multiple_of(2)
        {
            args.extend([OsStr::new("-pix_fmt"), OsStr::new("yuv420p")]);
        }
        args.push(path.as_os_str());
        let mut tool = Tool::spawn(&args, Stdio::piped(), Stdio::null())?;
        let stdin = tool.child.stdin.take();
        Ok(FrameWriter {
            path: path.to_path_buf(),
            size: (width, height),
            tool,
            stdin,
        })
    }

    /// Sends one frame (of the size given to [`FrameWriter::create`]).
    pub fn write(&mut self, frame: &RgbImage) -> Result<(), VideoError> {
        if frame.dimensions() != self.size {
            return Err(VideoError::Tool {
                path: self.path.clone(),
                message: format!(
                    "frame is {}x{}, the video is {}x{}",
                    frame.width(),
                    frame.height(),
                    self.size.0,
                    self.size.1
                ),
            });
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(VideoError::Tool {
                path: self.path.clone(),
                message: "the video is already finished".into(),
            });
        };
        if let Err(source) = stdin.write_all(frame.as_raw()) {
            // A broken pipe means ffmpeg stopped: its own message says why.
            self.stdin = None;
            self.tool.finish(&self.path, "encoding")?;
            return Err(VideoError::Pipe {
                path: self.path.clone(),
                context: "writing frames to ffmpeg",
                source,
            });
        }
        Ok(())
    }

    /// Closes the pipe and waits for `ffmpeg` to finish the file.
    pub fn finish(mut self) -> Result<(), VideoError> {
        drop(self.stdin.take());
        self.tool.finish(&self.path, "encoding")
    }
}
