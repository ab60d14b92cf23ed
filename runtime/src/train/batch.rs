//! Batches of tensors, per-image scratch for reductions, and the ordered sum
//! of per-image gradients.

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;

/// `batch` zeroed values of `T` (tensors, gradient slots), allocated directly
/// on the heap in one block.
pub fn zeroed_batch<T: Zeroable>(batch: usize) -> Box<[T]> {
    bytemuck::zeroed_slice_box(batch)
}

/// Per-image room for the partial sums of a batch-norm layer (two values per
/// channel), for the widest layer of a model.
pub struct ReductionScratch {
    values: Box<[f64]>,
    per_image: usize,
}

impl ReductionScratch {
    /// Room for `batch` images and layers of up to `channels` channels.
    pub fn new(batch: usize, channels: usize) -> Self {
        let per_image = 2 * channels.max(1);
        Self {
            values: vec![0.0; batch * per_image].into_boxed_slice(),
            per_image,
        }
    }

    /// The widest layer this scratch serves.
    pub fn channels(&self) -> usize {
        self.per_image / 2
    }

    /// One `2 * channels` run of values per image.
    pub(crate) fn images(&self) -> std::slice::ChunksExact<'_, f64> {
        self.values.chunks_exact(self.per_image)
    }

    /// The same runs, to write in a parallel loop over the images.
    pub(crate) fn par_images(&mut self) -> rayon::slice::ChunksExactMut<'_, f64> {
        self.values.par_chunks_exact_mut(self.per_image)
    }
}

/// Values per task when a flat sum is split across threads: large enough
/// that a task outweighs its scheduling, and fixed, so that which values a
/// task sums never depends on the number of threads.
const SUM_BLOCK: usize = 4096;

/// `total += sum of every image's slot`, each element summed in image order,
/// then every slot zeroed for the next step. The elements are split across
/// the threads, so the result does not depend on their number.
pub fn sum_image_gradients<G: Pod + Send + Sync>(images: &mut [G], total: &mut G) {
    let total = crate::tensor::flat_mut(total);
    let images: &mut [f32] = bytemuck::cast_slice_mut(images);
    let per_image = total.len();
    if per_image == 0 {
        return;
    }
    total
        .par_chunks_mut(SUM_BLOCK)
        .enumerate()
        .for_each(|(block, total)| {
            let start = block * SUM_BLOCK;
            for image in 0..images.len() / per_image {
                let slot = &images[image * per_image + start..][..total.len()];
                for (t, &g) in total.iter_mut().zip(slot) {
                    *t += g;
                }
            }
        });
    images
        .par_chunks_mut(SUM_BLOCK)
        .for_each(|slot| slot.fill(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn image_gradients_are_summed_in_order_and_cleared() {
        let mut images: Box<[Tensor<70, 70, 1>]> = zeroed_batch(3);
        for (i, image) in images.iter_mut().enumerate() {
            image.as_mut_slice().fill(i as f32 + 1.0);
            image.data[69][69][0] = 100.0 * (i as f32 + 1.0);
        }
        let mut total = *Tensor::<70, 70, 1>::zeroed_boxed();
        total.data[0][0][0] = 0.5;
        sum_image_gradients(&mut images, &mut total);
        assert_eq!(total.data[0][0][0], 6.5);
        assert_eq!(total.data[40][3][0], 6.0);
        assert_eq!(total.data[69][69][0], 600.0);
        assert!(
            images
                .iter()
                .all(|image| image.as_slice().iter().all(|&v| v == 0.0))
        );
    }

    #[test]
    fn reduction_scratch_has_two_values_per_channel_per_image() {
        let scratch = ReductionScratch::new(3, 5);
        assert_eq!(scratch.channels(), 5);
        assert_eq!(scratch.images().count(), 3);
        assert!(scratch.images().all(|image| image.len() == 10));
    }
}
