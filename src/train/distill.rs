//! Knowledge distillation (Hinton, Vinyals and Dean, 2015): a run learns
//! from trained models of the same architecture as well as from the labels.
//!
//! By default the teachers' probabilities are computed once per run, for
//! each training face as it is (not augmented), averaged over the teachers
//! and over the face and its mirror image, at the distillation's
//! temperature. The mirror average makes the targets the same for a face
//! and its flipped copy, which augmentation produces; the other transforms
//! are small. With `consistent` the teachers see instead the very image the
//! student trains on, augmented, at every step ("consistent teaching",
//! Beyer et al., 2022, "Knowledge distillation: A good teacher is patient
//! and consistent"), at the cost of a teacher pass per image and step.

use super::augment::plain_into;
use super::data::Faces;
use crate::files::sha256_hex;
use crate::models::{LoadError, WeightsFormat, load_weights, mirror_input};
use crate::runtime::softmax::softmax_slice;
use crate::runtime::{AllocError, InferenceModel, Isa, flat_mut, try_zeroed_box};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The teachers of a run and how much they count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Teachers {
    /// Their weight files (native `.safetensors` or Keras HDF5).
    pub files: Vec<PathBuf>,
    /// Each file's sha256, so that a run resumes only with the same teachers.
    pub sha256: Vec<String>,
    /// The teachers' share of the loss, in `[0, 1]`.
    pub weight: f32,
    /// The temperature of the softmaxes compared.
    pub temperature: f32,
    /// The teachers see each augmented training image as the student does,
    /// every step, instead of giving fixed probabilities per face. Left out
    /// of a run's record when false, so that runs from before it resume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub consistent: bool,
    /// The teachers' model (its type name, e.g. `MiniXceptionWide`) when it
    /// is not the student's: a larger network can teach the small one. Its
    /// input and labels must be the student's. Left out when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Why the teachers could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TeacherError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file}: the teacher has changed since the run began (sha256 {found}, the run's {expected})"
    )]
    Changed {
        file: String,
        expected: String,
        found: String,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("a {teacher} cannot teach a {student}: {reason}")]
    Model {
        teacher: String,
        student: &'static str,
        reason: &'static str,
    },
    #[error(
        "the distillation weight must lie in [0, 1] and the temperature be positive, got {weight} and {temperature}"
    )]
    Settings { weight: f32, temperature: f32 },
}

impl Teachers {
    /// The teachers in `files`, hashed now.
    pub fn from_files(
        files: Vec<PathBuf>,
        weight: f32,
        temperature: f32,
    ) -> Result<Self, TeacherError> {
        let usable = (0.0..=1.0).contains(&weight) && temperature > 0.0 && temperature.is_finite();
        if !usable {
            return Err(TeacherError::Settings {
                weight,
                temperature,
            });
        }
        let sha256 = files
            .iter()
            .map(|file| Ok(sha256_hex(&read(file)?)))
            .collect::<Result<_, TeacherError>>()?;
        Ok(Self {
            files,
            sha256,
            weight,
            temperature,
            consistent: false,
            model: None,
        })
    }

    /// [`Teachers::probabilities`] for a student of type `S`, each teacher
    /// file read as the model it is for (see [`Teachers::file_models`]):
    /// `S` itself, or another compiled model with `S`'s input and labels. A
    /// mix of models counts each file once: every model's mean is weighted
    /// by its number of files.
    pub fn probabilities_for<S: InferenceModel>(
        &self,
        faces: &Faces,
        isa: Isa,
    ) -> Result<Vec<f32>, TeacherError> {
        let models = self.file_models(S::NAME)?;
        let mut names: Vec<&str> = Vec::new();
        for name in &models {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        if let [name] = names[..] {
            return self.probabilities_of_model::<S>(name, faces, isa);
        }
        let mut mixed: Vec<f32> = Vec::new();
        for name in names {
            let (files, sha256): (Vec<PathBuf>, Vec<String>) = self
                .files
                .iter()
                .zip(&self.sha256)
                .zip(&models)
                .filter(|(_, model)| model.as_str() == name)
                .map(|((file, sha), _)| (file.clone(), sha.clone()))
                .unzip();
            let share = files.len() as f32 / self.files.len() as f32;
            let group = Teachers {
                files,
                sha256,
                ..self.clone()
            };
            let probabilities = group.probabilities_of_model::<S>(name, faces, isa)?;
            mixed.resize(probabilities.len(), 0.0);
            for (sum, p) in mixed.iter_mut().zip(probabilities) {
                *sum += share * p;
            }
        }
        Ok(mixed)
    }

    /// The model each teacher file is for: [`Teachers::model`] when it is
    /// set, else the model a native `.safetensors` file names, else
    /// `student` (Keras files, which name none). Checks first that the
    /// files it reads are those hashed.
    pub fn file_models(&self, student: &str) -> Result<Vec<String>, TeacherError> {
        self.files
            .iter()
            .zip(&self.sha256)
            .map(|(file, expected)| {
                if let Some(model) = &self.model {
                    return Ok(model.clone());
                }
                if !matches!(WeightsFormat::of_path(file), WeightsFormat::Native) {
                    return Ok(student.to_owned());
                }
                let bytes = read(file)?;
                check_unchanged(file, expected, &bytes)?;
                let named = crate::native::named_model(&file.display().to_string(), &bytes)
                    .map_err(LoadError::from)?;
                Ok(named.unwrap_or_else(|| student.to_owned()))
            })
            .collect()
    }

    /// The probabilities of teachers that are all of the model `name`.
    fn probabilities_of_model<S: InferenceModel>(
        &self,
        name: &str,
        faces: &Faces,
        isa: Isa,
    ) -> Result<Vec<f32>, TeacherError> {
        use crate::models::{emotion::MiniXception, paz::MiniXceptionPaz, wide::MiniXceptionWide};
        match name {
            name if name == S::NAME => self.probabilities::<S>(faces, isa),
            name if name == MiniXception::NAME => {
                self.probabilities_as::<S, MiniXception>(faces, isa)
            }
            name if name == MiniXceptionPaz::NAME => {
                self.probabilities_as::<S, MiniXceptionPaz>(faces, isa)
            }
            name if name == MiniXceptionWide::NAME => {
                self.probabilities_as::<S, MiniXceptionWide>(faces, isa)
            }
            name => Err(TeacherError::Model {
                teacher: name.to_owned(),
                student: S::NAME,
                reason: "it is not a model compiled into this program",
            }),
        }
    }

    /// The probabilities of teachers of type `T` for a student of type `S`.
    fn probabilities_as<S: InferenceModel, T: InferenceModel>(
        &self,
        faces: &Faces,
        isa: Isa,
    ) -> Result<Vec<f32>, TeacherError> {
        let mismatch = |reason| TeacherError::Model {
            teacher: T::NAME.to_owned(),
            student: S::NAME,
            reason,
        };
        if T::INPUT_SHAPE != S::INPUT_SHAPE {
            return Err(mismatch("their inputs differ in size"));
        }
        if T::CLASS_LABELS != S::CLASS_LABELS {
            return Err(mismatch("their labels differ"));
        }
        self.probabilities::<T>(faces, isa)
    }

    /// The teachers' models, checking first that the files are those hashed.
    pub fn models<M: InferenceModel>(&self, isa: Isa) -> Result<Vec<M>, TeacherError> {
        let mut models = Vec::with_capacity(self.files.len());
        for (file, expected) in self.files.iter().zip(&self.sha256) {
            check_unchanged(file, expected, &read(file)?)?;
            models.push(M::with_weights(load_weights::<M>(file)?, isa));
        }
        Ok(models)
    }

    /// The teachers' probabilities for every face of `faces`
    /// (`M::CLASS_LABELS.len()` each, face after face), on the calling
    /// rayon pool. Checks first that the files are those hashed.
    pub fn probabilities<M: InferenceModel>(
        &self,
        faces: &Faces,
        isa: Isa,
    ) -> Result<Vec<f32>, TeacherError> {
        let models = self.models::<M>(isa)?;
        let classes = M::CLASS_LABELS.len();
        let temperature = self.temperature;
        let mut probabilities = vec![0.0f32; faces.len() * classes];
        let faces_per_chunk = 256;
        probabilities
            .par_chunks_mut(faces_per_chunk * classes)
            .enumerate()
            .try_for_each(|(chunk, out)| {
                let mut scratch = M::try_new_scratch()?;
                let mut input: Box<M::Input> = try_zeroed_box()?;
                let mut logits = vec![0.0f32; classes];
                for (i, face_out) in out.chunks_exact_mut(classes).enumerate() {
                    let face = faces.face(chunk * faces_per_chunk + i);
                    let mut views = 0;
                    for model in &models {
                        plain_into(face, flat_mut(&mut *input));
                        for mirrored in [false, true] {
                            if mirrored {
                                mirror_input::<M>(&mut input);
                            }
                            model.logits_into(&input, &mut scratch, &mut logits);
                            let softened: Vec<f32> =
                                logits.iter().map(|&z| z / temperature).collect();
                            for (sum, p) in face_out.iter_mut().zip(softmax_slice(&softened)) {
                                *sum += p;
                            }
                            views += 1;
                        }
                    }
                    face_out.iter_mut().for_each(|p| *p /= views.max(1) as f32);
                }
                Ok::<(), AllocError>(())
            })
            .map_err(|error| TeacherError::Load(error.into()))?;
        Ok(probabilities)
    }
}

/// The teachers' mean probabilities at `temperature` for one image, written
/// to `out` (`M::CLASS_LABELS.len()` values): consistent teaching's targets.
/// `logits` holds a model's logits and `scratch` its activations.
pub fn view_probabilities<M: InferenceModel>(
    models: &[M],
    temperature: f32,
    input: &M::Input,
    scratch: &mut M::Scratch,
    logits: &mut [f32],
    out: &mut [f32],
) {
    out.fill(0.0);
    for model in models {
        model.logits_into(input, scratch, logits);
        // softmax(z / T), in place: this runs for every image of every step.
        let largest = logits
            .iter()
            .map(|&z| z / temperature)
            .fold(f32::NEG_INFINITY, f32::max);
        logits
            .iter_mut()
            .for_each(|z| *z = (*z / temperature - largest).exp());
        let total: f32 = logits.iter().sum();
        for (sum, &e) in out.iter_mut().zip(logits.iter()) {
            *sum += e / total;
        }
    }
    let teachers = models.len().max(1) as f32;
    out.iter_mut().for_each(|p| *p /= teachers);
}

/// An error unless `bytes`, read from `file`, hash to `expected`.
fn check_unchanged(
    file: &std::path::Path,
    expected: &str,
    bytes: &[u8],
) -> Result<(), TeacherError> {
    let found = sha256_hex(bytes);
    if found == expected {
        return Ok(());
    }
    Err(TeacherError::Changed {
        file: file.display().to_string(),
        expected: expected.to_owned(),
        found,
    })
}

fn read(file: &std::path::Path) -> Result<Vec<u8>, TeacherError> {
    std::fs::read(file).map_err(|source| TeacherError::Io {
        file: file.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::paz::MiniXceptionPaz;
    use crate::runtime::train::fold;
    use crate::train::keras_initial;

    /// Keras' initial weights of the 48x48 model, saved as a teacher.
    fn teacher(directory: &std::path::Path) -> PathBuf {
        seeded_teacher(directory, 5)
    }

    /// Keras' initial weights of the 48x48 model for `seed`, saved as a teacher.
    fn seeded_teacher(directory: &std::path::Path, seed: u64) -> PathBuf {
        let (parameters, statistics) = keras_initial::<MiniXceptionPaz>(seed);
        let model = fold::<MiniXceptionPaz>(&parameters, &statistics, Isa::detect()).unwrap();
        let path = directory.join(format!("teacher-{seed}.safetensors"));
        crate::native::save(model.model_weights(), MiniXceptionPaz::NAME, &path).unwrap();
        path
    }

    #[test]
    fn a_face_and_its_mirror_get_the_same_probabilities_which_sum_to_one() {
        let directory = tempfile::tempdir().unwrap();
        let file = teacher(directory.path());
        let face: Vec<u8> = (0..48 * 48)
            .map(|i| ((i * 37 + i / 48 * 11) % 256) as u8)
            .collect();
        let mirror: Vec<u8> = face
            .chunks_exact(48)
            .flat_map(|row| row.iter().rev().copied())
            .collect();
        let faces = Faces {
            pixels: [face, mirror].concat(),
            labels: vec![0, 0],
            size: [48, 48],
        };
        let sharp = Teachers::from_files(vec![file.clone()], 0.5, 1.0).unwrap();
        let p = sharp
            .probabilities::<MiniXceptionPaz>(&faces, Isa::detect())
            .unwrap();
        assert_eq!(p[..7], p[7..]);
        assert!((p[..7].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        // Hot enough, every class gets nearly a seventh.
        // The same on any number of threads, more than the cores too: 600
        // faces are three chunks of work.
        let crowd = Faces {
            pixels: (0..600 * 48 * 48)
                .map(|i| ((i * 37 + i / 2304 * 11) % 256) as u8)
                .collect(),
            labels: vec![0; 600],
            size: [48, 48],
        };
        let on_threads = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| sharp.probabilities::<MiniXceptionPaz>(&crowd, Isa::detect()))
                .unwrap()
        };
        let alone = on_threads(1);
        for threads in [2, 5] {
            assert!(on_threads(threads) == alone, "{threads} threads");
        }
        let hot = Teachers::from_files(vec![file], 0.5, 1e4).unwrap();
        let p = hot
            .probabilities::<MiniXceptionPaz>(&faces, Isa::detect())
            .unwrap();
        assert!(p.iter().all(|&v| (v - 1.0 / 7.0).abs() < 1e-3), "{p:?}");
    }

    /// Consistent teaching's targets for a face and for its mirror,
    /// averaged, are the fixed targets of that face.
    #[test]
    fn the_views_of_a_face_and_its_mirror_average_to_its_fixed_probabilities() {
        let directory = tempfile::tempdir().unwrap();
        let file = teacher(directory.path());
        let second = seeded_teacher(directory.path(), 6);
        let teachers = Teachers::from_files(vec![file, second], 0.5, 0.5).unwrap();
        let face: Vec<u8> = (0..48 * 48)
            .map(|i| ((i * 53 + i / 7) % 256) as u8)
            .collect();
        let faces = Faces {
            pixels: face.clone(),
            labels: vec![0],
            size: [48, 48],
        };
        let fixed = teachers
            .probabilities::<MiniXceptionPaz>(&faces, Isa::detect())
            .unwrap();
        let models = teachers.models::<MiniXceptionPaz>(Isa::detect()).unwrap();
        let mut scratch = MiniXceptionPaz::try_new_scratch().unwrap();
        let mut input: Box<<MiniXceptionPaz as InferenceModel>::Input> = try_zeroed_box().unwrap();
        let mut logits = vec![0.0; 7];
        let mut views = [[0.0f32; 7]; 2];
        plain_into(&face, flat_mut(&mut *input));
        for (mirrored, view) in views.iter_mut().enumerate() {
            if mirrored == 1 {
                mirror_input::<MiniXceptionPaz>(&mut input);
            }
            view_probabilities(&models, 0.5, &input, &mut scratch, &mut logits, view);
        }
        assert!((views[0].iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // The two views differ, so the average is a real check.
        assert!(views[0] != views[1]);
        for c in 0..7 {
            let mean = (views[0][c] + views[1][c]) / 2.0;
            assert!(
                (mean - fixed[c]).abs() < 1e-6,
                "{mean} against {}",
                fixed[c]
            );
        }
    }

    /// A larger model teaches a smaller one with the same input and labels:
    /// the wide teacher's file names its model and is read as one, a mix of
    /// models counts each file once, and models that do not fit are refused.
    #[test]
    fn teachers_of_another_model_teach_a_student_with_the_same_input() {
        use crate::models::{emotion::MiniXception, wide::MiniXceptionWide};
        let directory = tempfile::tempdir().unwrap();
        let (parameters, statistics) = keras_initial::<MiniXceptionWide>(3);
        let wide = fold::<MiniXceptionWide>(&parameters, &statistics, Isa::detect()).unwrap();
        let wide_file = directory.path().join("wide.safetensors");
        crate::native::save(wide.model_weights(), MiniXceptionWide::NAME, &wide_file).unwrap();
        let (parameters, statistics) = keras_initial::<MiniXception>(4);
        let small = fold::<MiniXception>(&parameters, &statistics, Isa::detect()).unwrap();
        let small_file = directory.path().join("small.safetensors");
        crate::native::save(small.model_weights(), MiniXception::NAME, &small_file).unwrap();
        let faces = Faces {
            pixels: (0..2 * 64 * 64)
                .map(|i| ((i * 29 + i / 64 * 7) % 256) as u8)
                .collect(),
            labels: vec![0, 3],
            size: [64, 64],
        };
        let isa = Isa::detect();
        let mut teachers = Teachers::from_files(vec![wide_file.clone()], 0.5, 1.0).unwrap();
        assert_eq!(
            teachers.file_models(MiniXception::NAME).unwrap(),
            [MiniXceptionWide::NAME]
        );
        let taught = teachers
            .probabilities_for::<MiniXception>(&faces, isa)
            .unwrap();
        let direct = teachers
            .probabilities::<MiniXceptionWide>(&faces, isa)
            .unwrap();
        assert_eq!(taught, direct);
        assert_eq!(taught.len(), 2 * 7);
        // Named as the student's model, the wide file does not fit its layers.
        teachers.model = Some(MiniXception::NAME.to_owned());
        assert!(
            teachers
                .probabilities_for::<MiniXception>(&faces, isa)
                .is_err()
        );
        teachers.model = None;
        // A 64x64 teacher cannot teach the 48x48 student.
        let error = teachers
            .probabilities_for::<MiniXceptionPaz>(&faces, isa)
            .unwrap_err();
        assert!(error.to_string().contains("inputs differ"), "{error}");
        teachers.model = Some("ResNet50".to_owned());
        let error = teachers
            .probabilities_for::<MiniXception>(&faces, isa)
            .unwrap_err();
        assert!(error.to_string().contains("ResNet50"), "{error}");

        // The wide file twice and the small one: two thirds and one third.
        let files = vec![wide_file.clone(), small_file.clone(), wide_file];
        let mixed = Teachers::from_files(files, 0.5, 1.0).unwrap();
        let small_alone = Teachers::from_files(vec![small_file], 0.5, 1.0)
            .unwrap()
            .probabilities_for::<MiniXception>(&faces, isa)
            .unwrap();
        let together = mixed
            .probabilities_for::<MiniXception>(&faces, isa)
            .unwrap();
        assert_eq!(together.len(), direct.len());
        for ((got, wide), small) in together.iter().zip(&direct).zip(&small_alone) {
            let expected = (2.0 * wide + small) / 3.0;
            assert!((got - expected).abs() < 1e-6, "{got} against {expected}");
        }
        assert!(
            together
                .iter()
                .zip(&direct)
                .any(|(a, b)| (a - b).abs() > 1e-4)
        );
    }

    #[test]
    fn settings_out_of_range_and_missing_files_are_errors() {
        let directory = tempfile::tempdir().unwrap();
        let file = teacher(directory.path());
        for (weight, temperature) in [(1.5, 1.0), (-0.1, 1.0), (0.5, 0.0), (0.5, f32::NAN)] {
            assert!(matches!(
                Teachers::from_files(vec![file.clone()], weight, temperature),
                Err(TeacherError::Settings { .. })
            ));
        }
        let missing = directory.path().join("missing.safetensors");
        let error = Teachers::from_files(vec![missing], 0.5, 1.0).unwrap_err();
        assert!(error.to_string().contains("missing.safetensors"), "{error}");
    }
}
